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
import {
  activeJobs,
  assertEachOnce,
  finishedJobs,
  lockExpiries,
  queuesOf,
  takenOverAt,
} from '../helpers/queue-jobs.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil, spawnVfleet } from '../helpers/vfleet-cli.js';

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
    const queues = queuesOf();
    const lockMs = ['--lock-ms', String(takeoverMs)];
    const active = () => activeJobs(redis);
    const until = <T>(what: string, probe: () => Promise<T | undefined>) =>
      pollUntil(what, probe, 30_000, 20);
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
    const lockGoneBy = await lockExpiries(redis, stranded);
    const second = start(['worker', '--concurrency', '2', ...lockMs], dir, slow);
    await serving(second);
    // Nothing takes a job over before a live worker runs: on a loaded machine the new worker's
    // start alone took 8 s, which says nothing about its stalled-job checks.
    const liveFrom = Date.now();
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);

    const jobs = await finishedJobs(redis, 'completed');
    assert.equal(jobs.length, 32, 'every action completed, as one job');
    const takeovers: number[] = [];
    for (const job of jobs) {
      const goneBy = lockGoneBy.get(job.key);
      if (goneBy === undefined) {
        // Ran on a live worker for longer than its lock: renewed, never taken for stalled.
        assert.equal(job.atm, '1', `${job.key} ended once`);
        assert.equal(job.stc, undefined, `${job.key} was never stalled`);
        assert.equal(job.ats, '1', `${job.key} started once`);
        continue;
      }
      // Taken over = moved back to wait by a live worker's stalled-job check, which the queue's
      // event stream records (its ids are the server's milliseconds); any worker with a free
      // slot runs it from there.
      const takenAt = await takenOverAt(redis, job, goneBy);
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
    await assertEachOnce(redis, 26);
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });
});
