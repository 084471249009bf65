// The controller and patch windows on a fake clock: the real controller (leader lease, reconcile,
// apply through the host queues) on a real redis-server with embedded hosts, ticked by the test
// at chosen times. Outside the window it creates the instances and leaves their patches
// (`patches-deferred`), does not reconcile again before the window opens, patches when it opens,
// stops starting new batches when it closes (each patch takes 25 fake minutes here), and
// finishes in the next window. No real time is waited for.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { applyFleet } from '../../src/app/apply.js';
import { readValidSpec } from '../../src/app/session.js';
import {
  type ControllerEvent,
  createController,
  type Executor,
  type SpecSource,
} from '../../src/controller/controller.js';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aFleetDocument, aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';

const doc = aFleetDocument({
  hosts: [aHost({ name: 'hv-01' }), aHost({ name: 'hv-02', labels: { rack: 'r2' } })],
  images: [anImage({ packages: { openssl: '3.0.13-1~deb12u1' } })],
  licenses: [],
  patchBaselines: [
    {
      name: 'sec',
      appliesTo: { family: 'debian' },
      minimum: { openssl: '3.0.15-1~deb12u1' },
    },
  ],
  patching: { patchWindow: { cron: '0 2 * * *', duration: '1h' } },
  instances: [
    aGroup({ replicas: 4, resources: { vcpus: 1, memoryMiB: 256 }, patchBaseline: 'sec' }),
  ],
});

describe('the controller opens and closes patch windows on its clock', () => {
  let server: TestRedisServer;
  let dir: string;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = mkdtempSync(`${tmpdir()}/vfleet-window-`);
    writeFileSync(`${dir}/fleet.yaml`, toYaml(doc));
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('defers, waits for the opening, patches, stops at the closing, resumes the next night', async () => {
    let now = Date.parse('2024-06-01T00:30:00Z');
    const clock = () => now;
    const source: SpecSource = {
      describe: 'test source',
      signature: () => 'one',
      read: () => readValidSpec(`${dir}/fleet.yaml`),
    };
    // The default executor (apply through the host queues, on the controller's clock), with
    // time passing as patches complete: 25 minutes each.
    const syncs: string[] = [];
    const executor: Executor = (session, o) =>
      applyFleet(session, {
        approve: async () => true,
        concurrency: 2,
        externalWorkers: false,
        takeoverMs: 5_000,
        leaderToken: o.leaderToken,
        ...(o.select ? { select: o.select } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
        recordRevision: false,
        clock,
        onEvent: (e) => {
          if (e.type === 'running') syncs.push(new Date(now).toISOString());
          if (
            e.type === 'outcome' &&
            e.outcome.action.endsWith('.patch') &&
            e.outcome.outcome === 'done'
          )
            now += 25 * 60_000;
          o.onEvent(e);
        },
      });
    const events: ControllerEvent[] = [];
    const controller = await createController(source, {
      policy: { ttlMs: 60_000, graceMs: 10_000 },
      intervalMs: 24 * 3_600_000, // only the windows wake it
      autoApply: true,
      concurrency: 2,
      takeoverMs: 5_000,
      externalWorkers: false,
      clock,
      env: { ...process.env, REDIS_URL: `${server.url}/0`, VFLEET_EMBEDDED_BOOT_MS: '0' },
      cwd: dir,
      executor,
      onEvent: (e) => events.push(e),
    });
    const fleet = normalizeFleet(doc);
    const redis = server.client();
    const packages = async () => {
      const out: Record<string, string> = {};
      for (const h of fleet.hosts) {
        for (const i of await new EmbeddedEngine(redis, 'test', h).list()) {
          out[i.instance] = i.packages.openssl ?? '';
        }
      }
      return Object.fromEntries(Object.entries(out).sort());
    };
    const OLD = '3.0.13-1~deb12u1';
    const NEW = '3.0.15-1~deb12u1';
    const tickAt = async (iso: string) => {
      now = Date.parse(iso);
      await controller.tick(true);
    };
    try {
      // 00:30: the instances are created, their patches deferred until 02:00.
      await tickAt('2024-06-01T00:30:00Z');
      assert.deepEqual(await packages(), {
        'web-0': OLD,
        'web-1': OLD,
        'web-2': OLD,
        'web-3': OLD,
      });
      const deferred = events.find((e) => e.type === 'patches-deferred');
      assert.equal(
        deferred?.until,
        '2024-06-01T02:00:00.000Z',
        JSON.stringify(events.map((e) => e.type)),
      );
      assert.equal(deferred?.patches, 4);
      assert.deepEqual(syncs, ['2024-06-01T00:30:00.000Z']);

      // 01:59: not due (the interval is a day, the window not open): nothing runs.
      await tickAt('2024-06-01T01:59:00Z');
      assert.deepEqual(syncs, ['2024-06-01T00:30:00.000Z']);

      // 02:00: the window opens, the reconcile is due; each patch takes 25 minutes, so the
      // third starts at 02:50 and the fourth would start at 03:15, after the close.
      await tickAt('2024-06-01T02:00:00Z');
      assert.deepEqual(syncs, ['2024-06-01T00:30:00.000Z', '2024-06-01T02:00:00.000Z']);
      assert.deepEqual(await packages(), {
        'web-0': NEW,
        'web-1': NEW,
        'web-2': NEW,
        'web-3': OLD,
      });
      const closed = events.filter((e) => e.type === 'patches-deferred').at(-1);
      assert.equal(closed?.until, '2024-06-02T02:00:00.000Z');
      assert.match(String(closed?.cause), /the patch window closed/);

      // 12:00: not due; the next night at 02:00 web-3 is patched.
      await tickAt('2024-06-01T12:00:00Z');
      assert.equal(syncs.length, 2);
      await tickAt('2024-06-02T02:00:00Z');
      assert.equal(syncs.at(-1), '2024-06-02T02:00:00.000Z');
      assert.deepEqual(await packages(), {
        'web-0': NEW,
        'web-1': NEW,
        'web-2': NEW,
        'web-3': NEW,
      });
      const last = events.filter((e) => e.type === 'reconciled').at(-1);
      assert.deepEqual(last?.summary, { create: 0, move: 0, update: 0, patch: 1, destroy: 0 });
    } finally {
      await controller.close();
    }
  });
});
