import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FitIndex, MAX_KEY, SORTED_KEYS_UP_TO } from '../../src/scheduler/fit-index.js';

// An index over a few hosts keeps its keys in a sorted array, over more in a bitset tree: every
// case runs on both (the hosts used are the same; only the index's size differs).
for (const [form, size] of [
  ['sorted keys', (n: number) => n],
  ['bitset tree', () => SORTED_KEYS_UP_TO + 1],
] as const)
  describe(`FitIndex (${form})`, () => {
    it('finds the smallest key at or above a bound, and the largest', () => {
      const index = new FitIndex(size(4));
      index.set(0, 500);
      index.set(1, 100);
      index.set(2, 5000);
      assert.equal(
        index.ascending(101, () => true),
        0,
      );
      assert.equal(
        index.ascending(0, () => true),
        1,
      );
      assert.equal(
        index.ascending(5001, () => true),
        -1,
      );
      assert.equal(
        index.descending(0, () => true),
        2,
      );
      assert.equal(
        index.ascending(0, (h) => h !== 1),
        0,
        'skips a host the checks refuse',
      );
      index.remove(1);
      assert.equal(
        index.ascending(0, () => true),
        0,
      );
      index.set(0, 6000);
      assert.equal(
        index.descending(0, () => true),
        0,
      );
      index.set(3, MAX_KEY + 10);
      assert.equal(
        index.descending(0, () => true),
        3,
        'large keys clamp to the top',
      );
    });

    it('agrees with a sorted scan (property)', () => {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(31), fc.oneof(fc.nat(70_000), fc.constant(-1))), {
            maxLength: 200,
          }),
          fc.nat(70_000),
          (ops, bound) => {
            const index = new FitIndex(size(32));
            const model = new Map<number, number>();
            for (const [host, key] of ops) {
              if (key < 0) {
                index.remove(host);
                model.delete(host);
              } else {
                index.set(host, key);
                model.set(host, key);
              }
            }
            const seen: number[] = [];
            index.ascending(bound, (h) => {
              seen.push(model.get(h) as number);
              return false;
            });
            const expected = [...model.values()].filter((k) => k >= bound).sort((a, b) => a - b);
            assert.deepEqual(seen, expected);
            const down: number[] = [];
            index.descending(0, (h) => {
              down.push(model.get(h) as number);
              return false;
            });
            assert.deepEqual(
              down,
              [...model.values()].sort((a, b) => b - a),
            );
          },
        ),
        { numRuns: 300, seed: 7 },
      );
    });

    it('visits equal keys last set first, through many keys sharing slots (property)', () => {
      // Few distinct keys over many hosts: buckets of several hosts, and keys whose hash slots
      // collide, set and removed in any order. The visiting order decides ties in placement, so
      // it is compared whole against a model of the buckets as lists.
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(47), fc.oneof(fc.nat(300), fc.constant(-1))), {
            maxLength: 400,
          }),
          (ops) => {
            const index = new FitIndex(size(48));
            const buckets = new Map<number, number[]>();
            const keyOf = new Map<number, number>();
            const unlink = (host: number) => {
              const k = keyOf.get(host);
              if (k === undefined) return;
              const list = buckets.get(k) as number[];
              list.splice(list.indexOf(host), 1);
              if (list.length === 0) buckets.delete(k);
              keyOf.delete(host);
            };
            for (const [host, key] of ops) {
              if (key < 0) {
                index.remove(host);
                unlink(host);
              } else {
                index.set(host, key);
                if (keyOf.get(host) === key) continue;
                unlink(host);
                buckets.set(key, [host, ...(buckets.get(key) ?? [])]);
                keyOf.set(host, key);
              }
            }
            const seen: number[] = [];
            index.ascending(0, (h) => {
              seen.push(h);
              return false;
            });
            const keys = [...buckets.keys()].sort((a, b) => a - b);
            assert.deepEqual(
              seen,
              keys.flatMap((k) => buckets.get(k) as number[]),
            );
            const down: number[] = [];
            index.descending(0, (h) => {
              down.push(h);
              return false;
            });
            assert.deepEqual(
              down,
              [...keys].reverse().flatMap((k) => buckets.get(k) as number[]),
            );
          },
        ),
        { numRuns: 500, seed: 11 },
      );
    });
  });
