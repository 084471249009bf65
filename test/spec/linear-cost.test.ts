// Validate's cost stays linear in the spec's size, asserted without a clock (STYLE.md #11): the
// work is counted as elements visited by the array methods that walk a list (some, find, every,
// forEach, filter, map, findIndex, includes, indexOf), the loops a quadratic hides in (yaml's
// duplicate-key check ran `items.some(...)` once per key: n²/2 visits for a map of n keys). A
// mapping 4× as wide must cost at most about 4× the visits, not 16×.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadFleet } from '../../src/spec/load-fleet.js';

const METHODS = [
  'some',
  'find',
  'every',
  'forEach',
  'filter',
  'map',
  'findIndex',
  'includes',
  'indexOf',
] as const;

/** Array elements the walking methods visit while `run` runs (the length of each list walked). */
function visits(run: () => void): number {
  let count = 0;
  const proto = Array.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = METHODS.map((m) => [m, proto[m]] as const);
  for (const [name, original] of originals) {
    proto[name] = function (this: unknown[], ...args: unknown[]) {
      count += this.length;
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
  try {
    run();
  } finally {
    for (const [name, original] of originals) proto[name] = original as never;
  }
  return count;
}

function wideSpec(keys: number, section: 'labels' | 'packages'): string {
  const entries = Array.from({ length: keys }, (_, i) =>
    section === 'labels' ? `        k${i}: v${i}` : `        pkg-${i}: "1.${i}"`,
  ).join('\n');
  const host = section === 'labels' ? `      labels:\n${entries}\n` : '';
  const image = section === 'packages' ? `      packages:\n${entries}\n` : '';
  return `apiVersion: vfleet/v1
kind: Fleet
metadata: { name: wide }
spec:
  hosts:
    - name: h-0
${host}      cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 }
      memoryMiB: 65536
      diskGiB: 100
      os: { family: debian, release: "12", arch: x86_64 }
      runs: [container]
  images:
    - name: debian-12
      kind: container
      os: { family: debian, release: "12", arch: x86_64 }
${image}  instances:
    - name: web
      image: debian-12
      replicas: 1
      resources: { vcpus: 1, memoryMiB: 64 }
`;
}

describe('validate is linear in the width of a mapping', () => {
  for (const { name, section, fast } of [
    {
      name: '4,000 label keys on a host (over the schema limit of 64)',
      section: 'labels',
      fast: true,
    },
    {
      name: '4,000 inline packages of an image (valid, careful path)',
      section: 'packages',
      fast: false,
    },
  ] as const) {
    it(name, () => {
      const cost = (keys: number) => {
        const bytes = new TextEncoder().encode(wideSpec(keys, section));
        let diagnostics = 0;
        const n = visits(() => {
          diagnostics = loadFleet(bytes, 'wide.yaml', { fast }).diagnostics.length;
        });
        return { n, diagnostics };
      };
      const small = cost(1_000);
      const large = cost(4_000);
      assert.equal(small.diagnostics, large.diagnostics, 'the same findings at both sizes');
      const ratio = large.n / small.n;
      assert.ok(
        ratio < 5,
        `4× the keys visited ${ratio.toFixed(1)}× the elements (${small.n} → ${large.n})`,
      );
    });
  }

  it('still finds a duplicate key, at the duplicate', () => {
    const text = wideSpec(3, 'labels').replace('        k2: v2', '        k0: again');
    const { diagnostics } = loadFleet(text, 'dup.yaml');
    const duplicate = diagnostics.find((d) => d.code === 'duplicate-key');
    assert.ok(duplicate, JSON.stringify(diagnostics));
    assert.equal(duplicate.message, 'duplicate key "k0"');
    assert.equal(duplicate.line, 10);
    assert.equal(duplicate.column, 9);
  });
});
