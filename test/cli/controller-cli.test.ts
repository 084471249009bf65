// `vfleet controller` as a new user runs it (the "done when"): apply the root fleet.yaml,
// start two controllers (one leads, one stands by), crash a host — status shows it lost and its
// protected instances running on other hosts, never two running copies at any sample, and
// `vfleet events` tells the story; SIGKILL the leader — the standby takes over with a newer
// fencing token; the host returns — it destroys its stale copies instead of resuming them.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil, type StatusJson, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

const VICTIM = 'hv-r1-01';
/** A bound for a loaded machine, not a timing target (those are in bench:failover). */
const DEADLINE_MS = 90_000;

describe('vfleet controller', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    redis = server.client();
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server.stop();
  });

  const startController = (cwd: string) =>
    spawnVfleet(
      [
        'controller',
        '-f',
        'fleet.yaml',
        '--lease-ttl',
        '1s',
        '--interval',
        '3s',
        '--auto-apply',
        '--json',
      ],
      cwd,
      { VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
      children,
    );

  const leader = async () => {
    const value = await redis.get('vfleet:{lab}:leader');
    return value ? (JSON.parse(value) as { pid: number; token: number }) : null;
  };

  const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined) =>
    pollUntil(what, probe, DEADLINE_MS);

  /** Status, checking on every sample that no instance runs on two hosts at once. */
  const sample = (cwd: string): StatusJson => {
    const result = vfleet(['status', '--json'], cwd, env);
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as StatusJson;
    const where = new Map<string, string>();
    for (const h of status.hosts) {
      for (const name of h.running ?? []) {
        if (where.get(name) !== undefined) {
          // Its recent history, for the reader of a failure: which actions put it on both.
          const history = vfleet(['events', '--json', '--last', '200'], cwd, env)
            .stdout.split('\n')
            .filter((l) => l.includes(`"${name}"`))
            .slice(-12);
          assert.fail(`${name} runs on ${where.get(name)} and ${h.name}; ${history.join(' | ')}`);
        }
        where.set(name, h.name);
      }
    }
    return status;
  };

  it('restarts a crashed host’s protected instances elsewhere, survives the leader’s SIGKILL, and cleans up when the host returns', async () => {
    const cwd = workdir();
    const applied = vfleet(['apply', 'fleet.yaml', '--auto-approve'], cwd, env);
    assert.equal(applied.code, 0, applied.stderr);
    const before = sample(cwd);
    const protectedOnVictim = before.instances.filter(
      (i) => i.host === VICTIM && i.failoverHost !== null,
    );
    assert.ok(
      protectedOnVictim.length >= 2,
      'the root fleet protects several instances on hv-r1-01',
    );

    const first = startController(cwd);
    const firstLeads = await until('a controller leads', async () =>
      (await leader())?.pid === first.child.pid ? true : undefined,
    );
    assert.ok(firstLeads);
    const firstToken = (await leader())?.token as number;
    const second = startController(cwd);
    // The standby is up (its emulated agents renew leases too) but does not lead.
    await until('the standby runs', () => (second.child.pid ? true : undefined));

    const failed = vfleet(['host', 'fail', VICTIM], cwd, env);
    assert.equal(failed.code, 0, failed.stderr);
    const recovered = await until('the protected instances run elsewhere', () => {
      const status = sample(cwd);
      const victim = status.hosts.find((h) => h.name === VICTIM);
      if (victim?.health !== 'lost' || victim.running !== null) return undefined;
      const now = protectedOnVictim.map((p) =>
        status.instances.find((i) => i.instance === p.instance),
      );
      const running = new Set(status.hosts.flatMap((h) => h.running ?? []));
      return now.every(
        (i) => i && i.host !== VICTIM && i.status === 'running' && running.has(i.instance),
      )
        ? status
        : undefined;
    });
    for (const p of protectedOnVictim) {
      const now = recovered.instances.find((i) => i.instance === p.instance);
      assert.ok(
        now && now.generation > p.generation,
        `${p.instance} restarted above its generation`,
      );
    }

    const events = vfleet(['events', '--json', '--last', '1000'], cwd, env);
    assert.equal(events.code, 0, events.stderr);
    const story = events.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type?: string; host?: string; instance?: string });
    const types = story
      .filter((e) => e.host === VICTIM || e.type === 'restarted')
      .map((e) => e.type);
    for (const wanted of ['fault-fail', 'host-suspect', 'host-lost']) {
      assert.ok(types.includes(wanted), `events have ${wanted}: ${types.join(' ')}`);
    }
    const restarted = new Set(story.filter((e) => e.type === 'restarted').map((e) => e.instance));
    for (const p of protectedOnVictim)
      assert.ok(restarted.has(p.instance), `restarted ${p.instance}`);

    // The leader dies without a word: the standby takes the lease with a newer token.
    first.child.kill('SIGKILL');
    await first.exited;
    const taken = await until('the standby leads', async () => {
      const l = await leader();
      return l !== null && l.pid === second.child.pid ? l : undefined;
    });
    assert.ok(taken.token > firstToken);

    // The host returns: its agent destroys the copies that now run elsewhere, nothing resumes.
    assert.equal(vfleet(['host', 'recover', VICTIM], cwd, env).code, 0);
    const back = await until('the host is ok again without its old copies', () => {
      const status = sample(cwd);
      const victim = status.hosts.find((h) => h.name === VICTIM);
      if (victim?.health !== 'ok' || victim.running === null) return undefined;
      return status;
    });
    const victimRuns = new Set(back.hosts.find((h) => h.name === VICTIM)?.running ?? []);
    for (const p of protectedOnVictim) assert.equal(victimRuns.has(p.instance), false);
    const later = vfleet(['events', '--json', '--last', '1000'], cwd, env).stdout;
    assert.match(later, /"type":"stale-copies-destroyed"/);
    // status shows the last few controller events: the newest of `vfleet events` (on a loaded
    // machine a 1 s lease may change hands meanwhile, so which ones they are is not fixed).
    const shown = vfleet(['status'], cwd, env).stdout;
    const section = shown.split('Last events (vfleet events shows more):\n')[1] ?? '';
    const lines = section.split('\n').filter((l) => l.startsWith('  20'));
    assert.ok(lines.length >= 1 && lines.length <= 5, shown);
    const newest = vfleet(['events', '--last', '50'], cwd, env).stdout;
    for (const line of lines) assert.ok(newest.includes(line.trim()), `${line} is a recent event`);

    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.output());
    // A clean stop gives the lease up at once.
    assert.equal(await leader(), null);
  });
});
