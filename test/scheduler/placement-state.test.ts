// PlacementState's deferred class keys (the keep stage): the classes' FitIndexes, updated in one
// go after any sequence of commits, walk exactly as they would have after each commit's own
// updates — every key, and the order of hosts that share one (it decides ties in placement).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { generateFleetDocument } from '../../examples/generate.js';
import type { FitIndex } from '../../src/scheduler/fit-index.js';
import { PlacementState } from '../../src/scheduler/placement-state.js';
import { normalizeFleet } from '../../src/spec/normalize.js';

const fleet = normalizeFleet(generateFleetDocument({ hosts: 24, instances: 600, seed: 5 }));

/** Every class index's walk, ascending: host after host, ties in bucket order. */
function walks(s: PlacementState): number[][] {
  const indexes = [...new Set(s.plans.map((p) => p.cls.index))];
  return indexes.map((index: FitIndex) => {
    const seen: number[] = [];
    index.ascending(0, (h) => {
      seen.push(h);
      return false;
    });
    return seen;
  });
}

describe('PlacementState deferred class keys', () => {
  it('leaves the class indexes as commits one by one would (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean()), { minLength: 1, maxLength: 120 }),
        (commits) => {
          const direct = new PlacementState(fleet);
          const deferred = new PlacementState(fleet);
          deferred.deferClassKeys();
          for (const [g, h, withTarget] of commits) {
            for (const s of [direct, deferred]) {
              const p = s.plans[g % s.plans.length];
              if (!p || p.cls.members.length === 0) continue;
              const host = p.cls.members[h % p.cls.members.length] as number;
              const target = p.cls.members[(h + 1) % p.cls.members.length] as number;
              const i = h % p.group.replicas;
              if (withTarget && target !== host) s.commit(p, i, { host, target });
              else s.commitHost(p, i, host);
            }
          }
          deferred.flushClassKeys();
          assert.deepEqual(walks(deferred), walks(direct));
        },
      ),
      { numRuns: 200, seed: 3 },
    );
  });
});
