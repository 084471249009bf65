// The fast path must be invisible: for every input it takes, the result is exactly what the
// careful path gives; everything it declines goes to the careful path.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { generateFleetYaml } from '../../examples/generate.js';
import { fastParse } from '../../src/spec/fast-path.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { fromRoot } from '../helpers/paths.js';
import { aFleetDocument, aGroup, aHost, toYaml } from '../helpers/spec-builders.js';

function same(text: string | Uint8Array, name: string) {
  assert.deepEqual(loadFleet(text, name), loadFleet(text, name, { fast: false }), name);
}

describe('fast path', () => {
  it('is taken for the shipped specs and a generated one', () => {
    for (const text of [
      readFileSync(fromRoot('fleet.yaml'), 'utf8'),
      generateFleetYaml({ hosts: 50, instances: 1_000, seed: 3 }),
    ]) {
      assert.notEqual(fastParse(text), undefined);
    }
  });

  it('gives exactly the careful result on every shipped, generated and fixture spec', () => {
    same(readFileSync(fromRoot('fleet.yaml')), 'fleet.yaml');
    for (const f of readdirSync(fromRoot('examples')).filter((f) => f.endsWith('.yaml'))) {
      same(readFileSync(fromRoot('examples', f)), f);
    }
    for (const f of readdirSync(fromRoot('test', 'fixtures', 'invalid')).filter((f) =>
      f.endsWith('.yaml'),
    )) {
      same(readFileSync(fromRoot('test', 'fixtures', 'invalid', f)), f);
    }
    for (const seed of [1, 2, 3]) {
      for (const groupSize of [1, 7, 50]) {
        same(
          generateFleetYaml({ hosts: 40, instances: 400, seed, groupSize }),
          `gen-${seed}-${groupSize}`,
        );
      }
    }
  });

  it('declines what the careful path has a diagnostic for', () => {
    const base = toYaml(aFleetDocument());
    for (const text of [
      `${base}\nx: &a 1\ny: *a\n`,
      `${base}\nextra: !!binary aGk=\n`,
      `%YAML 1.2\n---\n${base}`,
      `${base}\nspec: {}\n`, // duplicate key
      base.replace('kind: Fleet', 'kind: Fleet\n__proto__: {x: 1}'),
      `${base}\n? [a, b]\n: c\n`,
      `${base}\n<<: {a: 1}\n`,
    ]) {
      assert.equal(fastParse(text), undefined, text.slice(-40));
      same(text, 'declined.yaml');
    }
  });

  it('agrees with the careful path on random edits of a valid spec (property)', () => {
    const scalar = fc.oneof(
      fc.integer(),
      fc.double({ noNaN: true }),
      fc.boolean(),
      fc.constantFrom(
        '12',
        '0x1F',
        '0o17',
        '1e3',
        '.inf',
        'yes',
        'no',
        '~',
        'null',
        'True',
        '-0',
        '+1',
        '010',
        '1_000',
      ),
      fc.string({ maxLength: 8 }),
    );
    fc.assert(
      fc.property(scalar, scalar, scalar, (a, b, c) => {
        const doc = aFleetDocument({
          hosts: [
            aHost({ memoryMiB: a as number }),
            aHost({ name: 'hv-02', diskGiB: b as number }),
          ],
          instances: [aGroup({ replicas: c as number })],
        });
        const text = toYaml(doc);
        same(text, 'random.yaml');
        // And the same values written as plain YAML scalars, not as the stringifier quotes them.
        same(text.replace(/memoryMiB: .*/, `memoryMiB: ${String(a)}`), 'plain.yaml');
      }),
      { numRuns: 300, seed: 9 },
    );
  });
});
