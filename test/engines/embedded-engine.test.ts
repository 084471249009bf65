import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { Host } from '../../src/model/fleet.js';
import { engineHostKeys } from '../../src/state/keys.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { aModelHost } from '../helpers/hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { defaultRequest, engineConformance } from './conformance.js';

const host = (name: string): Host =>
  aModelHost({
    name,
    cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 2 },
    memoryMiB: 16384,
    diskGiB: 100,
  });

engineConformance('embedded', async () => {
  const server = await startRedisServer();
  const redis = server.client();
  const options = { bootLatencyMs: 1 };
  const a = new EmbeddedEngine(redis, 'conformance', host('emu-a'), options);
  const b = new EmbeddedEngine(redis, 'conformance', host('emu-b'), options);
  const byName = (name: string) => (name === a.host ? a : b);
  return {
    a,
    b,
    fail: (name) => byName(name).inject('fail'),
    recover: (name) => byName(name).inject('recover'),
    close: () => server.stop(),
  };
});

describe('embedded engine: the current plan is checked in the same step as a create', () => {
  it('refuses a create of a superseded plan, and leaves neither the instance nor its fence', async () => {
    const server = await startRedisServer();
    try {
      const redis = server.client();
      const currentPlanKey = 'vfleet:{plans}:current-plan';
      const engine = new EmbeddedEngine(redis, 'plans', host('emu-a'), {
        bootLatencyMs: 0,
        currentPlanKey,
      });
      const request = (name: string, plan?: string): InstanceRequest => ({
        name,
        group: 'web',
        generation: 3,
        image: {
          name: 'debian-12',
          kind: 'container',
          os: { family: 'debian', release: '12', arch: 'x86_64' },
          packages: {},
        },
        resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 },
        ...(plan === undefined ? {} : { plan }),
      });
      await redis.set(currentPlanKey, 'new-plan');
      await assert.rejects(engine.create(request('web-0', 'old-plan')), (e: unknown) => {
        assert.ok(isVfleetError(e));
        assert.equal(e.code, 'superseded');
        assert.equal(e.retryable, false);
        return true;
      });
      assert.equal(await engine.describe('web-0'), undefined);
      assert.equal((await engine.fences()).size, 0);
      // The current plan creates; a request that names no plan (tests, tools) is not checked.
      assert.equal((await engine.create(request('web-0', 'new-plan'))).status, 'running');
      assert.equal((await engine.create(request('web-1'))).status, 'running');
      await redis.del(currentPlanKey);
      await assert.rejects(engine.create(request('web-2', 'new-plan')), /superseded|refuses/);
    } finally {
      await server.stop();
    }
  });
});

describe('embedded engine: faults and disks as data', () => {
  let server: TestRedisServer;
  let redis: Redis;
  before(async () => {
    server = await startRedisServer();
    redis = server.client();
  });
  after(() => server?.stop());

  it('keeps the fault in the down key: failed or partitioned (an older `1`: failed)', async () => {
    const engine = new EmbeddedEngine(redis, 'faults', host('emu-a'), { bootLatencyMs: 0 });
    const down = engineHostKeys('faults', 'emu-a').down;
    await engine.inject('fail');
    assert.equal(await redis.get(down), 'failed');
    await engine.inject('partition');
    assert.equal(await redis.get(down), 'partitioned');
    assert.equal(await engine.injectedFault(), 'partitioned');
    await engine.inject('recover');
    assert.equal(await redis.exists(down), 0);
    await redis.set(down, '1');
    assert.equal(await engine.injectedFault(), 'failed');
    await assert.rejects(engine.list(), /does not answer/);
  });

  it('reads the records an older vfleet wrote, which name the instance `name`', async () => {
    const engine = new EmbeddedEngine(redis, 'old', host('emu-a'), { bootLatencyMs: 0 });
    const { instance, ...rest } = await engine.create(defaultRequest('web-0', 1));
    const key = engineHostKeys('old', 'emu-a').instances;
    await redis.hset(key, 'web-0', JSON.stringify({ ...rest, name: instance }));
    assert.equal((await engine.describe('web-0'))?.instance, 'web-0');
    assert.deepEqual(
      (await engine.list()).map((i) => i.instance),
      ['web-0'],
    );
    // A transition keeps the record as it was written, and it still reads.
    assert.equal((await engine.stop('web-0', 2)).instance, 'web-0');
    assert.equal((await engine.describe('web-0'))?.status, 'stopped');
  });

  it('copies a disk only to the engines its capabilities name, and a real host not to it', async () => {
    const emulated = new EmbeddedEngine(redis, 'disks', host('emu-a'), { bootLatencyMs: 0 });
    const real = new RealEngine(
      aModelHost({ name: 'real-a', engine: 'local', dataDir: '/nonexistent/vfleet' }),
      new LocalTransport('real-a'),
    );
    await emulated.create(defaultRequest('web-0', 1));
    const mismatch = (e: unknown) => isVfleetError(e) && e.code === 'engine-mismatch';
    await assert.rejects(emulated.copyDisk('web-0', 2, real), mismatch);
    // Refused before the real host is touched (its dataDir does not exist).
    await assert.rejects(real.copyDisk('web-0', 2, emulated), mismatch);
    assert.equal((await emulated.fences()).get('web-0'), 1, 'nothing was fenced');
  });
});
