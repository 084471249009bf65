// The golden corpus: every file in test/fixtures/invalid/ with the exact diagnostics it must get.
// Regenerate after an intended change of wording with UPDATE_GOLDEN=1 npm test, then review the
// diff like code: a golden file is a promise to users about what they will read.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { renderValidate } from '../../src/cli/views/diagnostics-view.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { fromRoot } from '../helpers/paths.js';

const dir = fromRoot('test', 'fixtures', 'invalid');
const fixtures = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

describe('invalid fixtures', () => {
  it('has a corpus', () => assert.ok(fixtures.length >= 25, `only ${fixtures.length} fixtures`));
  for (const name of fixtures) {
    it(name, () => {
      const loaded = loadFleet(readFileSync(`${dir}/${name}`), name);
      const actual = renderValidate('text', {
        file: name,
        diagnostics: loaded.diagnostics,
        fleet: loaded.fleet,
      });
      const expectedPath = `${dir}/${name.replace(/\.yaml$/, '.expected')}`;
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(expectedPath, actual);
      assert.equal(actual, readFileSync(expectedPath, 'utf8'));
      assert.ok(
        loaded.diagnostics.some((d) => d.severity === 'error'),
        'an invalid fixture must have at least one error',
      );
      assert.equal(loaded.fleet, undefined, 'no Fleet is built from an invalid spec');
      for (const d of loaded.diagnostics) {
        assert.ok(d.line >= 1 && d.column >= 1, `position ${d.line}:${d.column} of ${d.message}`);
        assert.doesNotMatch(d.message, /\n|\bat .*\.js:\d+/, 'no raw newlines or stack frames');
      }
    });
  }
});
