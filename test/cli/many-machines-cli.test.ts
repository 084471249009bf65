// vfleet on many machines (docs/many-machines.md), simulated with Linux network namespaces
// (test/helpers/netns-machines.ts): three `vfleet worker` machines, two `vfleet controller`
// machines and an operator's machine, each reaching the redis-server of the hub by its address
// only. (1) The fleet an apply asks for converges, every instance once, never two running
// copies. (2) A worker's cable pulled mid-job: its jobs are taken over once their locks expired;
// once a newer plan has acted and the cable is back, its late actions are refused by the hosts'
// fences (or by the plan id) and its late completions by BullMQ's lock. (3) The leader's cable
// pulled mid-reconcile: the standby leads within a lease ttl of the cut; when the old leader's
// network returns, the jobs it enqueues late are refused by their fencing token (`deposed`),
// and the new leader converges the fleet.
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { useNetnsMachines, workerNameOf } from '../helpers/netns-machines.js';
import {
  activeJobs,
  assertEachOnce,
  finishedJobs,
  hostsOfInstances,
  type JobHash,
  lockExpiries,
  takenOverAt,
} from '../helpers/queue-jobs.js';
import { pollUntil, type RunningVfleet, workdir } from '../helpers/vfleet-cli.js';

/** A bound for a loaded machine, never a timing target. */
const DEADLINE_MS = 60_000;
/**
 * `--lock-ms` of the workers cut off and taking over (test 2): short, for a quick takeover, but
 * twice worker-cli's, since on a machine at load 20 a live worker's event loop held up past a
 * quarter of 2 s lost its jobs to stalled-job checks. The other tests need no quick takeover.
 */
const TAKEOVER_MS = 4_000;
const CALM_LOCK_MS = 30_000;
const LEASE_TTL_MS = 3_000;
const INSTANCES = 26;

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined) =>
  pollUntil(what, probe, DEADLINE_MS, 20);

/**
 * Samples where every instance runs, every 50 ms, until stopped: an instance running on two
 * hosts at any sample is a failure (the sample names it and the hosts).
 */
function watchCopies(redis: Redis, t: TestContext) {
  let stopped = false;
  let samples = 0;
  const doubles: string[] = [];
  // A failure (the client closed by a test that failed) ends the loop; stop() reports it.
  const loop = (async () => {
    while (!stopped) {
      for (const [name, hosts] of await hostsOfInstances(redis, 'lab', 'running')) {
        if (hosts.length > 1) doubles.push(`${name} on ${hosts.join(' and ')}`);
      }
      samples++;
      await delay(50);
    }
  })().catch((e: unknown) => e);
  // A test that fails before stop() leaves no loop reading a server that is being stopped.
  t.after(async () => {
    stopped = true;
    await loop;
  });
  return {
    async stop() {
      stopped = true;
      const failed = await loop;
      if (failed) throw failed;
      assert.deepEqual(doubles, [], 'never two running copies');
      return samples;
    },
  };
}

interface FleetEvent {
  readonly type?: string;
  readonly plan?: string;
  readonly instance?: string;
  readonly step?: string;
  readonly outcome?: string;
  readonly error?: string;
  readonly controller?: string;
}

/** The fleet's event stream (state/fleet-state.ts: one `event` field of JSON per entry). */
async function fleetEvents(redis: Redis): Promise<FleetEvent[]> {
  const entries = await redis.xrange('vfleet:{lab}:events', '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[1] as string) as FleetEvent);
}

describe('vfleet on many machines (network namespaces)', () => {
  const net = useNetnsMachines({ subnet: 41, machines: ['op', 'w1', 'w2', 'w3', 'c1', 'c2'] });
  after(() => net.stopAll());

  const envOf = (db: number, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    REDIS_URL: net.redisUrl(db),
    VFLEET_EMBEDDED_BOOT_MS: '100',
    VFLEET_HEARTBEAT_MS: '500',
    ...extra,
  });
  const worker = (machine: string, cwd: string, env: NodeJS.ProcessEnv, lockMs = CALM_LOCK_MS) =>
    net.vfleet(machine, ['worker', '--lock-ms', String(lockMs)], cwd, env);
  const serving = (w: RunningVfleet) =>
    until('a worker serves', () => {
      if (w.child.exitCode !== null) assert.fail(`the worker exited: ${w.output()}`);
      return /serving 9 host queues of fleet lab/.test(w.output()) || undefined;
    });
  const controller = (
    machine: string,
    cwd: string,
    env: NodeJS.ProcessEnv,
    { autoApply, intervalS }: { autoApply: boolean; intervalS: number },
  ) =>
    net.vfleet(
      machine,
      [
        'controller',
        '-f',
        'fleet.yaml',
        '--lease-ttl',
        `${LEASE_TTL_MS / 1000}s`,
        '--interval',
        `${intervalS}s`,
        '--external-workers',
        ...(autoApply ? ['--auto-apply'] : []),
      ],
      cwd,
      env,
    );
  const standingBy = (c: RunningVfleet) =>
    until('a controller runs', () => {
      if (c.child.exitCode !== null) assert.fail(`the controller exited: ${c.output()}`);
      return /^vfleet controller \S+: /m.test(c.output()) || undefined;
    });
  const leaderOf = async (redis: Redis) => {
    const value = await redis.get('vfleet:{lab}:leader');
    return value ? (JSON.parse(value) as { pid: number; token: number; id: string }) : null;
  };
  /** SIGTERM, each exits 0; and nothing printed the Redis password. */
  const stop = async (...processes: RunningVfleet[]) => {
    for (const p of processes) p.child.kill('SIGTERM');
    for (const p of processes) assert.equal(await p.exited, 0, p.output());
    net.assertNoSecretShown();
  };

  it('three worker machines and two controller machines: the fleet an apply asks for converges, every instance once', async (t) => {
    const dir = workdir();
    const env = envOf(0);
    const redis = net.client(0);
    const workers = ['w1', 'w2', 'w3'].map((m) => worker(m, dir, env));
    // Restarts only (drift is reported), a reconcile every 2 s: the apply converges the fleet.
    const quiet = { autoApply: false, intervalS: 2 };
    const c1 = controller('c1', dir, env, quiet);
    await until('c1 leads', async () => (await leaderOf(redis))?.pid === c1.child.pid || undefined);
    const c2 = controller('c2', dir, env, quiet);
    await Promise.all([...workers.map(serving), standingBy(c2)]);

    const copies = watchCopies(redis, t);
    const apply = net.vfleet('op', ['apply', '--auto-approve', '--external-workers'], dir, env);
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);
    const samples = await copies.stop();
    await assertEachOnce(redis, INSTANCES);
    const running = await hostsOfInstances(redis, 'lab', 'running');
    assert.equal(running.size, INSTANCES, 'every instance runs');

    // Every job ran once, on one of the worker machines (BullMQ's `pb`: the worker's name).
    const names = new Map(workers.map((w, i) => [workerNameOf(w.child), `w${i + 1}`]));
    const jobs = await finishedJobs(redis, 'completed');
    assert.equal(jobs.length, 32);
    const ranOn = new Map<string, number>();
    for (const job of jobs) {
      assert.equal(job.atm, '1', `${job.key} ran once`);
      const machine = names.get(job.pb ?? '');
      assert.ok(machine, `${job.key} ran on a worker machine, not on ${job.pb}`);
      ranOn.set(machine, (ranOn.get(machine) ?? 0) + 1);
    }
    // The leader judges the fleet in sync, every host ok.
    const sync = await until('the leader says the fleet is in sync', async () => {
      const s = JSON.parse((await redis.get('vfleet:{lab}:sync')) ?? '{}') as { status?: string };
      return s.status === 'Synced' ? s : undefined;
    });
    assert.equal((sync as { health?: string }).health, 'Healthy');
    const health = await redis.hgetall('vfleet:{lab}:health');
    assert.equal(Object.keys(health).length, 9);
    for (const [host, h] of Object.entries(health)) {
      assert.equal((JSON.parse(h) as { health: string }).health, 'ok', host);
    }
    // One leads; on a loaded machine a 3 s lease may have changed hands meanwhile.
    assert.ok(
      [c1.child.pid, c2.child.pid].includes((await leaderOf(redis))?.pid),
      'c1 or c2 leads',
    );
    t.diagnostic(
      `jobs per worker machine: ${[...ranOn].map(([m, n]) => `${m} ${n}`).join(', ')}; ${samples} samples of the hosts, never two running copies`,
    );
    await stop(c2, c1, ...workers);
  });

  it('a worker machine cut off mid-job: its jobs are taken over once their locks expired, its late actions and completions refused', async (t) => {
    const dir = workdir();
    const env = envOf(1);
    const redis = net.client(1);
    // w1 boots its instances slowly: it is cut off in the middle of its creates (between the
    // create that records the instance and the start that makes it run).
    const w1 = worker('w1', dir, { ...env, VFLEET_EMBEDDED_BOOT_MS: '5000' }, TAKEOVER_MS);
    await serving(w1);
    const w1Name = workerNameOf(w1.child);
    const apply = net.vfleet('op', ['apply', '--auto-approve', '--external-workers'], dir, env);
    const copies = watchCopies(redis, t);
    // w1 is the only worker yet: an instance created and not yet started is its, mid-job.
    await until(
      'w1 is booting an instance',
      async () => (await hostsOfInstances(redis, 'lab', 'created')).size > 0 || undefined,
    );
    net.cut('w1');
    const cutAt = Date.now();
    // The others start now; what w1 held waits for a live worker's stalled-job check.
    const others = [worker('w2', dir, env, TAKEOVER_MS), worker('w3', dir, env, TAKEOVER_MS)];
    const stranded: string[] = [];
    for (const key of await activeJobs(redis)) {
      if ((await redis.hget(key, 'pb')) === w1Name) stranded.push(key);
    }
    const lockGoneBy = await lockExpiries(redis, stranded);
    const midJob = [...(await hostsOfInstances(redis, 'lab', 'created')).keys()];
    assert.ok(midJob.length > 0, 'w1 was cut off between a create and its start');
    // Nothing takes a job over before a live worker serves (a worker's start took seconds on a
    // loaded machine): the first of them to serve.
    const servedAt = await Promise.all(
      others.map(async (w) => {
        await serving(w);
        return Date.now();
      }),
    );
    const liveFrom = Math.min(...servedAt);
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);
    await assertEachOnce(redis, INSTANCES);

    const byKey = new Map((await finishedJobs(redis, 'completed')).map((j) => [j.key, j]));
    const takeovers: number[] = [];
    const takenOver = new Map<string, JobHash>();
    for (const key of stranded) {
      const job = byKey.get(key);
      assert.ok(job, `${key} completed`);
      assert.notEqual(job.pb, w1Name, `${key} was completed by another machine`);
      const goneBy = lockGoneBy.get(key) as number;
      const takenAt = await takenOverAt(redis, job, goneBy);
      takeovers.push(takenAt - cutAt);
      // As in worker-cli: a bound five times the setting catches a checker that does not run.
      const late = takenAt - Math.max(goneBy, liveFrom);
      assert.ok(late <= 5 * TAKEOVER_MS, `${key} taken over ${late} ms after it could be`);
      takenOver.set(key, job);
    }

    // A newer plan acts on the same instances while w1 is still cut off: every generation rises.
    const destroy = net.vfleet('op', ['destroy', '--auto-approve', '--external-workers'], dir, env);
    assert.equal(await destroy.exited, 0, destroy.output());
    await copies.stop();
    net.heal('w1');
    const healedAt = Date.now();
    // w1's late actions reach Redis now. Each job it was booting an instance for goes on to
    // start it at the generation of the first plan, which the host refuses (the destroy left a
    // newer generation in its fence) and w1 reports. A job it held but had not begun (the reply
    // that gave it the job was on the wire) is refused before it acts, by its plan id, silently.
    const planOf = (job: JobHash) => (JSON.parse(job.data as string) as { planId: string }).planId;
    const instanceOf = (job: JobHash) =>
      (JSON.parse(job.data as string) as { action: { instance: string } }).action.instance;
    const lateOf = (events: FleetEvent[], job: JobHash) =>
      events.find(
        (e) =>
          e.plan === planOf(job) &&
          e.instance === instanceOf(job) &&
          e.step === job.name &&
          e.outcome === 'failed',
      );
    const booting = [...takenOver.values()].filter((j) => midJob.includes(instanceOf(j)));
    assert.ok(booting.length > 0, 'w1 held the jobs of the instances it was booting');
    const refusals = await until('w1 reports its late starts refused', async () => {
      const events = await fleetEvents(redis);
      const found = booting.map((job) => lateOf(events, job));
      return found.every((e) => e !== undefined) ? (found as FleetEvent[]) : undefined;
    });
    for (const e of refusals) {
      assert.match(e.error ?? '', /^stale-generation: /, `${e.instance}: ${e.error}`);
    }
    assert.equal(w1.child.exitCode, null, 'w1 serves on after its network returned');
    const lateMs = Date.now() - healedAt;
    // Once w1 has stopped (it finishes what it holds first), nothing of it can still arrive.
    await stop(w1, ...others);
    const events = await fleetEvents(redis);
    const notBegun = [...takenOver.values()].filter((j) => !booting.includes(j));
    const reported = notBegun.map((j) => lateOf(events, j)).filter((e) => e !== undefined);
    for (const e of reported) {
      assert.match(e.error ?? '', /^(stale-generation|superseded): /, `${e.instance}: ${e.error}`);
    }
    // Nothing came back on any host, and BullMQ kept each job as the machine that took it over
    // completed it (w1's completion or failure refused: its lock was gone).
    assert.equal((await hostsOfInstances(redis)).size, 0, 'the destroyed instances stay destroyed');
    assert.equal(await redis.hlen('vfleet:{lab}:instances'), 0);
    for (const [key, job] of takenOver) {
      const now = await redis.hgetall(key);
      assert.equal(now.finishedOn, job.finishedOn, `${key} finished once`);
      assert.equal(now.pb, job.pb);
      assert.equal(now.failedReason, undefined, `${key} was not failed by w1`);
    }
    t.diagnostic(
      `w1 held ${stranded.length} jobs, booting ${booting.length} instances; taken over ${Math.min(...takeovers)}-${Math.max(...takeovers)} ms after the cut (lock ${TAKEOVER_MS / 2} ms, --lock-ms ${TAKEOVER_MS}; the first other worker served ${liveFrom - cutAt} ms after the cut); after the heal, ${refusals.length} late starts refused by the hosts' fences within ${lateMs} ms; of the ${notBegun.length} jobs not begun, ${reported.length} reported refused in the engine, the rest refused before acting`,
    );
  });

  it('the leader machine cut off: the standby leads within a lease ttl, the old leader’s late jobs are refused as deposed', async (t) => {
    const dir = workdir();
    // Patches take 0.7 s each, one wave at a time: the leader's reconcile is mid-rollout.
    const env = envOf(2, { VFLEET_EMBEDDED_BOOT_MS: '700' });
    const redis = net.client(2);
    const copies = watchCopies(redis, t);
    const applying = { autoApply: true, intervalS: 5 };
    const c1 = controller('c1', dir, env, applying);
    await until('c1 leads', async () => (await leaderOf(redis))?.pid === c1.child.pid || undefined);
    const c2 = controller('c2', dir, env, applying);
    await standingBy(c2);
    // The workers last: the leader's rollout waits for them, so the standby is up before it runs
    // (on a loaded machine a controller's start took longer than the whole rollout).
    const workers = ['w1', 'w2', 'w3'].map((m) => worker(m, dir, env));
    await Promise.all(workers.map(serving));
    const machines = [
      { name: 'c1', process: c1 },
      { name: 'c2', process: c2 },
    ];
    const dataOf = (job: Record<string, string>) =>
      JSON.parse(job.data ?? '{}') as { leaderToken?: number; action?: { batch?: number } };
    const tokenOf = (job: Record<string, string>) => dataOf(job).leaderToken;
    // The leader reconciles the empty fleet (26 creates, then 6 patches one after another): its
    // cable is pulled while one of its first patches runs, later waves still to enqueue. On a
    // loaded machine a 3 s lease can change hands before that: the test follows the leader.
    /** What the controllers did and the patch jobs, for the reader of a failure. */
    const explain = async (e: Error): Promise<never> => {
      const events = (await fleetEvents(redis)).filter((ev) => ev.type !== undefined);
      const jobs = [
        ...(await finishedJobs(redis, 'completed')),
        ...(await finishedJobs(redis, 'failed')),
      ].filter((j) => j.name === 'patch');
      const shown = jobs.map(
        (j) => `${j.key.split(':').pop()} token ${tokenOf(j)} ${j.failedReason ?? 'done'}`,
      );
      throw new Error(
        `${e.message}; controller events: ${JSON.stringify(events.slice(-30))}; patch jobs: ${shown.join('; ')}`,
      );
    };
    const first = await until('the leader rolls out its first patches', async () => {
      const l = await leaderOf(redis);
      if (!l) return undefined;
      for (const key of await activeJobs(redis)) {
        const job = await redis.hgetall(key);
        const batch = dataOf(job).action?.batch ?? 99;
        if (job.name === 'patch' && tokenOf(job) === l.token && batch <= 3) return l;
      }
      return undefined;
    }).catch(explain);
    const old = machines.find((m) => m.process.child.pid === first.pid);
    const standby = machines.find((m) => m.process.child.pid !== first.pid);
    assert.ok(old && standby, `the leader is c1 or c2, not pid ${first.pid}`);
    net.cut(old.name);
    const cutAt = Date.now();
    // The lease the old leader holds ends no earlier than this (the clock read before asking).
    const leaseEndsBy = Date.now() + (await redis.pttl('vfleet:{lab}:leader'));
    const second = await until('the standby leads', async () => {
      const l = await leaderOf(redis);
      return l && l.pid === standby.process.child.pid ? l : undefined;
    });
    const takenAt = Date.now();
    const takeover = takenAt - cutAt;
    assert.ok(second.token > first.token, 'a newer fencing token');
    assert.ok(takenAt >= leaseEndsBy, 'the standby took the lease only once the old one expired');
    // A bound for a loaded machine: the lease ttl, a tick (ttl/4), and slack for a busy machine.
    const bound = LEASE_TTL_MS + LEASE_TTL_MS / 4 + 10_000;
    assert.ok(takeover <= bound, `the standby led ${takeover} ms after the cut (bound ${bound})`);

    net.heal(old.name);
    const healedAt = Date.now();
    // The old leader's reconcile goes on where it was: it enqueues the next patch with its old
    // token, and a worker refuses it. It still holds the fleet lock it applied under (a 60 s
    // lease), so the new leader has not applied a plan of its own yet: the old plan is still
    // current, its token is not.
    const refused = await until('a late job of the old leader is refused', async () =>
      (await finishedJobs(redis, 'failed')).find((j) => tokenOf(j) === first.token),
    ).catch(explain);
    assert.match(refused.failedReason ?? '', /^deposed: /);
    assert.ok(Number(refused.processedOn) >= takenAt, 'refused after the standby led');
    // The new leader converges the fleet: every patch done, every instance once and running.
    const converged = await until('the new leader converges the fleet', async () => {
      const s = JSON.parse((await redis.get('vfleet:{lab}:sync')) ?? '{}') as { status?: string };
      if (s.status !== 'Synced') return undefined;
      const running = await hostsOfInstances(redis, 'lab', 'running');
      return running.size === INSTANCES ? running : undefined;
    });
    assert.equal(converged.size, INSTANCES);
    await assertEachOnce(redis, INSTANCES);
    const completed = await finishedJobs(redis, 'completed');
    const patchedBy = completed.filter((j) => j.name === 'patch').map((j) => tokenOf(j) ?? 0);
    assert.ok(
      patchedBy.some((token) => token >= second.token),
      'the new leader ran the rest of the rollout',
    );
    const lateDone = completed.filter(
      (j) => tokenOf(j) === first.token && Number(j.processedOn) >= takenAt,
    );
    assert.deepEqual(lateDone, [], 'no job of the old leader ran once the standby led');
    const events = await fleetEvents(redis);
    assert.ok(
      events.some((e) => e.type === 'leader-lost' && e.controller === first.id),
      'the old leader saw it had lost the lease',
    );
    const samples = await copies.stop();
    t.diagnostic(
      `${standby.name} led ${takeover} ms after ${old.name}'s cut (lease ttl ${LEASE_TTL_MS} ms; the lease had ${leaseEndsBy - cutAt} ms left); ${old.name}'s late job ${refused.name} refused ${Number(refused.processedOn) - healedAt} ms after the heal: ${refused.failedReason}; ${samples} samples, never two running copies`,
    );
    await stop(c2, c1, ...workers);
  });
});
