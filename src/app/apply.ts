// Apply: under the fleet lock, supersede earlier applies, refresh and plan (or check a saved
// plan is still current), ask for approval, then run the plan through the host queues and report
// each action's outcome as it comes. Terraform's backend/local apply is the model. Nothing here
// prints: what happens along the way is an event, how it ended is the result.

import { isVfleetError, type VfleetError } from '../model/errors.js';
import type { Plan } from '../model/plan.js';
import { type Staleness, stalenessOf } from '../plan/plan-id.js';
import type { ActionOutcome } from '../queue/run-plan.js';
import type { LockHolder } from '../state/fleet-state.js';
import { isCluster, keyServersIdentity } from '../state/redis-client.js';
import { writeRefusal } from '../state/write-refusal.js';
import { underFleetLock } from './fleet-lock.js';
import { planFleet } from './plan.js';
import type { FleetSession } from './session.js';
import { watchStore } from './store-watch.js';

export type { ActionOutcome };

export interface ApplyOptions {
  /** A plan saved by `vfleet plan --out`, to run as it is if still current. */
  readonly saved?: Plan;
  /** Plan and run the removal of every instance (vfleet destroy); a saved plan says it itself. */
  readonly destroy?: boolean;
  /** Asked once the plan is known and has actions (not for a saved plan): run it? */
  readonly approve: (plan: Plan) => Promise<boolean>;
  /** Jobs each host runs at once (in-process workers). */
  readonly concurrency: number;
  /** `vfleet worker` processes serve the queues: run none here. */
  readonly externalWorkers: boolean;
  /** A job whose worker died is taken over within this (VFLEET_WORKER_LOCK_MS). */
  readonly takeoverMs: number;
  /** How long to wait for jobs an earlier apply left running on live workers. */
  readonly earlierJobsDeadlineMs?: number;
  readonly onEvent?: (event: ApplyEvent) => void;
  /**
   * The controller's fencing token (state/control-state.ts): every job carries it, and a worker
   * refuses a job once its controller is no longer the leader.
   */
  readonly leaderToken?: number;
  /** Narrows the fresh plan before it runs (the controller without --auto-apply: restarts only). */
  readonly select?: (plan: Plan) => Plan;
  /**
   * Aborts the run (the controller: a newer spec, the sync's time limit): no job is enqueued
   * after it fires, the wait for outcomes ends with its reason, jobs already running finish on
   * their hosts or are refused as superseded by the next apply.
   */
  readonly signal?: AbortSignal;
  /**
   * Record the plan's source as the revision the fleet is at once every action succeeded
   * (default true; the controller records its own, controller/sync-report.ts).
   */
  readonly recordRevision?: boolean;
  /**
   * The clock patch windows are read by, as the plan is made and as each patch is about to
   * start (default: now; the controller passes its own, tests a fake one).
   */
  readonly clock?: () => number;
}

export type ApplyEvent =
  /** The lock of an apply that ran on this machine and is gone was taken over. */
  | { readonly type: 'lock-taken-over'; readonly holder: LockHolder }
  /** Jobs an earlier apply left running are awaited before the hosts are read. */
  | { readonly type: 'waiting-for-earlier-jobs'; readonly jobs: readonly string[] }
  /** A host's own facts disagree with the spec, or it does not answer. */
  | { readonly type: 'warning'; readonly message: string }
  /**
   * Redis came back as another server (restarted, failed over) while the jobs ran: the fleet is
   * read again and what is left of it (what the restart lost included) planned and enqueued.
   */
  | { readonly type: 'resuming'; readonly round: number; readonly doneBefore: number }
  /** The plan that will run (after approval; again after each resume). */
  | { readonly type: 'plan'; readonly plan: Plan }
  /** The plan was approved and its jobs are being enqueued. */
  | { readonly type: 'running'; readonly plan: Plan }
  | { readonly type: 'outcome'; readonly plan: Plan; readonly outcome: ActionOutcome };

/**
 * The apply resumed after Redis came back as another server: how often, what was done before
 * (reported outcomes), and how many actions the fleet, read again, still needed (what was not
 * run yet, and what the restart or failover lost).
 */
export interface Resumed {
  readonly times: number;
  /** The actions of the first round's plan (the one approved). */
  readonly planned: number;
  readonly doneBefore: number;
  readonly reenqueued: number;
}

export type ApplyResult =
  | { readonly status: 'locked'; readonly holder: LockHolder }
  | { readonly status: 'earlier-jobs-running'; readonly deadlineMs: number }
  | { readonly status: 'stale'; readonly staleness: Staleness }
  | { readonly status: 'cancelled'; readonly plan: Plan }
  /**
   * Every action ran (outcomes empty: there was nothing to do); some may have failed.
   * `afterFailover`: Redis failed over (or restarted) at the apply's end too often to resume,
   * and the fleet, read again, is that many actions from the spec.
   */
  | {
      readonly status: 'applied';
      readonly plan: Plan;
      readonly outcomes: readonly ActionOutcome[];
      readonly afterFailover?: number;
      readonly resumed?: Resumed;
    }
  /**
   * The state store went away midway (not back within the wait), or refuses writes (out of
   * memory, a disk full): what was reported before, and the one-line error.
   */
  | {
      readonly status: 'store-lost';
      readonly plan: Plan;
      readonly reported: readonly ActionOutcome[];
      readonly error: VfleetError;
      readonly resumed?: Resumed;
    };

/** A round of the apply: its result, or Redis came back as another server under it. */
type RoundResult =
  | ApplyResult
  | {
      readonly status: 'restarted';
      readonly plan: Plan;
      readonly reported: readonly ActionOutcome[];
    };

/** Rounds an apply runs at most: a Redis that keeps restarting under it is reported, not chased. */
const MAX_ROUNDS = 10;

const EARLIER_JOBS_DEADLINE_MS = 10 * 60_000;

export async function applyFleet(
  session: FleetSession,
  options: ApplyOptions,
): Promise<ApplyResult> {
  const emit = options.onEvent ?? (() => undefined);
  const locked = await underFleetLock(
    session,
    () => applyLocked(session, options, emit),
    (holder) => emit({ type: 'lock-taken-over', holder }),
  );
  return locked.ok ? locked.value : { status: 'locked', holder: locked.holder };
}

async function applyLocked(
  session: FleetSession,
  options: ApplyOptions,
  emit: (event: ApplyEvent) => void,
): Promise<ApplyResult> {
  let resumed:
    | { times: number; planned: number; doneBefore: number; reenqueued: number }
    | undefined;
  // The in-process workers of earlier rounds: their locks are stale once they stopped.
  const stoppedWorkers = new Set<string>();
  const counting = (event: ApplyEvent) => {
    // A resumed round's plan is what the restart left to do: it is enqueued again.
    if (event.type === 'running' && resumed) resumed.reenqueued += event.plan.actions.length;
    emit(event);
  };
  for (let round = 1; ; round++) {
    // A resumed round runs the fresh plan of what is left, approved with the first (the same
    // spec): a saved plan is stale once Redis lost writes.
    const result = await applyRound(
      session,
      round === 1 ? options : { ...options, saved: undefined, approve: async () => true },
      counting,
      { last: round === MAX_ROUNDS, stoppedWorkers },
    );
    if (result.status !== 'restarted') {
      const resumable = result.status === 'applied' || result.status === 'store-lost';
      return resumed && resumable ? { ...result, resumed: { ...resumed } } : result;
    }
    const done = result.reported.filter((o) => o.outcome !== 'failed' && o.outcome !== 'skipped');
    resumed ??= { times: 0, planned: result.plan.actions.length, doneBefore: 0, reenqueued: 0 };
    resumed.times++;
    resumed.doneBefore += done.length;
    emit({ type: 'resuming', round: round + 1, doneBefore: resumed.doneBefore });
  }
}

/**
 * One round: supersede, plan, run. `last`: Redis coming back as another server is not resumed
 * from again (the loss, if any, is reported). `stoppedWorkers`: the ids of earlier rounds'
 * in-process workers, which this round's add to.
 */
async function applyRound(
  session: FleetSession,
  options: ApplyOptions,
  emit: (event: ApplyEvent) => void,
  { last, stoppedWorkers }: { readonly last: boolean; readonly stoppedWorkers: Set<string> },
): Promise<RoundResult> {
  // Jobs of earlier applies stop acting before this one reads the hosts (queue/earlier-jobs.ts):
  // every earlier plan is marked superseded, then what still runs on a live worker is awaited.
  await session.state.setCurrentPlan('superseded');
  const deadlineMs = options.earlierJobsDeadlineMs ?? EARLIER_JOBS_DEADLINE_MS;
  const { waitForEarlierJobs } = await import('../queue/earlier-jobs.js');
  const ended = await waitForEarlierJobs(session.connection.redis, session.queuePrefix, {
    deadlineMs,
    stoppedWorkers,
    onWaiting: (jobs) => emit({ type: 'waiting-for-earlier-jobs', jobs }),
  });
  if (!ended) return { status: 'earlier-jobs-running', deadlineMs };

  const saved = options.saved;
  // A saved plan says what it is; a destroy plan is only ever saved by `plan --destroy`.
  const destroy = saved ? saved.destroy === true : options.destroy === true;
  const clock = options.clock ?? (() => Date.now());
  const { plan: fresh } = await planFleet(session, {
    destroy,
    persist: true,
    windowsAtMs: clock(),
  });
  if (saved) {
    const staleness = stalenessOf(saved, {
      file: session.file,
      specHash: session.specHash,
      stateVersion: fresh.stateVersion,
    });
    if (staleness) return { status: 'stale', staleness };
  }
  const plan = saved ?? (options.select ? options.select(fresh) : fresh);
  for (const message of await session.engines.factsWarnings()) emit({ type: 'warning', message });
  emit({ type: 'plan', plan });
  const record = async (outcomes: readonly ActionOutcome[]) => {
    const clean = outcomes.every(
      (o) => o.outcome !== 'failed' && o.outcome !== 'skipped' && o.outcome !== 'deferred',
    );
    if (options.recordRevision !== false && plan.source && clean && plan.unplaceable.length === 0)
      await session.control.recordRevision({ ...plan.source, appliedAt: Date.now() });
  };
  if (plan.actions.length === 0) {
    await record([]);
    return { status: 'applied', plan, outcomes: [] };
  }
  if (!saved && !(await options.approve(plan))) return { status: 'cancelled', plan };

  await session.state.setCurrentPlan(plan.id);
  // Which servers hold the fleet: a failover during the apply is seen at its end (docs/redis.md).
  const servers = await keyServersIdentity(session.connection.redis, session.connection.target);
  emit({ type: 'running', plan });
  // BullMQ loads only for operations that run jobs: plan and status start faster.
  const { runPlan } = await import('../queue/run-plan.js');
  const reported: ActionOutcome[] = [];
  // Redis coming back as another server interrupts the round (it resumes); Redis refusing
  // writes stops it, as a lost store does.
  const watch = watchStore(session, servers, () => session.state.markCurrentPlan(plan.id));
  const lost = [session.connection.clients.signal, watch.refused];
  try {
    const outcomes = await runPlan(plan, {
      connect: () => session.connect(),
      prefix: session.queuePrefix,
      engines: session.engines,
      state: session.state,
      clock: () => Date.now(),
      windowClock: clock,
      concurrency: options.concurrency,
      external: options.externalWorkers,
      ...(options.leaderToken === undefined ? {} : { leaderToken: options.leaderToken }),
      takeoverMs: options.takeoverMs,
      signal: AbortSignal.any(options.signal ? [...lost, options.signal] : lost),
      ...(last ? {} : { interrupt: watch.restarted }),
      onWorkersStopped: (ids) => {
        for (const id of ids) stoppedWorkers.add(id);
      },
      onOutcome: (outcome: ActionOutcome) => {
        reported.push(outcome);
        emit({ type: 'outcome', plan, outcome });
      },
    });
    watch.stop();
    const afterFailover = await checkAfterFailover(session, servers, destroy, emit);
    if (afterFailover !== undefined && !last) return { status: 'restarted', plan, reported };
    if (afterFailover === undefined) await record(outcomes);
    return {
      status: 'applied',
      plan,
      outcomes,
      ...(afterFailover === undefined ? {} : { afterFailover }),
    };
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (watch.refused.aborted) return stopped(plan, reported, watch.refused.reason);
    if (watch.restarted.aborted && !last) return { status: 'restarted', plan, reported };
    if (isVfleetError(e) && e.code === 'redis-lost') return stopped(plan, reported, e);
    const refusal = writeRefusal(e, session.connection.url, session.connection.embedded);
    if (refusal) return stopped(plan, reported, refusal);
    throw e;
  } finally {
    watch.stop();
  }
}

function stopped(plan: Plan, reported: readonly ActionOutcome[], error: VfleetError): RoundResult {
  return { status: 'store-lost', plan, reported, error };
}

/**
 * Redis replicates asynchronously: when a failover promotes a replica (or the server restarts)
 * during the apply, what the old master acknowledged and had not passed on is gone — state
 * records, the embedded hosts' instances, jobs. So when the servers holding the fleet are not
 * the ones the apply started on, it reads the fleet again: undefined when it matches the plan's
 * outcome (nothing was lost), else how many actions it is from the spec.
 */
async function checkAfterFailover(
  session: FleetSession,
  before: string | undefined,
  destroy: boolean,
  emit: (event: ApplyEvent) => void,
): Promise<number | undefined> {
  const redis = session.connection.redis;
  const after = await keyServersIdentity(redis, session.connection.target);
  if (before === undefined || after === undefined || after === before) return undefined;
  // A client still on the old master (a Sentinel's, not demoted yet) reads what is to be lost:
  // it connects again, to the master the Sentinels name now.
  if (session.connection.target?.kind === 'sentinel' && !isCluster(redis)) {
    redis.disconnect(true);
  }
  emit({
    type: 'warning',
    message:
      'Redis failed over (or restarted) during the apply: what the old master had not replicated is lost; reading the fleet again',
  });
  const { plan } = await planFleet(session, { destroy, persist: true });
  return plan.actions.length === 0 ? undefined : plan.actions.length;
}
