// Disk replication on the embedded engine, end to end through the CLI (docs/replication.md): a
// protected VM's disk is synced to its failover host by the controller's Job Schedulers — a full
// copy first, increments after — `vfleet status` shows where the replica is and how old; when
// its host fails, the VM restarts on the failover host from its replica, and the event says the
// data window lost. Never two running copies at any sample.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, threeHostVmFleet, toYaml } from '../helpers/spec-builders.js';
import { pollUntil, type StatusJson, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

const DEADLINE_MS = 60_000;

describe('disk replication on the embedded engine', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server.stop();
  });

  it('syncs a protected VM to its failover host, shows its RPO, and restarts it from the replica when its host fails', async () => {
    const cwd = workdir();
    const doc = threeHostVmFleet('repl', {
      failover: { tolerate: 1, replication: { interval: '1s', maxRpo: '30s' } },
      instances: [aGroup({ name: 'db', image: 'vm-12', replicas: 1, failover: true })],
    });
    writeFileSync(`${cwd}/fleet.yaml`, toYaml(doc));
    const applied = vfleet(['apply', '--auto-approve'], cwd, env);
    assert.equal(applied.code, 0, applied.stderr);
    spawnVfleet(
      ['controller', '--lease-ttl', '1s', '--interval', '2s', '--auto-apply', '--json'],
      cwd,
      { VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
      children,
    );
    const sample = (): StatusJson => {
      const result = vfleet(['status', '--json'], cwd, env);
      assert.equal(result.code, 0, result.stderr);
      const status = JSON.parse(result.stdout) as StatusJson;
      const copies = status.hosts.flatMap((h) => h.running ?? []).filter((n) => n === 'db-0');
      assert.ok(copies.length <= 1, `db-0 runs ${copies.length} times`);
      return status;
    };
    const db = (s: StatusJson) => s.instances.find((i) => i.instance === 'db-0');

    // A full copy first, then increments, each a newer consistency point.
    const first = await pollUntil(
      'the first full sync',
      () => {
        const r = db(sample())?.replication;
        return r?.state === 'ok' ? r : undefined;
      },
      DEADLINE_MS,
    );
    const home = db(sample());
    assert.ok(home?.failoverHost, 'a protected VM has a failover host');
    assert.equal(first.target, home.failoverHost);
    const incremental = await pollUntil(
      'an incremental sync',
      () => {
        const r = db(sample())?.replication;
        return r?.lastKind === 'incremental' && (r.consistentAt ?? 0) > (first.consistentAt ?? 0)
          ? r
          : undefined;
      },
      DEADLINE_MS,
    );
    assert.ok(incremental.lastBytes < 1024 ** 3 / 10, `an increment of ${incremental.lastBytes} B`);
    assert.ok((incremental.rpoSeconds ?? 99) <= 30);
    const text = vfleet(['status'], cwd, env);
    assert.match(text.stdout, /REPLICATED VM/);
    assert.match(text.stdout, new RegExp(`db-0 +${home.failoverHost}`));

    // Its host fails: it restarts on the failover host, from the replica.
    assert.equal(vfleet(['host', 'fail', home.host], cwd, env).code, 0);
    const moved = await pollUntil(
      'db-0 running on its failover host',
      () => {
        const s = sample();
        const i = db(s);
        const on = s.hosts.find((h) => h.name === home.failoverHost);
        return i?.host === home.failoverHost && on?.running?.includes('db-0') ? i : undefined;
      },
      DEADLINE_MS,
    );
    assert.ok(moved.generation > home.generation);
    const events = vfleet(['events', '--json', '--last', '200'], cwd, env);
    const restarted = events.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => e.type === 'restarted' && e.instance === 'db-0');
    assert.ok(restarted, events.stdout);
    assert.equal(typeof restarted.from_replica, 'string', 'restarted from its replica');
    assert.ok(
      typeof restarted.rpoSeconds === 'number' && restarted.rpoSeconds <= 30,
      `data window lost: ${restarted.rpoSeconds}s`,
    );
  });

  it("keeps syncing after the controller follows a changed spec (the queue and worker move to the new spec's session)", async () => {
    const cwd = workdir();
    const spec = (maxRpo: string) =>
      toYaml(
        threeHostVmFleet('repl-spec', {
          failover: { tolerate: 1, replication: { interval: '1s', maxRpo } },
          instances: [aGroup({ name: 'db', image: 'vm-12', replicas: 1, failover: true })],
        }),
      );
    writeFileSync(`${cwd}/fleet.yaml`, spec('30s'));
    const applied = vfleet(['apply', '--auto-approve'], cwd, env);
    assert.equal(applied.code, 0, applied.stderr);
    spawnVfleet(
      ['controller', '--lease-ttl', '1s', '--interval', '2s', '--auto-apply', '--json'],
      cwd,
      { VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
      children,
    );
    const replication = () => {
      const result = vfleet(['status', '--json'], cwd, env);
      assert.equal(result.code, 0, result.stderr);
      const status = JSON.parse(result.stdout) as StatusJson;
      return status.instances.find((i) => i.instance === 'db-0')?.replication;
    };
    await pollUntil('the first sync', () => (replication()?.state === 'ok' ? true : undefined));
    // The controller closes the older spec's session, and with it the connections it had made
    // from it: the replication queue and worker made from them must not die with them.
    writeFileSync(`${cwd}/fleet.yaml`, spec('40s'));
    const changed = await pollUntil('the controller following the new spec', () => {
      const events = vfleet(['events', '--json', '--last', '200'], cwd, env);
      const followed = events.stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { type?: string; at?: number })
        .find((e) => e.type === 'spec-changed');
      return followed?.at;
    });
    const after = await pollUntil(
      'a sync after the spec changed',
      () => {
        const r = replication();
        return (r?.consistentAt ?? 0) > changed + 1_000 ? r : undefined;
      },
      DEADLINE_MS,
    );
    assert.equal(after.state, 'ok');
  });
});
