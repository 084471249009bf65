// A newer spec supersedes a sync that does not end (an apply failing and retrying, or stuck):
// the real controller on a real redis-server, with an executor that runs until it is aborted,
// so nothing here depends on how fast the machine is. The sync of the first spec is aborted
// (`sync-aborted`, "superseded by a newer spec") as soon as the second is followed, and the
// second is reconciled at once, without waiting for the interval or a backoff.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { readValidSpec } from '../../src/app/session.js';
import {
  type ControllerEvent,
  createController,
  type Executor,
  type SpecSource,
} from '../../src/controller/controller.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil, workdir } from '../helpers/vfleet-cli.js';

describe('a newer spec supersedes a sync that does not end', () => {
  let server: TestRedisServer;
  let dir: string;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = workdir();
    copyFileSync(`${dir}/fleet.yaml`, `${dir}/a.yaml`);
    const b = readFileSync(`${dir}/fleet.yaml`, 'utf8').replace(
      /(- name: batch\n(?:(?! *- name:).*\n)*? +replicas: )\d+/,
      '$19',
    );
    writeFileSync(`${dir}/b.yaml`, b);
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('aborts the stuck sync and reconciles the newer spec at once', async () => {
    let current = 'a';
    const source: SpecSource = {
      describe: 'test source',
      signature: () => current,
      read: () => readValidSpec(`${dir}/${current}.yaml`),
    };
    const calls: Array<{ specHash: string; aborted: boolean }> = [];
    // Every sync runs until it is aborted (a sync that fails and retries for ever).
    const executor: Executor = async (session, o) => {
      const call = { specHash: session.specHash, aborted: false };
      calls.push(call);
      // The newer spec's sync finds someone else applying: it ends (the controller tries again
      // later), so the controller can be closed.
      if (calls.length > 1)
        return { status: 'locked', holder: { id: 'someone', pid: 1, host: 'elsewhere', since: 0 } };
      return new Promise((_, reject) => {
        const stop = () => {
          call.aborted = true;
          reject(o.signal?.reason);
        };
        if (o.signal?.aborted) stop();
        o.signal?.addEventListener('abort', stop, { once: true });
      });
    };
    const events: ControllerEvent[] = [];
    const controller = await createController(source, {
      policy: { ttlMs: 60_000, graceMs: 10_000 },
      intervalMs: 3_600_000,
      autoApply: true,
      concurrency: 1,
      takeoverMs: 5_000,
      externalWorkers: true,
      env: { ...process.env, REDIS_URL: `${server.url}/0` },
      cwd: dir,
      executor,
      onEvent: (e) => events.push(e),
    });
    try {
      await controller.tick();
      await pollUntil('the first sync runs', () => (calls.length === 1 ? true : undefined), 30_000);
      const first = calls[0];
      current = 'b';
      await controller.tick(); // follows b: the stuck sync of a is aborted, b's starts at once
      await pollUntil(
        'the newer spec is being synced',
        () => (calls.length === 2 ? true : undefined),
        30_000,
      );
      assert.equal(first?.aborted, true, 'the sync of the older spec was aborted');
      assert.notEqual(calls[1]?.specHash, first?.specHash, 'the second sync is of the newer spec');
      const aborted = events.find((e) => e.type === 'sync-aborted');
      assert.match(String(aborted?.cause), /superseded: superseded by a newer spec/);
      const order = events.map((e) => e.type);
      assert.ok(order.indexOf('spec-changed') < order.indexOf('sync-aborted'), order.join(','));
    } finally {
      await controller.close();
    }
  });
});
