// The plan through BullMQ on a real redis-server into embedded hosts: converge, idempotence,
// a failed host, a move.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import type { Fleet } from '../../src/model/fleet.js';
import type { ObservedInstance } from '../../src/model/observed.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { actionHandler } from '../../src/queue/action-handler.js';
import { runPlan } from '../../src/queue/run-plan.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { embeddedQueueRig } from '../helpers/memory-sink.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { rootFleet } from '../helpers/root-fleet.js';
import { aFleetDocument, aGroup, aHost } from '../helpers/spec-builders.js';

describe('runPlan', () => {
  let server: TestRedisServer;
  let redis: Redis;
  const fleet = rootFleet();
  let n = 0;

  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
    redis = server.client();
  });
  after(async () => server.stop());

  const setup = (name: string, fleet: Fleet = rootFleet()) => {
    const fleetName = `${name}-${n++}`;
    const { engines, state, options } = embeddedQueueRig(server, redis, fleetName, fleet, () => 0);
    const planNow = (id: string, f: Fleet = fleet) => {
      const observed = state.observed();
      return makePlan(f, schedule(f, { instances: observed.instances }), observed, {
        id,
        specHash: 'h',
      });
    };
    const running = async () =>
      (await Promise.all([...engines.values()].map((e) => e.list()))).flat();
    return { engines, state, options, planNow, running, fleetName };
  };

  it('takes an empty fleet to the spec, and a second plan has no changes', async () => {
    const { state, options, planNow, running } = setup('converge');
    const plan = planNow('p1');
    const outcomes = await runPlan(plan, options);
    // 26 instances, and 6 patches: web's image is below the debian-12-security baseline.
    assert.equal(outcomes.length, 32);
    assert.equal(outcomes.filter((o) => o.action.endsWith('.patch')).length, 6);
    assert.ok(
      outcomes.every((o) => o.outcome === 'done'),
      JSON.stringify(outcomes.filter((o) => o.outcome !== 'done')),
    );
    assert.equal((await running()).length, 26);
    assert.equal(state.instances.size, 26);
    assert.deepEqual(planNow('p2').actions, []);
  });

  it('enqueues a wave in slices and reports its outcomes in the order of the wave', async () => {
    const whole = setup('whole');
    const sliced = setup('sliced');
    const reported: string[] = [];
    const inOrder = await runPlan(whole.planNow('p1'), whole.options);
    const outcomes = await runPlan(sliced.planNow('p1'), {
      ...sliced.options,
      sliceSize: 3,
      onOutcome: (o) => reported.push(o.action),
    });
    assert.deepEqual(outcomes, inOrder);
    assert.deepEqual(
      reported,
      inOrder.map((o) => o.action),
    );
    assert.equal((await sliced.running()).length, 26);
    assert.deepEqual(sliced.planNow('p2').actions, []);
  });

  it('a failover host that changes is recorded; the instance keeps running untouched', async () => {
    const { options, planNow, engines, state } = setup('retarget');
    await runPlan(planNow('p1'), options);
    // hv-r1-01 is the failover host of many: drained, it stops being one.
    const drained: Fleet = {
      ...fleet,
      hosts: fleet.hosts.map((h) => (h.name === 'hv-r1-01' ? { ...h, drain: true } : h)),
    };
    const plan = planNow('p2', drained);
    const retargets = plan.actions.filter((a) => a.kind === 'retarget');
    assert.ok(retargets.length > 0, 'some failover hosts move');
    assert.ok(
      plan.actions.every((a) => a.kind !== 'update'),
      'nothing is replaced',
    );
    const before = new Map(
      await Promise.all(
        retargets.map(async (a) => {
          const e = await (engines.get(a.host) as EmbeddedEngine).describe(a.instance);
          return [a.instance, e?.generation] as const;
        }),
      ),
    );
    const outcomes = await runPlan(plan, options);
    assert.ok(
      outcomes.every((o) => o.outcome === 'done'),
      JSON.stringify(outcomes),
    );
    for (const a of retargets) {
      const e = await (engines.get(a.host) as EmbeddedEngine).describe(a.instance);
      assert.equal(e?.generation, before.get(a.instance), `${a.instance} was not touched`);
      assert.equal(state.instances.get(a.instance)?.failoverHost, a.failoverHost);
      assert.notEqual(a.failoverHost, 'hv-r1-01');
    }
    assert.deepEqual(planNow('p3', drained).actions, []);
  });

  it('reports the jobs another process runs (a vfleet worker on the same queues), not only its own', {
    timeout: 60_000,
  }, async () => {
    const { options, planNow, state, running, engines } = setup('shared');
    const plan = planNow('p1');
    // A second worker per host queue, as a `vfleet worker` elsewhere would be: it takes most jobs.
    const connections: Redis[] = [];
    const others = fleet.hosts.map(
      (h) =>
        new Worker(
          `host.${h.name}`,
          actionHandler({ engine: (host) => engines.get(host) as EmbeddedEngine }, state, () => 0),
          {
            connection: connections[connections.push(options.connect()) - 1] as Redis,
            prefix: options.prefix,
            concurrency: 8,
          },
        ),
    );
    let theirs = 0;
    for (const w of others) w.on('completed', () => theirs++);
    try {
      const outcomes = await runPlan(plan, { ...options, concurrency: 1, sweepMs: 100 });
      assert.equal(outcomes.length, plan.actions.length);
      assert.ok(
        outcomes.every((o) => o.outcome === 'done'),
        JSON.stringify(outcomes),
      );
      assert.ok(theirs > 0, 'the other worker ran some of the jobs');
      assert.equal((await running()).length, 26);
    } finally {
      await Promise.all(others.map((w) => w.close()));
      for (const c of connections) c.disconnect();
    }
  });

  it('enqueuing the same plan twice runs nothing twice', async () => {
    const { options, planNow, running, state } = setup('twice');
    const plan = planNow('p1');
    await runPlan(plan, options);
    const eventsAfterFirst = state.events.length;
    const again = await runPlan(plan, options);
    assert.ok(again.every((o) => o.outcome === 'done' || o.outcome === 'already-done'));
    assert.equal(state.events.length, eventsAfterFirst, 'no job ran again');
    const names = (await running()).map((i) => i.instance);
    assert.equal(names.length, new Set(names).size, 'every instance exists exactly once');
  });

  it('a failed host fails its actions cleanly; the rest completes; recovery resumes', async () => {
    const { options, planNow, running, engines } = setup('failed');
    const failing = engines.get('ct-r1-03') as EmbeddedEngine;
    await failing.inject('fail');
    const outcomes = await runPlan(planNow('p1'), options);
    const failed = outcomes.filter((o) => o.outcome === 'failed');
    assert.ok(failed.length > 0);
    assert.ok(
      failed.every((o) => /ct-r1-03 does not answer/.test(o.error ?? '')),
      JSON.stringify(failed),
    );
    const skipped = outcomes.filter((o) => o.outcome === 'skipped');
    assert.equal(
      outcomes.filter((o) => o.outcome === 'done').length,
      32 - failed.length - skipped.length,
    );
    await failing.inject('recover');
    const resumed = await runPlan(planNow('p2'), options);
    assert.equal(resumed.length, failed.length + skipped.length);
    assert.ok(resumed.every((o) => o.outcome === 'done'));
    assert.equal((await running()).length, 26);
  });

  it('a job of a superseded plan (left by an apply that died) does nothing', async () => {
    const { options, planNow, running, state } = setup('superseded');
    state.current = 'a-newer-plan';
    const outcomes = await runPlan(planNow('p1'), options);
    const creates = outcomes.filter((o) => o.action.endsWith('.create'));
    assert.equal(creates.length, 26);
    assert.ok(creates.every((o) => o.outcome === 'failed' && /superseded/.test(o.error ?? '')));
    // The patches wait for their creates, which failed: they never run.
    assert.ok(outcomes.filter((o) => !creates.includes(o)).every((o) => o.outcome === 'skipped'));
    assert.equal((await running()).length, 0);
    assert.equal(state.instances.size, 0);
  });

  it('patches instances below their baseline, never two replicas of a group at once', async () => {
    const { engines, options, planNow, state } = setup('patch');
    const active = new Map<string, number>();
    let most = 0;
    for (const engine of engines.values()) {
      const patch = engine.patch.bind(engine);
      engine.patch = async (name, generation, packages) => {
        const group = name.replace(/-\d+$/, '');
        active.set(group, (active.get(group) ?? 0) + 1);
        most = Math.max(most, active.get(group) ?? 0);
        await new Promise((r) => setTimeout(r, 20)); // long enough for a second one to overlap
        try {
          return await patch(name, generation, packages);
        } finally {
          active.set(group, (active.get(group) ?? 0) - 1);
        }
      };
    }
    const plan = planNow('p1');
    const patches = plan.actions.filter((a) => a.kind === 'patch');
    assert.deepEqual(
      patches.map((a) => a.instance),
      ['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'web-5'],
    );
    const outcomes = await runPlan(plan, { ...options, concurrency: 8 });
    assert.ok(outcomes.every((o) => o.outcome === 'done'));
    assert.equal(most, 1, 'two replicas of web were patched at the same time');
    for (const a of patches) {
      const host = engines.get(a.host) as EmbeddedEngine;
      const installed = await host.inventory(a.instance);
      assert.equal(installed.openssl, '3.0.15-1~deb12u1');
      assert.equal(installed.libssl3, '3.0.15-1~deb12u1');
      assert.equal(state.instances.get(a.instance)?.packages?.openssl, '3.0.15-1~deb12u1');
    }
    assert.deepEqual(planNow('p2').actions, [], 'patched instances stay patched');
  });

  it('moves an instance when its host leaves the fleet: copy, start on the target, remove from the source', async () => {
    const { options, planNow, running, state } = setup('move');
    await runPlan(planNow('p1'), options);
    const before = state.instances.get('db-0') as ObservedInstance;
    const smaller: Fleet = { ...fleet, hosts: fleet.hosts.filter((h) => h.name !== before.host) };
    const plan = planNow('p2', smaller);
    const move = plan.actions.find((a) => a.instance === 'db-0');
    assert.equal(move?.kind, 'move');
    const outcomes = await runPlan(plan, options);
    assert.ok(
      outcomes.every((o) => o.outcome === 'done'),
      JSON.stringify(outcomes),
    );
    const where = (await running()).filter((i) => i.instance === 'db-0');
    assert.equal(where.length, 1);
    assert.equal(state.instances.get('db-0')?.host, move?.host);
    assert.equal(state.instances.get('db-0')?.generation, (before.generation ?? 0) + 1);
  });

  it('a swap of two instances runs: one stopped first, each ends exactly once on its new host', async () => {
    const pair = normalizeFleet(
      aFleetDocument({
        licenses: [],
        patchBaselines: [],
        hosts: [aHost({ name: 'h0' }), aHost({ name: 'h1' })],
        instances: [aGroup({ name: 'a', replicas: 1 }), aGroup({ name: 'b', replicas: 1 })],
      }),
    );
    const { options, state, engines } = setup('swap', pair);
    const plan = (id: string, hostOf: (instance: string) => string | undefined) => {
      const observed = state.observed();
      const placement = schedule(pair, { instances: observed.instances });
      return makePlan(
        pair,
        {
          ...placement,
          placements: placement.placements.map((p) => ({
            ...p,
            host: hostOf(p.instance) ?? p.host,
          })),
        },
        observed,
        { id, specHash: 'h' },
      );
    };
    await runPlan(
      plan('p1', (i) => (i === 'a-0' ? 'h0' : 'h1')),
      options,
    );
    const swap = plan('p2', (i) => (i === 'a-0' ? 'h1' : 'h0'));
    assert.deepEqual(
      swap.actions.map((a) => [a.id, a.stopFirst === true]),
      [
        ['a-0.move', true],
        ['b-0.move', false],
      ],
    );
    const outcomes = await runPlan(swap, options);
    assert.deepEqual(outcomes.map((o) => `${o.action}:${o.outcome}`).sort(), [
      'a-0.move:done',
      'b-0.move:done',
    ]);
    const where = await Promise.all(
      ['h0', 'h1'].map(async (h) =>
        (await (engines.get(h) as EmbeddedEngine).list()).map(
          (i) => `${i.instance}@${h}:${i.status}:${i.generation}`,
        ),
      ),
    );
    assert.deepEqual(where.flat().sort(), ['a-0@h1:running:2', 'b-0@h0:running:2']);
    assert.equal(state.instances.get('a-0')?.host, 'h1');
    assert.equal(state.instances.get('a-0')?.status, 'running');
    assert.equal(state.instances.get('b-0')?.host, 'h0');
    // The order the dependencies promise: a-0 left h0 before b-0 landed there, b-0 left h1
    // before a-0 landed there.
    const at = (instance: string, step: string) =>
      state.events.findIndex(
        (e) => e.instance === instance && e.step === step && e.outcome === 'done',
      );
    assert.ok(at('a-0', 'vacate') >= 0 && at('a-0', 'vacate') < at('b-0', 'move-in'));
    assert.ok(at('b-0', 'move-out') < at('a-0', 'move-in'));
    assert.deepEqual(plan('p3', () => undefined).actions, []);
  });

  it("a move whose source does not answer reports the failed step's own reason", async () => {
    const { options, planNow, state, engines } = setup('move-fails');
    await runPlan(planNow('p1'), options);
    const before = state.instances.get('db-0') as ObservedInstance;
    const drained: Fleet = {
      ...fleet,
      hosts: fleet.hosts.map((h) => (h.name === before.host ? { ...h, drain: true } : h)),
    };
    const plan = planNow('p2', drained);
    assert.equal(plan.actions.find((a) => a.instance === 'db-0')?.kind, 'move');
    const source = engines.get(before.host) as EmbeddedEngine;
    await source.inject('fail');
    const outcomes = await runPlan(plan, options);
    const move = outcomes.find((o) => o.action === 'db-0.move');
    assert.equal(move?.outcome, 'failed');
    // The copy-disk step on the source failed; its parent only knows "child … failed".
    assert.match(move?.error ?? '', new RegExp(`host ${before.host} does not answer`));
    assert.doesNotMatch(move?.error ?? '', /^child /);
    await source.inject('recover');
  });
});
