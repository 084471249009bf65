// `vfleet host drain` on the embedded engine (docs/replication.md, "Live migration"): the host is
// marked draining and emptied — its running VMs migrate live (one `migrate` job each: never
// stopped, never on two hosts; the event gives the downtime), its sandboxes move by stop, copy,
// start; status says `draining`; `undrain` ends it, and nothing moves back by itself.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, threeHostVmFleet, toYaml } from '../helpers/spec-builders.js';
import { type StatusJson, vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('vfleet host drain', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(() => server.stop());

  it('empties a host: VMs by live migration, sandboxes by stop-copy-start; undrain ends it', () => {
    const cwd = workdir();
    const doc = threeHostVmFleet('drain', {
      instances: [
        aGroup({ name: 'db', image: 'vm-12', replicas: 3, placement: { strategy: 'spread' } }),
        aGroup({ name: 'web', image: 'debian-12', replicas: 3, placement: { strategy: 'spread' } }),
      ],
    });
    writeFileSync(`${cwd}/fleet.yaml`, toYaml(doc));
    assert.equal(vfleet(['apply', '--auto-approve'], cwd, env).code, 0);
    const status = () => JSON.parse(vfleet(['status', '--json'], cwd, env).stdout) as StatusJson;
    const before = status();
    const victim = 'hv-1';
    const vms = before.instances.filter((i) => i.host === victim && i.instance.startsWith('db-'));
    const sandboxes = before.instances.filter(
      (i) => i.host === victim && i.instance.startsWith('web-'),
    );
    assert.ok(vms.length > 0 && sandboxes.length > 0, JSON.stringify(before.instances));

    const drained = vfleet(['host', 'drain', victim, '--auto-approve'], cwd, env);
    assert.equal(drained.code, 0, drained.stderr + drained.stdout);
    assert.match(drained.stdout, /Host hv-1 is draining/);

    const after = status();
    assert.deepEqual(
      after.instances.filter((i) => i.host === victim).map((i) => i.instance),
      [],
      'nothing left on the drained host',
    );
    assert.equal(after.hosts.find((h) => h.name === victim)?.health, 'draining');
    assert.deepEqual(after.hosts.find((h) => h.name === victim)?.running, []);
    for (const h of after.hosts) {
      for (const name of h.running ?? []) {
        const elsewhere = after.hosts.filter((o) => o !== h && o.running?.includes(name));
        assert.deepEqual(elsewhere, [], `${name} runs twice`);
      }
    }
    const events = vfleet(['events', '--json', '--last', '500'], cwd, env)
      .stdout.split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const migrated = events.filter((e) => e.type === 'migrated').map((e) => e.instance);
    assert.deepEqual(migrated.sort(), vms.map((v) => v.instance).sort(), 'every VM migrated live');
    for (const e of events.filter((x) => x.type === 'migrated')) {
      assert.equal(typeof e.downtimeMs, 'number');
      assert.equal(e.from, victim);
    }
    assert.equal(events.filter((e) => e.type === 'migration-fallback').length, 0);
    // Sandboxes are not migrated live: they moved by the usual copy and start.
    for (const s of sandboxes) {
      const moved = after.instances.find((i) => i.instance === s.instance);
      assert.ok(moved && moved.host !== victim && moved.generation > s.generation);
      assert.ok(!migrated.includes(s.instance));
    }

    const undrained = vfleet(['host', 'undrain', victim], cwd, env);
    assert.equal(undrained.code, 0, undrained.stderr);
    assert.equal(status().hosts.find((h) => h.name === victim)?.health, 'ok');
  });
});
