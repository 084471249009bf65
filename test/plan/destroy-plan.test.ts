// The destroy plan (`vfleet destroy`, `plan --destroy`): every observed instance destroyed,
// nothing created, fenced above what the hosts have seen, licenses down to nothing, shown and
// saved like any plan.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderPlanText } from '../../src/cli/views/plan-view.js';
import { EMPTY_STATE, type ObservedState } from '../../src/model/observed.js';
import { makeDestroyPlan } from '../../src/plan/destroy-plan.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { parsePlan, serializePlan } from '../../src/plan/plan-file.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup } from '../helpers/spec-builders.js';

const meta = { id: 'd1', specHash: 'h' };
const fleet = normalizeFleet(
  aFleetDocument({
    failover: { tolerate: 1, domain: 'host' },
    instances: [
      aGroup({ replicas: 2, licenses: ['backup-agent'], failover: true }),
      aGroup({ name: 'db', replicas: 1 }),
    ],
  }),
);

/** The fleet as a converged apply leaves it, plus one instance of a group the spec dropped. */
function converged(): ObservedState {
  const placement = schedule(fleet, { instances: [] });
  const instances = placement.placements.map((p, i) => {
    const group = fleet.groups.find((g) => g.name === p.group);
    assert.ok(group);
    return {
      instance: p.instance,
      group: p.group,
      host: p.host,
      generation: 3 + i,
      status: i === 0 ? ('stopped' as const) : ('running' as const),
      image: group.image,
      resources: group.resources,
      failoverHost: p.failoverHost,
    };
  });
  const [first] = instances;
  assert.ok(first);
  return {
    version: 7,
    instances: [...instances, { ...first, instance: 'old-0', group: 'old', generation: 1 }],
    fences: { 'old-0': 9 },
  };
}

describe('makeDestroyPlan', () => {
  it('destroys every observed instance, stopped or of a removed group, above its fence', () => {
    const observed = converged();
    const plan = makeDestroyPlan(fleet, observed, meta);
    assert.equal(plan.destroy, true);
    assert.equal(plan.stateVersion, 7);
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.instance, a.host, a.generation, a.reason, a.dependsOn]),
      observed.instances.map((o) => [
        'destroy',
        o.instance,
        o.host,
        o.instance === 'old-0' ? 10 : o.generation + 1,
        'destroy requested',
        [],
      ]),
    );
    assert.deepEqual(plan.summary, { create: 0, move: 0, update: 0, patch: 0, destroy: 4 });
    assert.deepEqual(plan.unplaceable, []);
  });

  it('drafts its destroys exactly as makePlan does for what a placement no longer holds', () => {
    const observed = converged();
    const destroy = makeDestroyPlan(fleet, observed, meta);
    const nothingPlaced = { ...schedule(fleet, { instances: [] }), placements: [] };
    const plain = makePlan(fleet, nothingPlaced, observed, meta);
    assert.deepEqual(
      destroy.actions.map(({ reason: _, ...a }) => a),
      plain.actions.map(({ reason: _, ...a }) => a),
    );
  });

  it('takes the licenses from what runs to nothing, and is shown like any plan', () => {
    const plan = makeDestroyPlan(fleet, converged(), meta);
    const pool = plan.licenses.find((l) => l.pool === 'backup-agent');
    assert.ok(pool);
    assert.ok(pool.before > 0);
    assert.equal(pool.after, 0);
    const text = renderPlanText(plan);
    assert.match(text, /^ {2}- destroy web-0 on \S+: destroy requested$/m);
    assert.match(text, new RegExp(`backup-agent \\(instance\\): ${pool.before} → 0 of 10`));
    assert.doesNotMatch(text, /^Failover:/m);
    assert.match(text, /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 4 to destroy\.\n$/);
  });

  it('has nothing to do for an empty fleet, and says so', () => {
    const plan = makeDestroyPlan(fleet, EMPTY_STATE, meta);
    assert.deepEqual(plan.actions, []);
    assert.match(
      renderPlanText(plan),
      /^No changes\. Nothing to destroy: fleet test has no instances\./,
    );
  });

  it('is saved and read back as a destroy plan', () => {
    const plan = makeDestroyPlan(fleet, converged(), meta);
    const read = parsePlan(serializePlan(plan));
    assert.ok(read.ok);
    assert.equal(read.plan.destroy, true);
    const bad = parsePlan(serializePlan({ ...plan, destroy: 'yes' as unknown as true }));
    assert.equal(bad.ok, false);
  });
});
