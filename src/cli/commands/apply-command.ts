import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { isVfleetError, VfleetError } from '../../model/errors.js';
import type { Plan } from '../../model/plan.js';
import { parsePlan } from '../../plan/plan-file.js';
import type { ActionOutcome } from '../../queue/run-plan.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { isProcessAlive } from '../../state/process-alive.js';
import { FILE_LIMITS, readBoundedFileSync } from '../../transport/bounded-file.js';
import { type FleetSession, openFleet, queuePrefixOf } from '../fleet-session.js';
import { escapeInvisibles, type Terminal } from '../terminal.js';
import { renderPlanText } from '../views/plan-view.js';
import { currentDestroyPlan, currentPlan } from './plan-command.js';

export interface ApplyArgs {
  /** A fleet spec, or a saved plan (a .json file). */
  readonly target: string;
  readonly spec: string;
  readonly autoApprove: boolean;
  readonly concurrency: number;
  /** `vfleet worker` processes serve the queues; run no workers here. */
  readonly externalWorkers: boolean;
  /** In-process workers take over a job whose apply died within this (VFLEET_WORKER_LOCK_MS). */
  readonly takeoverMs: number;
  /** `vfleet destroy`: plan and run the removal of every instance instead (never a saved plan). */
  readonly destroy?: boolean;
}

const LOCK_TTL_MS = 60_000;

/**
 * Takes the fleet lock, shows the plan, asks (unless --auto-approve; refuses without it when
 * not on a terminal), runs it through the host queues with in-process workers, and reports each
 * action. Exit 0 only when every action succeeded; 1 when one failed or the apply was refused.
 * With `destroy` (vfleet destroy) the plan is the removal of every instance, on the same path.
 */
export async function runApply(args: ApplyArgs, terminal: Terminal): Promise<number> {
  const saved =
    !args.destroy && args.target.endsWith('.json') ? readSavedPlan(args.target) : undefined;
  const session = await openFleet(saved ? args.spec : args.target, terminal);
  if (!session) return 1;
  try {
    return await underFleetLock(session, terminal, () =>
      applyLocked(session, saved, args, terminal),
    );
  } finally {
    await session.close();
  }
}

/**
 * Runs `act` holding the fleet lock (renewed while it runs): one writer of the state at a time.
 * A held lock is refused with its holder and how to free it; exit 1.
 */
export async function underFleetLock(
  session: FleetSession,
  terminal: Terminal,
  act: () => Promise<number>,
): Promise<number> {
  const holder = {
    id: randomUUID().slice(0, 8),
    pid: process.pid,
    host: hostname(),
    since: Date.now(),
  };
  let lock = await session.state.acquireLock(holder, LOCK_TTL_MS);
  if (!lock.ok && lock.holder.host === hostname() && !isProcessAlive(lock.holder.pid)) {
    // Its holder ran on this machine and is gone (killed, crashed): nobody is writing under it.
    const gone = lock.holder;
    if ((await session.state.forceUnlock(gone.id)).ok) {
      terminal.err(
        `vfleet: apply ${gone.id} (pid ${gone.pid}) is gone; taking over its lock on fleet ${session.fleet.name}.`,
      );
    }
    lock = await session.state.acquireLock(holder, LOCK_TTL_MS);
  }
  if (!lock.ok) {
    const h = lock.holder;
    terminal.err(
      `vfleet: fleet ${session.fleet.name} is locked by apply ${h.id} (pid ${h.pid} on ${h.host}, since ${new Date(h.since).toISOString()}).\n` +
        `If that apply is gone, run: vfleet force-unlock ${h.id}`,
    );
    return 1;
  }
  const renew = setInterval(
    // A renewal that fails (the store went away) is reported by the store's watch, not here.
    () => void session.state.renewLock(holder.id, LOCK_TTL_MS).catch(() => undefined),
    LOCK_TTL_MS / 3,
  );
  try {
    return await act();
  } finally {
    clearInterval(renew);
    // With the store gone the lock cannot be released; the next apply on this machine removes
    // it (its holder's process is gone), elsewhere `vfleet force-unlock` does.
    if (!session.connection.clients.signal.aborted) await session.state.releaseLock(holder.id);
  }
}

function readSavedPlan(path: string): Plan {
  const read = readBoundedFileSync(path, FILE_LIMITS.plan);
  if (!read.ok)
    throw new VfleetError('plan-file', `cannot read the plan file ${path}: it ${read.reason}`);
  const parsed = parsePlan(read.bytes.toString('utf8'));
  if (!parsed.ok)
    throw new VfleetError('plan-file', `${path} is not a vfleet plan: ${parsed.reason}`);
  return parsed.plan;
}

/** How long an apply waits for jobs an earlier apply left running on live workers. */
const EARLIER_JOBS_DEADLINE_MS = 10 * 60_000;

/**
 * Jobs of earlier applies stop acting before this one reads the hosts (queue/earlier-jobs.ts):
 * every earlier plan is marked superseded, then what is still running on a live worker is
 * waited for. False (with the reason said) when that did not end in time.
 */
async function supersedeEarlierApplies(
  session: FleetSession,
  terminal: Terminal,
): Promise<boolean> {
  await session.state.setCurrentPlan('superseded');
  const { waitForEarlierJobs } = await import('../../queue/earlier-jobs.js');
  const ended = await waitForEarlierJobs(session.connection.redis, queuePrefixOf(session.fleet), {
    deadlineMs: EARLIER_JOBS_DEADLINE_MS,
    onWaiting: (jobs) =>
      terminal.err(
        `vfleet: waiting for ${jobs.length} job${jobs.length === 1 ? '' : 's'} an earlier apply left running (${jobs.slice(0, 3).join(', ')}${jobs.length > 3 ? ', …' : ''}) to finish before reading the hosts.`,
      ),
  });
  if (!ended) {
    terminal.err(
      `vfleet: jobs of an earlier apply still run after ${EARLIER_JOBS_DEADLINE_MS / 60_000} minutes; not applying over them. Stop the workers running them (vfleet worker), or wait, and apply again.`,
    );
  }
  return ended;
}

async function applyLocked(
  session: FleetSession,
  saved: Plan | undefined,
  args: ApplyArgs,
  terminal: Terminal,
): Promise<number> {
  if (!(await supersedeEarlierApplies(session, terminal))) return 1;
  // A saved plan says what it is; a destroy plan is only ever saved by `plan --destroy`.
  const destroying = saved ? saved.destroy === true : args.destroy === true;
  const words = destroying
    ? {
        verb: 'Destroy',
        doing: 'destroying',
        ask: `Destroy every instance of fleet ${session.fleet.name}?`,
      }
    : { verb: 'Apply', doing: 'applying', ask: 'Apply these actions?' };
  const { plan: fresh } = destroying
    ? await currentDestroyPlan(session, true)
    : await currentPlan(session, undefined, true);
  if (saved) {
    if (saved.specHash !== session.specHash) {
      terminal.err(
        `vfleet: the saved plan is stale: ${session.file} changed since it was made. Run vfleet plan again.`,
      );
      return 1;
    }
    if (saved.stateVersion !== fresh.stateVersion) {
      terminal.err(
        `vfleet: the saved plan is stale: the fleet's state moved from version ${saved.stateVersion} to ${fresh.stateVersion} since it was made. Run vfleet plan again.`,
      );
      return 1;
    }
  }
  const plan = saved ?? fresh;
  for (const w of await session.factsWarnings()) terminal.err(`Warning: ${w}`);
  terminal.out(renderPlanText(plan));
  // Instances the fleet has no place for: the apply cannot make the fleet match the spec, and
  // says so in its exit status (as Nomad's job run does for placement failures), even when
  // everything it could do is done.
  const unplaced = plan.unplaceable.length;
  const cannotPlace = `${unplaced} instance${unplaced === 1 ? '' : 's'} cannot be placed (above)`;
  if (plan.actions.length === 0) {
    if (unplaced === 0) return 0;
    terminal.out(`Apply incomplete: nothing to do, but ${cannotPlace}.`);
    return 1;
  }
  if (!args.autoApprove && !saved) {
    if (!terminal.isTTY || !process.stdin.isTTY) {
      terminal.err(
        `vfleet: not ${words.doing} without confirmation; run with --auto-approve when no one can answer.`,
      );
      return 1;
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(`${words.ask} Only 'yes' will be accepted: `);
    rl.close();
    if (answer.trim() !== 'yes') {
      terminal.out(`${words.verb} cancelled.`);
      return 1;
    }
  }
  await session.state.setCurrentPlan(plan.id);
  // A progress bar on a terminal; one NDJSON line per action for anything else (CI, tools).
  // cli-progress loads only then: every other command starts without it.
  let bar: import('cli-progress').SingleBar | undefined;
  if (terminal.isTTY) {
    const { Presets, SingleBar } = await import('cli-progress');
    bar = new SingleBar(
      {
        format: '  [{bar}] {value}/{total} actions  {last}',
        hideCursor: true,
        clearOnComplete: false,
      },
      Presets.legacy,
    );
  }
  bar?.start(plan.actions.length, 0, { last: '' });
  // BullMQ loads only for commands that run jobs: plan, status and validate start faster.
  const { runPlan } = await import('../../queue/run-plan.js');
  const reported: ActionOutcome[] = [];
  let outcomes: ActionOutcome[];
  try {
    outcomes = await runPlan(plan, session.fleet, {
      connect: () => session.connect(),
      prefix: queuePrefixOf(session.fleet),
      engines: session.engines(),
      state: session.state,
      clock: () => Date.now(),
      concurrency: args.concurrency,
      external: args.externalWorkers,
      takeoverMs: args.takeoverMs,
      signal: session.connection.clients.signal,
      onOutcome: (o: ActionOutcome) => {
        reported.push(o);
        if (bar) bar.increment(1, { last: escapeInvisibles(`${o.outcome} ${o.action}`) });
        else
          terminal.out(JSON.stringify({ formatVersion: '1', type: 'action', plan: plan.id, ...o }));
      },
    });
  } catch (e) {
    bar?.stop();
    if (!(isVfleetError(e) && e.code === 'redis-lost')) throw e;
    return storeLost(e, session, plan, reported, terminal);
  }
  bar?.stop();
  const failed = outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped');
  for (const o of failed)
    terminal.err(`  ! ${o.action}: ${o.outcome}${o.error ? `: ${o.error}` : ''}`);
  const done = outcomes.length - failed.length;
  if (failed.length === 0 && unplaced === 0) {
    terminal.out(`${words.verb} complete: ${done} action${done === 1 ? '' : 's'} done.`);
    return 0;
  }
  terminal.out(
    failed.length === 0
      ? `Apply incomplete: ${done} action${done === 1 ? '' : 's'} done, but ${cannotPlace}.`
      : `${words.verb} incomplete: ${done} done, ${failed.length} failed or skipped${unplaced > 0 ? `, and ${cannotPlace}` : ''}. The next ${words.verb.toLowerCase()} resumes from here.`,
  );
  return 1;
}

/**
 * The apply lost its Redis midway: one line saying so, what was done, and how to resume. No
 * stack trace and no flood of connection errors (every client was closed the moment the store
 * was declared lost). Exit 1.
 */
function storeLost(
  lost: VfleetError,
  session: FleetSession,
  plan: Plan,
  reported: readonly ActionOutcome[],
  terminal: Terminal,
): number {
  terminal.err(`vfleet: ${lost.message}; the apply stopped.`);
  const failed = reported.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped').length;
  const done = reported.length - failed;
  const unknown = plan.actions.length - reported.length;
  terminal.out(
    `Apply interrupted: ${done} of ${plan.actions.length} actions done, ${failed} failed or skipped, ${unknown} not run or unknown (in flight when Redis went away).`,
  );
  terminal.out(
    session.connection.embedded
      ? "To resume, run vfleet apply again: it restarts the private redis-server from its AOF (at most the last second of writes is lost; what the hosts run is adopted), removes this apply's lock, and applies what is left."
      : `To resume, run vfleet apply again once Redis at ${session.connection.url} answers; it removes this apply's lock (from another machine: vfleet force-unlock <id>, as it says) and applies what is left.`,
  );
  return 1;
}

export function applyCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('apply')
    .description('take the fleet to the spec (or apply a saved plan) through the host queues')
    .argument('[target]', 'the fleet spec, or a plan saved with vfleet plan --out (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--auto-approve', 'apply without asking', false)
    .option('--workers <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--external-workers', 'vfleet worker processes serve the queues: run none here', false)
    .action(
      async (
        target: string | undefined,
        o: { file: string; autoApprove: boolean; workers: number; externalWorkers: boolean },
      ) => {
        if (!Number.isInteger(o.workers) || o.workers < 1)
          throw new VfleetError('usage', '--workers takes a whole number ≥ 1');
        setExit(
          await runApply(
            {
              target: target ?? o.file,
              spec: o.file,
              autoApprove: o.autoApprove,
              concurrency: o.workers,
              externalWorkers: o.externalWorkers,
              takeoverMs: takeoverMsFrom(process.env),
            },
            terminal,
          ),
        );
      },
    );
}
