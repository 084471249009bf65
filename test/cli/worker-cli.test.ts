// Standalone workers: `vfleet apply --external-workers` with `vfleet worker` processes serving the
// queues; a worker SIGKILLed in the middle, then a new worker: every instance exists exactly
// once and the fleet converges; SIGTERM stops a worker gracefully.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { spawnVfleet } from '../helpers/vfleet-cli.js';

/** Whether Redis stream id `a` ("ms-seq") comes after `b`. */
const streamIdAfter = (a: string, b: string) => {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am > bm || (am === bm && as > bs);
};

describe('vfleet worker', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = {
      ...process.env,
      REDIS_URL: `${server.url}/0`,
      VFLEET_EMBEDDED_BOOT_MS: '100',
      VFLEET_WORKER_LOCK_MS: '1000',
      VFLEET_HEARTBEAT_MS: '100',
    };
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await server.stop();
  });

  const start = (args: string[], cwd: string, extraEnv: NodeJS.ProcessEnv = {}) =>
    spawnVfleet(args, cwd, { ...env, ...extraEnv }, children);
  const serving = async (w: ReturnType<typeof start>) => {
    // A bound for a loaded machine (a worker's start took over 5 s beside other suites), not a
    // timing test; a worker that exited fails at once.
    const deadline = Date.now() + 60_000;
    while (!/serving/.test(w.output()) && w.child.exitCode === null && Date.now() < deadline)
      await delay(25);
    assert.match(w.output(), /serving 9 host queues of fleet lab/);
  };

  /** A folder with fleet.yaml (nine embedded hosts, 26 instances, 32 actions) to run in. */
  const labFolder = () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-worker-`);
    copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
    // fleet.yaml takes the debian-12 image's packages from this inventory, relative to the spec
    cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
    return dir;
  };

  it('a killed worker is replaced and the apply converges, every instance once', async () => {
    const dir = labFolder();
    const first = start(['worker', '--concurrency', '1'], dir);
    await serving(first);
    const apply = start(['apply', '--auto-approve', '--external-workers'], dir);
    const redis = server.client();
    // A bound for a loaded machine, not a timing test.
    const deadline = Date.now() + 60_000;
    while ((await redis.hlen('vfleet:{lab}:instances')) < 3 && Date.now() < deadline)
      await delay(25);
    first.child.kill('SIGKILL');
    await first.exited;
    const recorded = await redis.hlen('vfleet:{lab}:instances');
    assert.ok(recorded < 26, `the worker died midway (${recorded} recorded)`);
    const second = start(['worker', '--concurrency', '2'], dir);
    await serving(second);
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);
    let onHosts = 0;
    for (const key of await redis.keys('vfleet:{lab}:engine:*:instances'))
      onHosts += await redis.hlen(key);
    assert.equal(onHosts, 26);
    assert.equal(await redis.hlen('vfleet:{lab}:instances'), 26);
    // Heartbeats: every host beats while it answers; a failed host stops beating.
    const beatsOf = async () => redis.hgetall('vfleet:{lab}:heartbeats');
    assert.equal(Object.keys(await beatsOf()).length, 9);
    /** Waits for `rounds` more heartbeats of a host that answers (a round beats every host). */
    const beatsOfAnswering = async (rounds: number) => {
      let seen = (await beatsOf())['hv-r1-01'];
      const deadline = Date.now() + 30_000;
      for (let round = 0; round < rounds; ) {
        await delay(20);
        const now = (await beatsOf())['hv-r1-01'];
        if (now !== seen) [seen, round] = [now, round + 1];
        else assert.ok(Date.now() < deadline, 'the others go on beating');
      }
      return beatsOf();
    };
    await redis.set('vfleet:{lab}:engine:ct-r1-03:down', '1');
    // A round that began before the host failed may still beat it; two rounds later, none does.
    const before = await beatsOfAnswering(2);
    const later = await beatsOfAnswering(3);
    assert.equal(later['ct-r1-03'], before['ct-r1-03'], 'the failed host stopped beating');
    assert.notEqual(later['hv-r1-01'], before['hv-r1-01'], 'the others go on');
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.match(second.output(), /stopping; finishing the jobs in hand/);
  });

  it('takes over the jobs of a SIGKILLed worker once their lock expired, each exactly once', async (t) => {
    // Jobs boot for 3 s under a 1 s lock (half of --lock-ms 2000): they outlive their lock and
    // must be renewed, not taken over, while their worker lives. Database 1: the test above
    // runs fleet lab in database 0.
    const takeoverMs = 2_000;
    const slow = { REDIS_URL: `${server.url}/1`, VFLEET_EMBEDDED_BOOT_MS: '3000' };
    const redis = server.client({ db: 1 });
    const queues = 'vfleet:{lab}:bull:host.';
    const lockMs = ['--lock-ms', String(takeoverMs)];
    /** Every job in an active list, by its hash's key. */
    const active = async () => {
      const jobs: string[] = [];
      for (const list of await redis.keys(`${queues}*:active`)) {
        const queue = list.slice(0, -':active'.length);
        for (const id of await redis.lrange(list, 0, -1)) jobs.push(`${queue}:${id}`);
      }
      return jobs;
    };
    const until = async <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const value = await probe();
        if (value !== undefined) return value;
        if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
        await delay(20);
      }
    };
    const dir = labFolder();
    const first = start(['worker', '--concurrency', '1', ...lockMs], dir, slow);
    await serving(first);
    const apply = start(['apply', '--auto-approve', '--external-workers'], dir, slow);
    const running = await until('three jobs running', async () => {
      const jobs = await active();
      return jobs.length >= 3 ? jobs : undefined;
    });
    // The lock is half the bound, and the worker renews it while the job runs.
    const watched = running[0] as string;
    let previous = await redis.pttl(`${watched}:lock`);
    assert.ok(previous > 0 && previous <= takeoverMs / 2, `lock of ${previous} ms`);
    await until('a renewal of the lock', async () => {
      const now = await redis.pttl(`${watched}:lock`);
      const renewed = now > previous + 50;
      previous = now;
      return renewed || undefined;
    });
    // The queue's stalled-job check runs every quarter of the bound.
    const check = await until('a stalled-job check', async () => {
      const keys = await redis.keys(`${queues}*:stalled-check`);
      const ttl = keys.length ? await redis.pttl(keys[0] as string) : -2;
      return ttl > 0 ? ttl : undefined;
    });
    assert.ok(check <= takeoverMs / 4, `stalled-job check window of ${check} ms`);

    first.child.kill('SIGKILL');
    const killedAt = Date.now();
    await first.exited;
    // What the dead worker held: nothing else can finish them until they are taken over.
    const stranded = await active();
    assert.ok(stranded.length > 0, 'the worker died holding jobs');
    const lockGoneBy = new Map<string, number>();
    for (const job of stranded) {
      // The clock read before asking: the lock expires no earlier than that plus its ttl, however
      // long the answer takes on a loaded machine.
      const asked = Date.now();
      lockGoneBy.set(job, asked + Math.max(0, await redis.pttl(`${job}:lock`)));
    }
    const second = start(['worker', '--concurrency', '2', ...lockMs], dir, slow);
    await serving(second);
    // Nothing takes a job over before a live worker runs: on a loaded machine the new worker's
    // start alone took 8 s, which says nothing about its stalled-job checks.
    const liveFrom = Date.now();
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);

    const jobs: Record<string, string>[] = [];
    for (const set of await redis.keys(`${queues}*:completed`)) {
      const queue = set.slice(0, -':completed'.length);
      for (const id of await redis.zrange(set, '0', '-1')) {
        jobs.push({ key: `${queue}:${id}`, ...(await redis.hgetall(`${queue}:${id}`)) });
      }
    }
    assert.equal(jobs.length, 32, 'every action completed, as one job');
    const takeovers: number[] = [];
    for (const job of jobs) {
      const key = job.key as string;
      // BullMQ counts an attempt when it ends: one, the one that completed (none failed).
      assert.equal(job.atm, '1', `${key} ended once`);
      if (!lockGoneBy.has(key)) {
        // Ran on a live worker for longer than its lock: renewed, never taken for stalled.
        assert.equal(job.stc, undefined, `${key} was never stalled`);
        assert.equal(job.ats, '1', `${key} started once`);
        continue;
      }
      assert.equal(job.stc, '1', `${key} was found stalled once`);
      assert.equal(job.ats, '2', `${key} started twice: on the dead worker, then once more`);
      // Taken over = moved back to wait by a live worker's stalled-job check, which the queue's
      // event stream records (its ids are the server's milliseconds); any worker with a free
      // slot runs it from there.
      const queue = key.slice(0, key.lastIndexOf(':'));
      const id = key.slice(queue.length + 1);
      const events = await redis.xrange(`${queue}:events`, '-', '+');
      const stalled = events.filter(([, fields]) => fields[1] === 'stalled' && fields[3] === id);
      assert.equal(stalled.length, 1, `${key} was taken over once`);
      const stalledId = (stalled[0] as [string, string[]])[0];
      const takenAt = Number(stalledId.split('-')[0]);
      assert.ok(
        takenAt >= (lockGoneBy.get(key) as number) - 50,
        `${key} taken over only once its lock had expired`,
      );
      // In the stream's own order: the job's processedOn is the worker's clock when it asked for
      // a job, which on a loaded machine came before the server's stalled event it then ran after.
      assert.ok(
        events.some(
          ([eventId, fields]) =>
            fields[1] === 'active' && fields[3] === id && streamIdAfter(eventId, stalledId),
        ),
        `${key} ran again after it was taken over`,
      );
      takeovers.push(takenAt - Math.max(killedAt, liveFrom));
    }
    // Not a timing test (habit 11, docs/architecture.md): a bound five times the setting catches a checker that
    // does not run, not a slow machine.
    const slowest = Math.max(...takeovers);
    t.diagnostic(
      `taken over ${takeovers.join(', ')} ms after the kill or the new worker's start, whichever came later (worker serving ${liveFrom - killedAt} ms after the kill; bound ${takeoverMs} ms)`,
    );
    assert.ok(slowest <= 5 * takeoverMs, `taken over ${slowest} ms after a live worker served`);

    // Every instance exactly once, on exactly one host, and in the state.
    const placed = new Map<string, number>();
    for (const key of await redis.keys('vfleet:{lab}:engine:*:instances')) {
      for (const name of await redis.hkeys(key)) placed.set(name, (placed.get(name) ?? 0) + 1);
    }
    assert.equal(placed.size, 26);
    assert.deepEqual(
      [...placed.values()].filter((n) => n !== 1),
      [],
    );
    assert.deepEqual(
      (await redis.hkeys('vfleet:{lab}:instances')).sort(),
      [...placed.keys()].sort(),
    );
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });
});
