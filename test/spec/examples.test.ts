// The fleet.yaml at the root and every example validate with no error and no warning, and
// each carries the modeline that lets editors validate as the user types.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { instancesOf } from '../../src/model/fleet.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { fromRoot } from '../helpers/paths.js';

const specs = [
  { path: fromRoot('fleet.yaml'), modeline: './schemas/fleet.schema.json' },
  ...readdirSync(fromRoot('examples'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => ({ path: fromRoot('examples', f), modeline: '../schemas/fleet.schema.json' })),
];

describe('shipped specs', () => {
  it('has examples', () => assert.ok(specs.length >= 5, `${specs.length} specs`));
  for (const { path, modeline } of specs) {
    it(path.slice(fromRoot().length), () => {
      const text = readFileSync(path, 'utf8');
      assert.ok(
        text.startsWith(`# yaml-language-server: $schema=${modeline}\n`),
        'starts with the yaml-language-server modeline',
      );
      const loaded = loadFleet(text, path);
      assert.deepEqual(loaded.diagnostics, []);
      assert.ok(loaded.fleet);
    });
  }

  it('fleet.yaml is the realistic fleet the README promises', () => {
    const fleet = loadFleet(readFileSync(fromRoot('fleet.yaml')), 'fleet.yaml').fleet;
    assert.ok(fleet);
    assert.ok(fleet.hosts.length >= 6 && fleet.hosts.length <= 10);
    assert.equal(new Set(fleet.hosts.map((h) => h.labels.rack)).size, 3);
    assert.ok(fleet.hosts.every((h) => h.engine === 'embedded'));
    assert.deepEqual(fleet.failover, { tolerate: 1, domain: 'rack', failback: 'manual' });
    const metrics = new Set<string>(fleet.licenses.map((l) => l.metric));
    for (const metric of ['host-core', 'host-socket-pair', 'instance'])
      assert.ok(metrics.has(metric), metric);
    const windows = fleet.licenses.find((l) => l.metric === 'host-core');
    assert.equal(windows?.minimumPerHost, 16);
    const kinds = new Set(fleet.images.map((i) => `${i.kind}:${i.os.family}`));
    for (const kind of ['container:debian', 'vm:windows', 'vm:rhel'])
      assert.ok(kinds.has(kind), kind);
    assert.ok(fleet.patchBaselines.length >= 1);
    assert.ok(fleet.groups.some((g) => g.placement.spread === 'rack'));
    assert.ok(fleet.groups.some((g) => g.placement.avoid.length > 0));
    assert.ok(fleet.groups.some((g) => g.failover));
    assert.ok([...instancesOf(fleet)].length > 20);
  });
});
