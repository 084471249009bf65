// Whatever the bytes, loading a spec returns diagnostics; it never throws and never points
// outside the file. Property tests over random and mutated input.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { decodeSource } from '../../src/spec/source-text.js';
import { firstFlowDepthOver } from '../../src/spec/yaml-document.js';
import { fromRoot } from '../helpers/paths.js';

const fleetYaml = readFileSync(fromRoot('fleet.yaml'));

function assertWellFormed(bytes: Uint8Array | string) {
  const loaded = loadFleet(bytes, 'f.yaml');
  const text = typeof bytes === 'string' ? bytes : new TextDecoder().decode(bytes);
  const lines = text.split('\n').length;
  for (const d of loaded.diagnostics) {
    assert.ok(d.line >= 1 && d.line <= lines + 1, `line ${d.line} of ${lines}: ${d.message}`);
    assert.ok(d.column >= 1, `column ${d.column}`);
    assert.ok(d.message.length > 0 && !d.message.includes('\n'));
  }
  assert.equal(
    loaded.fleet === undefined,
    loaded.diagnostics.some((d) => d.severity === 'error'),
  );
}

describe('robustness', () => {
  it('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => assertWellFormed(bytes)),
      {
        numRuns: 300,
        seed: 1,
      },
    );
  });

  it('fleet.yaml with random bytes overwritten never throws', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(fleetYaml.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (edits) => {
          const bytes = Uint8Array.from(fleetYaml);
          for (const [at, value] of edits) bytes[at] = value;
          assertWellFormed(bytes);
        },
      ),
      { numRuns: 150, seed: 2 },
    );
  });

  it('fleet.yaml cut at any point never throws', () => {
    const text = fleetYaml.toString('utf8');
    fc.assert(
      fc.property(fc.nat(text.length), (end) => assertWellFormed(text.slice(0, end))),
      {
        numRuns: 150,
        seed: 3,
      },
    );
  });

  it('YAML-ish text from YAML punctuation never throws', () => {
    const piece = fc.constantFrom(
      'a',
      ':',
      ' ',
      '\n',
      '- ',
      '[',
      ']',
      '{',
      '}',
      '&x ',
      '*x',
      '!!',
      '"',
      "'",
      '#',
      '? ',
      '|',
      '>',
      ',',
      '  ',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 80 }), (parts) => assertWellFormed(parts.join(''))),
      {
        numRuns: 400,
        seed: 4,
      },
    );
  });
});

describe('source text', () => {
  it('accepts UTF-8 with a BOM and strips it', () => {
    const decoded = decodeSource(Uint8Array.from([0xef, 0xbb, 0xbf, 0x61]));
    assert.deepEqual(decoded, { ok: true, text: 'a' });
  });
  const cases: Array<[string, number[], string, number]> = [
    ['lone continuation byte', [0x61, 0x80], 'encoding', 1],
    ['overlong encoding', [0x61, 0x62, 0xc0, 0xaf], 'encoding', 2],
    ['truncated sequence', [0x61, 0xe2, 0x82], 'encoding', 1],
    ['UTF-16 surrogate', [0xed, 0xa0, 0x80], 'encoding', 0],
    ['NUL', [0x61, 0x00], 'control-character', 1],
    ['escape', [0x1b, 0x5b], 'control-character', 0],
  ];
  for (const [name, bytes, code, offset] of cases) {
    it(`refuses ${name} at its offset`, () => {
      const decoded = decodeSource(Uint8Array.from(bytes));
      assert.equal(decoded.ok, false);
      if (!decoded.ok) {
        assert.equal(decoded.code, code);
        assert.equal(decoded.offset, offset);
      }
    });
  }
});

describe('flow depth pre-scan', () => {
  const cases: Array<[string, string, number, number]> = [
    ['shallow', '[[[]]]', 3, -1],
    ['too deep', '[[[[]]]]', 3, 3],
    ['brackets in double quotes', 'a: "[[[[[["', 3, -1],
    ['brackets in single quotes', "a: '[[[[['' [[['", 3, -1],
    ['brackets in comments', 'a: 1 # [[[[[[', 3, -1],
    ['maps and lists mixed', '{a: [{b: [1]}]}', 3, 9],
  ];
  for (const [name, text, limit, expected] of cases) {
    it(name, () => assert.equal(firstFlowDepthOver(text, limit), expected));
  }
});
