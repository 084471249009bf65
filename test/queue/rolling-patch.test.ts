// Rolling patches run through BullMQ on a real redis-server into embedded hosts: never more than
// maxUnavailable replicas of a group out of service at once (counted from the event log, in the
// order the jobs wrote it), a failure stopping its group's rollout while the fleet goes on,
// windows deferring patches and closing on a rollout, and a rollback from the snapshot.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import type { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import type { Fleet } from '../../src/model/fleet.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import type { Plan } from '../../src/model/plan.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { type ActionOutcome, runPlan } from '../../src/queue/run-plan.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { embeddedQueueRig } from '../helpers/memory-sink.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';

const OLD = { openssl: '3.0.13-1~deb12u1', libc6: '2.36-9' };
const NEW = { openssl: '3.0.15-1~deb12u1', libc6: '2.36-9+deb12u7' };
const small = { vcpus: 1, memoryMiB: 64, diskGiB: 0 };
const aBigHost = (name: string) =>
  aHost({ name, memoryMiB: 1_048_576, cpu: { sockets: 2, coresPerSocket: 64 } });

function fleetOf(
  groups: FleetDocument['spec']['instances'],
  extra: Partial<FleetDocument['spec']> = {},
): Fleet {
  return normalizeFleet(
    aFleetDocument({
      hosts: [aBigHost('hv-01'), aBigHost('hv-02'), aBigHost('hv-03')],
      images: [anImage({ packages: OLD })],
      patchBaselines: [
        {
          name: 'sec',
          appliesTo: { family: 'debian' },
          minimum: {
            openssl: { version: NEW.openssl, security: true },
            libc6: { version: NEW.libc6, reboot: true },
          },
        },
      ],
      instances: groups,
      ...extra,
    }),
  );
}

/**
 * The most replicas of each group out of service at once, from the event log in the order the
 * jobs appended it: a patch-started event takes one out, its job's outcome event puts it back.
 */
function mostUnavailable(events: ReadonlyArray<Record<string, unknown>>): Map<string, number> {
  const out = new Map<string, number>();
  const most = new Map<string, number>();
  const groupOf = (instance: unknown) => String(instance).replace(/-\d+$/, '');
  for (const e of events) {
    const group = groupOf(e.instance);
    if (e.type === 'patch-started') {
      out.set(group, (out.get(group) ?? 0) + 1);
      most.set(group, Math.max(most.get(group) ?? 0, out.get(group) ?? 0));
    } else if (e.step === 'patch' && e.type === undefined) {
      out.set(group, (out.get(group) ?? 0) - 1);
    }
  }
  return most;
}

describe('rolling patches through the host queues', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let n = 0;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
    redis = server.client();
  });
  after(async () => server.stop());

  const setup = (fleet: Fleet) => {
    const fleetName = `roll-${n++}`;
    const { engines, state, options } = embeddedQueueRig(server, redis, fleetName, fleet, () =>
      Date.now(),
    );
    const planNow = (nowMs?: number): Plan => {
      const observed = state.observed();
      return makePlan(fleet, schedule(fleet, { instances: observed.instances }), observed, {
        id: `p${state.events.length}`,
        specHash: 'h',
        ...(nowMs === undefined ? {} : { nowMs }),
      });
    };
    const engineOf = (instance: string) =>
      engines.get(state.instances.get(instance)?.host ?? '') as EmbeddedEngine;
    return { engines, state, options, planNow, engineOf };
  };

  /**
   * Holds each patch until every replica of its batch has started one (bounded: a rollout that
   * ran them one by one would time out here), so that the overlap the plan allows is reached.
   */
  const batchBarrier = (engines: Map<string, EmbeddedEngine>, plan: Plan) => {
    const batchOf = new Map(
      plan.actions
        .filter((a) => a.kind === 'patch')
        .map((a) => [a.instance, `${a.group}/${a.batch}`]),
    );
    const sizes = new Map<string, number>();
    for (const b of batchOf.values()) sizes.set(b, (sizes.get(b) ?? 0) + 1);
    const arrived = new Map<string, number>();
    const waiters = new Map<string, Array<() => void>>();
    for (const engine of engines.values()) {
      const patch = engine.patch.bind(engine);
      engine.patch = async (name, generation, packages, options) => {
        const batch = batchOf.get(name) as string;
        arrived.set(batch, (arrived.get(batch) ?? 0) + 1);
        if ((arrived.get(batch) ?? 0) >= (sizes.get(batch) ?? 1)) {
          for (const release of waiters.get(batch) ?? []) release();
        } else {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`batch ${batch}: its other replicas never started`)),
              20_000,
            );
            waiters.set(batch, [
              ...(waiters.get(batch) ?? []),
              () => {
                clearTimeout(timer);
                resolve();
              },
            ]);
          });
        }
        return patch(name, generation, packages, options);
      };
    }
  };

  for (const maxUnavailable of [1, 2]) {
    it(`maxUnavailable ${maxUnavailable}: at most ${maxUnavailable} replicas of a group out of service at once, and the next batch only once they run again`, async () => {
      const fleet = fleetOf([
        aGroup({ replicas: 5, patchBaseline: 'sec', resources: small, patch: { maxUnavailable } }),
        aGroup({ name: 'db', replicas: 2, patchBaseline: 'sec', resources: small }),
      ]);
      const { engines, state, options, planNow, engineOf } = setup(fleet);
      const plan = planNow();
      batchBarrier(engines, plan);
      const outcomes = await runPlan(plan, options);
      assert.ok(
        outcomes.every((o) => o.outcome === 'done'),
        JSON.stringify(outcomes),
      );
      const most = mostUnavailable(state.events);
      assert.equal(most.get('web'), maxUnavailable, 'web: the most out of service at once');
      assert.equal(most.get('db'), 1);
      // Batch by batch: every patch of a batch starts after every patch of the one before ended.
      const ended = new Map<string, number>();
      const started = new Map<string, number>();
      state.events.forEach((e, i) => {
        if (e.type === 'patch-started') started.set(String(e.instance), i);
        else if (e.step === 'patch' && e.type === undefined) ended.set(String(e.instance), i);
      });
      const web = plan.actions.filter((a) => a.kind === 'patch' && a.group === 'web');
      for (const a of web) {
        for (const b of web.filter((x) => (x.batch ?? 0) === (a.batch ?? 0) - 1)) {
          assert.ok(
            (ended.get(b.instance) ?? Infinity) < (started.get(a.instance) ?? -1),
            `${a.instance} (batch ${a.batch}) started before ${b.instance} ended`,
          );
        }
      }
      for (const a of web) {
        const after = await engineOf(a.instance).describe(a.instance);
        assert.equal(after?.status, 'running');
        assert.deepEqual(after?.packages, NEW);
        // libc6's entry says reboot: true, so the instance asks for one.
        assert.equal(after?.lastPatch?.rebootRequired, true);
        assert.equal(state.patches.get(a.instance)?.rebootRequired, true);
        assert.deepEqual(state.patches.get(a.instance)?.packages, ['libc6', 'openssl']);
      }
    });
  }

  it('a failed patch stops its group after its batch: the rest skipped as rollout stopped, other groups go on', async () => {
    const fleet = fleetOf([
      aGroup({ replicas: 5, patchBaseline: 'sec', resources: small, patch: { maxUnavailable: 2 } }),
      aGroup({ name: 'db', replicas: 3, patchBaseline: 'sec', resources: small }),
    ]);
    const { engines, state, options, planNow, engineOf } = setup(fleet);
    const plan = planNow();
    // web-2 (batch 2 with web-3) breaks on openssl, as a package whose postinst fails.
    for (const engine of engines.values()) await engine.injectPatchFault('web-2', 'openssl');
    const outcomes = await runPlan(plan, options);
    const by = new Map(outcomes.map((o) => [o.action, o]));
    const of = (id: string) => by.get(id) as ActionOutcome;
    assert.deepEqual(
      ['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'db-0', 'db-1', 'db-2'].map((i) => [
        i,
        of(`${i}.patch`).outcome,
      ]),
      [
        ['web-0', 'done'],
        ['web-1', 'done'],
        ['web-2', 'failed'],
        ['web-3', 'done'], // in web-2's batch: already under way
        ['web-4', 'skipped'],
        ['db-0', 'done'],
        ['db-1', 'done'],
        ['db-2', 'done'],
      ],
    );
    assert.match(
      of('web-2.patch').error ?? '',
      /^patch-failed: hv-0\d: web-2: openssl's post-installation script failed/,
    );
    assert.equal(of('web-4.patch').error, 'rollout stopped after web-2 failed');
    assert.equal(of('web-4.patch').stoppedAfter, 'web-2');
    // What the host has: openssl half-configured (not installed), libc6 raised; recorded so.
    const broken = await engineOf('web-2').describe('web-2');
    assert.deepEqual(broken?.packages, { libc6: NEW.libc6 });
    assert.equal(broken?.lastPatch?.outcome, 'failed');
    assert.deepEqual(state.instances.get('web-2')?.packages, { libc6: NEW.libc6 });
    assert.equal(state.patches.get('web-2')?.outcome, 'failed');
    assert.deepEqual((await engineOf('web-4').describe('web-4'))?.packages, OLD, 'web-4 untouched');
    // The next plan patches web-2 and web-4 again, in one rollout.
    const next = planNow();
    assert.deepEqual(
      next.actions.map((a) => [a.id, a.batch]),
      [
        ['web-2.patch', 1],
        ['web-4.patch', 1],
      ],
    );
  });

  it('rollback: a failed patch of a VM puts it back as it was before, from its snapshot', async () => {
    const fleet = fleetOf(
      [
        aGroup({
          replicas: 3,
          patchBaseline: 'sec',
          resources: small,
          patch: { onFailure: 'rollback' },
        }),
      ],
      { images: [anImage({ kind: 'vm', packages: OLD, source: { disk: 'd.qcow2' } })] },
    );
    const { engines, state, options, planNow, engineOf } = setup(fleet);
    for (const engine of engines.values()) await engine.injectPatchFault('web-1', 'openssl');
    const outcomes = await runPlan(planNow(), options);
    assert.deepEqual(
      outcomes.filter((o) => o.action.endsWith('.patch')).map((o) => [o.action, o.outcome]),
      [
        ['web-0.patch', 'done'],
        ['web-1.patch', 'failed'],
        ['web-2.patch', 'skipped'],
      ],
    );
    const back = await engineOf('web-1').describe('web-1');
    assert.deepEqual(back?.packages, OLD, 'as before the patch: openssl and libc6 untouched');
    assert.equal(back?.lastPatch?.rolledBack, true);
    assert.match(back?.lastPatch?.error ?? '', /rolled back to its snapshot$/);
    assert.equal(state.patches.get('web-1')?.rolledBack, true);
  });

  it('a closed window defers the patches (creates go on); one closing midway starts no new batch', async () => {
    const fleet = fleetOf([
      aGroup({
        replicas: 4,
        patchBaseline: 'sec',
        resources: small,
        patchWindow: { cron: '0 2 * * *', duration: '1h' },
      }),
    ]);
    const closed = setup(fleet);
    const night = Date.parse('2024-06-01T01:00:00Z');
    const plan = closed.planNow(night);
    const outcomes = await runPlan(plan, { ...closed.options, windowClock: () => night });
    assert.equal(outcomes.filter((o) => o.outcome === 'done').length, 4, 'the creates ran');
    const deferred = outcomes.filter((o) => o.outcome === 'deferred');
    assert.deepEqual(
      deferred.map((o) => [o.action, o.until]),
      ['web-0', 'web-1', 'web-2', 'web-3'].map((i) => [`${i}.patch`, '2024-06-01T02:00:00.000Z']),
    );
    assert.equal(closed.state.events.filter((e) => e.type === 'patch-started').length, 0);

    // Inside the window, each patch taking 25 minutes: the window (02:00-03:00) closes after
    // the third; the fourth is deferred to the next night.
    let now = Date.parse('2024-06-01T02:00:00Z');
    const outcomes2 = await runPlan(closed.planNow(now), {
      ...closed.options,
      windowClock: () => now,
      onOutcome: (o) => {
        if (o.action.endsWith('.patch') && o.outcome === 'done') now += 25 * 60_000;
      },
    });
    assert.deepEqual(
      outcomes2.map((o) => [o.action, o.outcome, o.until ?? null]),
      [
        ['web-0.patch', 'done', null],
        ['web-1.patch', 'done', null],
        ['web-2.patch', 'done', null],
        ['web-3.patch', 'deferred', '2024-06-02T02:00:00.000Z'],
      ],
    );
  });
});
