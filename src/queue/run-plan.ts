// apply's engine room: the plan's waves as BullMQ jobs on one queue per host, run by in-process
// workers, each action's outcome collected. Enqueuing is idempotent (deterministic job ids): a
// job that already ran is not run again, its recorded outcome is read back instead — unless it
// failed: then the action runs again under a fresh id, so the next apply resumes from a failure.
import { FlowProducer, Job, type JobsOptions, Queue, QueueEvents, Worker } from 'bullmq';
import type { Plan } from '../model/plan.js';
import type { RedisClient } from '../state/redis-client.js';
import { within } from '../state/within.js';
import {
  actionHandler,
  type EngineLookup,
  type JobOutcome,
  type StateSink,
} from './action-handler.js';
import { withErrorListener } from './error-listener.js';
import { hostWorker } from './host-worker.js';
import { type JobNode, planWaves, type WaveEntry } from './plan-jobs.js';
import { RolloutGate } from './rollout-gate.js';

export interface ActionOutcome {
  readonly action: string;
  /**
   * skipped: an action it waits for failed; deferred: a patch outside its group's maintenance
   * window, or waiting for one that is (rollout-gate.ts).
   */
  readonly outcome: JobOutcome | 'failed' | 'skipped' | 'deferred';
  readonly error: string | null;
  /** skipped: its group's rolling patch stopped after this replica's patch failed. */
  readonly stoppedAfter?: string;
  /** deferred: when the window opens (ISO 8601), or `never`. */
  readonly until?: string;
}

export interface RunPlanOptions {
  /** A new connection per BullMQ client (workers block, so they need their own). */
  readonly connect: () => RedisClient;
  /** Key prefix for the queues: under the fleet's hash tag. */
  readonly prefix: string;
  readonly engines: EngineLookup;
  readonly state: StateSink;
  readonly clock: () => number;
  /** The clock patch windows are read by as each patch is about to start (default: clock). */
  readonly windowClock?: () => number;
  /** Jobs each host's worker runs at once. */
  readonly concurrency: number;
  /** The enqueuing controller's fencing token, carried by every job (plan-jobs.ts). */
  readonly leaderToken?: number;
  /** Called as each action finishes, for progress output. */
  readonly onOutcome?: (outcome: ActionOutcome) => void;
  /** Retry attempts for retryable failures (default 5). */
  readonly attempts?: number;
  /** A job held by a worker that died is taken over within this (default 30 s; worker-lock.ts). */
  readonly takeoverMs?: number;
  /** Standalone `vfleet worker` processes serve the queues: run none here, listen for outcomes. */
  readonly external?: boolean;
  /** How often jobs run by other processes are looked for (default: 100 ms to 10 s, by how many are awaited). */
  readonly sweepMs?: number;
  /**
   * Aborted when the state store went away: runPlan stops waiting for outcomes that can no
   * longer arrive, reports those that did, and rejects with the signal's reason.
   */
  readonly signal?: AbortSignal;
  /**
   * Aborted when the apply stops waiting and goes round again (Redis came back as another
   * server, app/apply.ts): runPlan rejects with its reason as for `signal`, but its workers
   * finish the jobs in hand and every connection is closed, Redis being there.
   */
  readonly interrupt?: AbortSignal;
  /** Told the ids of the in-process workers once they have stopped (earlier-jobs.ts). */
  readonly onWorkersStopped?: (ids: readonly string[]) => void;
  /**
   * How many of a wave's actions are enqueued at a time (default: twice what the host queues run
   * at once, at least 1,000): the next slice is enqueued while one runs, so the queues stay fed
   * while the jobs, their data and their outcomes in this process stay bounded by two slices
   * however large the wave (100,000 creates from empty).
   */
  readonly sliceSize?: number;
}

/** How long closing the queues may take once the store is gone (nothing answers them). */
const CLOSE_AFTER_LOSS_MS = 2_000;
/**
 * How long the workers may take to finish the jobs in hand and stop otherwise (an apply
 * interrupted to go round again, or over): as long as the next apply waits for an earlier one's
 * jobs (app/apply.ts), so a job that runs that long is not cut short, and nothing waits for ever.
 */
const CLOSE_LIMIT_MS = 10 * 60_000;

const JOB_OPTIONS = (attempts: number): JobsOptions => ({
  attempts,
  backoff: { type: 'exponential', delay: 200, jitter: 0.5 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
});

export async function runPlan(plan: Plan, options: RunPlanOptions): Promise<ActionOutcome[]> {
  const { waves, jobOf } = planWaves(plan, options.leaderToken);
  // The hosts jobs run on: every action's, and the source of a move.
  const hosts = new Set<string>();
  for (const a of plan.actions) {
    hosts.add(a.host);
    if (a.kind === 'move' && a.fromHost !== null) hosts.add(a.fromHost);
  }

  // BullMQ does not close connections it is given: keep them, and close them at the end.
  const connections: RedisClient[] = [];
  const connect = () => {
    const c = options.connect();
    connections.push(c);
    return c;
  };
  const connection = connect();
  let workerConnection: RedisClient | undefined;
  const queues = new Map<string, Queue>();
  const workers: Array<Worker | QueueEvents> = [];
  const flows = withErrorListener(new FlowProducer({ connection, prefix: options.prefix }));
  const waiting = new Map<string, (outcome: ActionOutcome) => void>();
  const roots = new Map<string, string>(); // root job id → action id
  const rootQueues = new Map<string, string>(); // root job id → its queue's name
  const handler = actionHandler(options.engines, options.state, options.clock);
  const attempts = options.attempts ?? 5;

  const settle = (jobId: string, outcome: ActionOutcome['outcome'], error: string | null) => {
    const action = roots.get(jobId);
    const resolve = waiting.get(jobId);
    if (!action || !resolve) return;
    waiting.delete(jobId);
    roots.delete(jobId);
    rootQueues.delete(jobId);
    if (error === null) {
      resolve({ action, outcome, error });
      return;
    }
    // A step of a flow that failed fails its parent with "child <key> failed": report the
    // step's own reason instead (a missing host, a refused generation, …).
    void reasonOf(connection, error).then((reason) => resolve({ action, outcome, error: reason }));
  };

  for (const host of hosts) {
    const name = `host.${host}`;
    const queue = withErrorListener(new Queue(name, { connection, prefix: options.prefix }));
    queues.set(name, queue);
    if (options.external) {
      // Outcomes from whichever worker ran the job. A failed attempt that will be retried is
      // not an outcome: only a job that ends in the failed state is.
      const events = new QueueEvents(name, { connection: connect(), prefix: options.prefix });
      events.on('completed', ({ jobId, returnvalue }) => {
        const value =
          typeof returnvalue === 'string' && returnvalue.startsWith('"')
            ? JSON.parse(returnvalue)
            : returnvalue;
        settle(jobId, value as JobOutcome, null);
      });
      events.on('failed', async ({ jobId, failedReason }) => {
        if ((await queue.getJobState(jobId)) === 'failed') settle(jobId, 'failed', failedReason);
      });
      withErrorListener(events);
      await events.waitUntilReady();
      workers.push(events);
      continue;
    }
    // The workers share one connection for their commands (BullMQ gives each its own blocking
    // one besides): a connection costs ~100 kB here, with BullMQ's scripts defined on it, and a
    // fleet of 1,000 hosts would otherwise hold 2,000.
    workerConnection ??= connect();
    const worker = hostWorker(host, {
      connection: workerConnection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      ...(options.takeoverMs === undefined ? {} : { takeoverMs: options.takeoverMs }),
      handler,
    });
    worker.on('completed', (job) => settle(job.id as string, job.returnvalue, null));
    worker.on('failed', (job, error) => {
      if (!job) return;
      const final =
        error.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) settle(job.id as string, 'failed', error.message);
    });
    workers.push(worker);
  }

  /** The roots' jobs that exist already, by id, with their state: one round trip finds them. */
  const storedJobs = async (roots: readonly JobNode[]) => {
    const exists = await existing(connection, options.prefix, roots);
    const present = roots.filter((r) => exists.has(r.jobId));
    const found = await Promise.all(
      present.map(async (r) => {
        const job = await Job.fromId(queues.get(r.queueName) as Queue, r.jobId);
        return { job, state: job ? await job.getState() : 'unknown' };
      }),
    );
    return new Map(present.map((r, i) => [r.jobId, found[i] as (typeof found)[number]]));
  };
  const outcomes: ActionOutcome[] = [];
  const failed = new Set<string>();
  // What starts at all: not what waits for a failure, no patch outside its window.
  const gate = new RolloutGate(plan, options.windowClock ?? options.clock);
  // Once the store is gone nothing more can be enqueued, read or settled: every wait below
  // races the loss, so the apply stops within the loss bound rather than waiting for ever.
  const signal = options.signal;
  const interrupt = options.interrupt;
  const stop = interrupt && signal ? AbortSignal.any([signal, interrupt]) : (interrupt ?? signal);
  const lost = new Promise<never>((_, reject) => {
    if (stop?.aborted) reject(stop.reason);
    stop?.addEventListener('abort', () => reject(stop.reason), { once: true });
  });
  lost.catch(() => undefined);
  const unlessLost = <T>(p: Promise<T>): Promise<T> => (stop ? Promise.race([p, lost]) : p);
  // Outcomes that arrived and are not reported yet: on a lost store, they still are.
  const arrived = new Set<ActionOutcome>();
  // Events say what this process's workers did; a job another process ran (a `vfleet worker`
  // serving the same queues, or one that took over a stalled job), or whose completion event was
  // lost when a connection dropped between the job's completion and its reply (a killed or
  // restarted Redis did this), is found by looking: the stored job is the truth.
  let sweeping = true;
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = async () => {
    const pending = [...waiting.keys()];
    const found = await finishedJobs(connection, options.prefix, pending, rootQueues).catch(
      () => new Map(), // the next sweep tries again; a lost Redis is reported elsewhere
    );
    for (const [jobId, end] of found) settle(jobId, end.outcome, end.error);
    // Often while little is awaited (a wave of a patch chain waits on a few jobs, and each
    // wave waits for the last), seldom while a large wave would make each look costly.
    const next = options.sweepMs ?? Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, pending.length));
    if (sweeping) sweeper = setTimeout(() => void sweep(), next);
  };
  sweeper = setTimeout(() => void sweep(), options.sweepMs ?? SWEEP_MIN_MS);
  const sliceSize = Math.max(
    1,
    options.sliceSize ?? Math.max(1_000, 2 * hosts.size * options.concurrency),
  );
  /**
   * Enqueues a slice of a wave's roots and returns its outcomes to come, in the slice's order.
   * Jobs that exist already (the same plan enqueued again) are not run again: their stored
   * outcome is read back. One round trip finds them all. A job that failed is the exception:
   * its action runs again under a fresh id, so the next apply does resume from a failure.
   */
  const startSlice = async (
    entries: readonly WaveEntry[],
  ): Promise<{ settled: Promise<ActionOutcome[]> }> => {
    const slice = entries.map(jobOf);
    let stored = await unlessLost(storedJobs(slice));
    for (let retry = 1; ; retry++) {
      let again = false;
      for (let i = 0; i < slice.length; i++) {
        const r = slice[i] as JobNode;
        if (stored.get(r.jobId)?.state !== 'failed') continue;
        slice[i] = retried(r, retry);
        again = true;
      }
      if (!again) break;
      stored = await unlessLost(storedJobs(slice));
    }
    const pending: Array<Promise<ActionOutcome>> = [];
    for (const root of slice) {
      roots.set(root.jobId, root.data.action.id);
      rootQueues.set(root.jobId, root.queueName);
      pending.push(
        new Promise<ActionOutcome>((resolve) => waiting.set(root.jobId, resolve)).then((o) => {
          arrived.add(o);
          return o;
        }),
      );
    }
    await unlessLost(
      enqueueAll(
        slice.filter((r) => !stored.has(r.jobId)),
        queues,
        flows,
        JOB_OPTIONS(attempts),
      ),
    );
    // Jobs still waiting or running (another apply's workers) settle through the events.
    for (const [jobId, { job, state }] of stored) {
      if (state === 'completed') settle(jobId, job?.returnvalue as JobOutcome, null);
    }
    // Wrapped: an async function returning the promise itself would wait for it.
    return { settled: Promise.all(pending) };
  };
  try {
    for (const wave of waves) {
      const ready: WaveEntry[] = [];
      for (const root of wave) {
        const action = root.action;
        // The second half of a stop-first move whose first half failed: reported already.
        if (failed.has(action.id)) continue;
        const held = gate.check(action);
        if (held) {
          outcomes.push(held);
          failed.add(action.id);
          options.onOutcome?.(held);
          continue;
        }
        ready.push(root);
      }
      const halves = new Set(ready.filter((r) => r.part === 'vacate').map((r) => r.action.id));
      const report = (settled: readonly ActionOutcome[]) => {
        for (const outcome of settled) {
          arrived.delete(outcome);
          // A stop-first move's first half is its action's outcome only when it failed.
          if (halves.has(outcome.action) && outcome.outcome !== 'failed') continue;
          outcomes.push(outcome);
          if (outcome.outcome === 'failed') failed.add(outcome.action);
          gate.settled(outcome);
          options.onOutcome?.(outcome);
        }
      };
      // A slice runs while the next is enqueued; outcomes are reported slice by slice, in the
      // wave's order.
      let running: Promise<ActionOutcome[]> | undefined;
      for (let start = 0; start < ready.length; start += sliceSize) {
        const next = await startSlice(ready.slice(start, start + sliceSize));
        if (running) report(await unlessLost(running));
        running = next.settled;
      }
      if (running) report(await unlessLost(running));
    }
  } catch (e) {
    // The store is gone: what did finish in the wave in hand is still reported.
    if (stop?.aborted) for (const outcome of arrived) options.onOutcome?.(outcome);
    throw e;
  } finally {
    sweeping = false;
    clearTimeout(sweeper);
    const closing = (async () => {
      const force = signal?.aborted === true;
      await Promise.all(workers.map((w) => (w instanceof Worker ? w.close(force) : w.close())));
      await Promise.all([...queues.values()].map((q) => q.close()));
      await flows.close();
    })();
    if (signal?.aborted) {
      // Nothing answers: close what closes within a bound. The connections end on their own
      // (the store's watch refuses their next reconnect, which fails what they still queue).
      await within(
        CLOSE_AFTER_LOSS_MS,
        closing.catch(() => undefined),
        undefined,
      );
    } else if (
      await within(
        CLOSE_LIMIT_MS,
        closing.then(
          () => true,
          () => false,
        ),
        false,
      )
    ) {
      options.onWorkersStopped?.(workers.flatMap((w) => (w instanceof Worker ? [w.id] : [])));
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    } else {
      // A worker that would not stop: its connections are dropped (what waits on them fails),
      // and its jobs' locks, no longer renewed, expire for the next apply to take them over.
      for (const c of connections) c.disconnect();
    }
  }
  return outcomes;
}

/**
 * Between sweeps: 100 ms while up to 100 jobs are awaited (a patch chain's waves), a millisecond
 * per awaited job above that, 10 s at most: a sweep costs one command per awaited job, and
 * bench:apply lost a third of its rate to sweeping 10,000 jobs every 2 s.
 */
const SWEEP_MIN_MS = 100;
const SWEEP_MAX_MS = 10_000;

/**
 * The jobs among `jobIds` that have finished for good, by whichever worker: BullMQ sets
 * `finishedOn` only when a job is moved to completed or failed, not on a failed attempt that
 * will be retried. One command per job.
 */
async function finishedJobs(
  connection: RedisClient,
  prefix: string,
  jobIds: readonly string[],
  queueOf: ReadonlyMap<string, string>,
): Promise<Map<string, { outcome: ActionOutcome['outcome']; error: string | null }>> {
  const found = new Map<string, { outcome: ActionOutcome['outcome']; error: string | null }>();
  if (jobIds.length === 0) return found;
  const pipe = connection.pipeline();
  for (const id of jobIds) {
    pipe.hmget(`${prefix}:${queueOf.get(id)}:${id}`, 'finishedOn', 'returnvalue', 'failedReason');
  }
  const replies = (await pipe.exec()) ?? [];
  jobIds.forEach((id, i) => {
    const [finishedOn, returnvalue, failedReason] = (replies[i]?.[1] ?? []) as Array<string | null>;
    if (!finishedOn) return;
    // A return value exists only once a job completed (an earlier failed attempt leaves a
    // failedReason behind, so that alone does not tell).
    found.set(
      id,
      returnvalue != null
        ? { outcome: JSON.parse(returnvalue) as JobOutcome, error: null }
        : { outcome: 'failed', error: failedReason ?? 'failed' },
    );
  });
  return found;
}

/** A failed job's reason, followed down to the step that failed when a child failed it. */
async function reasonOf(connection: RedisClient, reason: string, depth = 0): Promise<string> {
  const child = /^child (\S+) failed$/.exec(reason)?.[1];
  if (child === undefined || depth > 8) return reason;
  const own = await connection.hget(child, 'failedReason').catch(() => null);
  return own ? reasonOf(connection, own, depth + 1) : reason;
}

/** The same job tree under ids of a retry: `<id>.retry<n>` for the root and every child. */
function retried(node: JobNode, retry: number): JobNode {
  const base = node.jobId.replace(/\.retry[0-9]+$/, '');
  return {
    ...node,
    jobId: `${base}.retry${retry}`,
    children: node.children.map((c) => retried(c, retry)),
  };
}

/** Which of the roots' jobs already exist, in one pipeline. */
async function existing(
  connection: RedisClient,
  prefix: string,
  roots: readonly JobNode[],
): Promise<Set<string>> {
  if (roots.length === 0) return new Set();
  const pipe = connection.pipeline();
  for (const r of roots) pipe.exists(`${prefix}:${r.queueName}:${r.jobId}`);
  const replies = (await pipe.exec()) ?? [];
  return new Set(roots.filter((_, i) => replies[i]?.[1] === 1).map((r) => r.jobId));
}

const PRIORITY = { high: 1, medium: 2, low: 3 } as const;

/** A restart's BullMQ priority (1 runs first): its group's failover priority. */
function priorityOf(n: JobNode): { priority?: number } {
  const p = n.data.action.priority;
  return p === undefined ? {} : { priority: PRIORITY[p] };
}

/** Leaves in one addBulk per queue, trees in one flow addBulk. */
async function enqueueAll(
  roots: readonly JobNode[],
  queues: Map<string, Queue>,
  flows: FlowProducer,
  opts: JobsOptions,
): Promise<void> {
  const byQueue = new Map<string, JobNode[]>();
  const trees: JobNode[] = [];
  for (const r of roots) {
    if (r.children.length > 0) trees.push(r);
    else byQueue.set(r.queueName, [...(byQueue.get(r.queueName) ?? []), r]);
  }
  const tree = (n: JobNode, child: boolean): Parameters<FlowProducer['add']>[0] => ({
    name: n.name,
    queueName: n.queueName,
    data: n.data,
    opts: {
      ...opts,
      jobId: n.jobId,
      ...priorityOf(n),
      ...(child ? { failParentOnFailure: true } : {}),
    },
    children: n.children.map((c) => tree(c, true)),
  });
  await Promise.all([
    ...[...byQueue].map(([name, nodes]) =>
      (queues.get(name) as Queue).addBulk(
        nodes.map((n) => ({
          name: n.name,
          data: n.data,
          opts: { ...opts, jobId: n.jobId, ...priorityOf(n) },
        })),
      ),
    ),
    trees.length > 0 ? flows.addBulk(trees.map((t) => tree(t, false))) : Promise.resolve([]),
  ]);
}
