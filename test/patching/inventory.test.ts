import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { readAndLoadFleet } from '../../src/app/read-spec.js';
import { evaluateBaseline } from '../../src/patching/baseline.js';
import { parseInventory } from '../../src/patching/inventory.js';
import { fromRoot } from '../helpers/paths.js';

describe('package inventories (packagesFrom)', () => {
  it('reads dpkg-query output and reports every bad line where it is', () => {
    const { packages, diagnostics } = parseInventory(
      'bash\t5.2.15-2+b7\nlibc6:amd64\t2.36-9+deb12u9\n\nBad_Name\t1.0\nzlib1g\tv1\nno-tab 1.0\nbash\t5.2\n',
      'inv.tsv',
    );
    assert.deepEqual(packages, { bash: '5.2.15-2+b7', 'libc6:amd64': '2.36-9+deb12u9' });
    assert.deepEqual(
      diagnostics.map((d) => [d.line, d.column, d.message]),
      [
        [4, 1, '"Bad_Name" is not a Debian package name'],
        [5, 8, '"v1" is not a Debian version'],
        [6, 1, 'expected "name<TAB>version" (dpkg-query -W output)'],
        [7, 1, 'package bash is listed twice'],
      ],
    );
  });

  it('the shipped Debian 12 inventory is real and clean', () => {
    const { packages, diagnostics } = parseInventory(
      readFileSync(fromRoot('examples', 'inventories', 'debian-12.tsv'), 'utf8'),
      'debian-12.tsv',
    );
    assert.deepEqual(diagnostics, []);
    assert.ok(Object.keys(packages).length > 100);
    assert.match(packages.openssl ?? '', /~deb12u\d+$/);
  });

  it('fleet.yaml takes the debian-12 image inventory from it, inline entries on top', () => {
    const loaded = readAndLoadFleet(fromRoot('fleet.yaml'));
    assert.deepEqual(loaded.diagnostics, []);
    const image = loaded.fleet?.images.find((i) => i.name === 'debian-12');
    assert.ok(image && Object.keys(image.packages).length > 100);
    const baseline = loaded.fleet?.patchBaselines[0];
    assert.ok(baseline);
    const result = evaluateBaseline(baseline, image.os, image.packages);
    assert.ok(result.applicable);
    assert.deepEqual(
      result.packages.map((p) => [p.package, p.status]),
      [
        ['libc6', 'compliant'],
        ['libssl3', 'compliant'],
        ['openssl', 'compliant'],
      ],
    );
  });
});
