// `vfleet schedule` as a user runs it: the debugging view of placement until `plan` exists.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { fromRoot } from '../helpers/paths.js';
import { aFleetDocument, aGroup, toYaml } from '../helpers/spec-builders.js';

function vfleet(args: string[], cwd = fromRoot()) {
  const result = spawnSync(process.execPath, [fromRoot('bin', 'vfleet.js'), ...args], {
    cwd,
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('vfleet schedule', () => {
  it('places fleet.yaml fully, with failover covered and license use, as JSON', () => {
    const run = vfleet(['schedule', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const placement = JSON.parse(run.stdout);
    assert.equal(placement.formatVersion, '1');
    assert.deepEqual(Object.keys(placement), [
      'formatVersion',
      'placements',
      'hosts',
      'licenses',
      'unplaceable',
      'failover',
    ]);
    assert.equal(placement.placements.length, 26);
    assert.deepEqual(placement.unplaceable, []);
    assert.equal(placement.failover.covered, placement.failover.protected);
    for (const p of placement.placements)
      assert.deepEqual(Object.keys(p), ['instance', 'group', 'host', 'failoverHost']);
    assert.ok(placement.licenses.every((l: { used: number }) => l.used > 0));
  });

  it('shows tables for people', () => {
    const run = vfleet(['schedule']);
    assert.equal(run.code, 0);
    assert.match(
      run.stdout,
      /^Fleet lab: 26 of 26 instances placed; failover: 15 of 15 protected instances covered/,
    );
    assert.match(run.stdout, /^LICENSE POOL\s+METRIC\s+USED\s+ENTITLEMENT/m);
  });

  it('--explain lists every host with its verdict', () => {
    const run = vfleet(['schedule', '--explain', 'dc-1']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^dc-1 \(group dc, strategy binpack\): placed on \S+/);
    assert.equal(run.stdout.match(/^(hv|ct)-r\d-0\d /gm)?.length, 9, 'one row per host');
    assert.match(run.stdout, /runs-no-vm/);
    assert.equal(vfleet(['schedule', '--explain', 'nope-0']).code, 1);
  });

  it('exits 2 and says why when an instance cannot be placed', () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-schedule-`);
    const doc = aFleetDocument({
      instances: [aGroup({ replicas: 3, resources: { vcpus: 2, memoryMiB: 60000 } })],
    });
    writeFileSync(`${dir}/fleet.yaml`, toYaml(doc));
    const run = vfleet(['schedule'], dir);
    assert.equal(run.code, 2);
    assert.match(
      run.stdout,
      /1 instance could not be placed:\n {2}web-2: insufficient-memory \(2 hosts\)/,
    );
  });

  it('refuses an invalid spec with its diagnostics, exit 1', () => {
    const run = vfleet(['schedule', fromRoot('test', 'fixtures', 'invalid', 'schema-typos.yaml')]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /did you mean "engine"/);
  });
});
