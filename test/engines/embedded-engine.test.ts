import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EmbeddedEngine, setHostDown } from '../../src/engines/embedded/embedded-engine.js';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { Host } from '../../src/model/fleet.js';
import { aModelHost } from '../helpers/hosts.js';
import { startRedisServer } from '../helpers/redis.js';
import { engineConformance } from './conformance.js';

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
  return {
    a: new EmbeddedEngine(redis, 'conformance', host('emu-a'), options),
    b: new EmbeddedEngine(redis, 'conformance', host('emu-b'), options),
    fail: (name) => setHostDown(redis, 'conformance', name, true),
    recover: (name) => setHostDown(redis, 'conformance', name, false),
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
