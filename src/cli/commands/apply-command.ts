import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { Presets, SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import type { Plan } from '../../model/plan.js';
import { parsePlan } from '../../plan/plan-file.js';
import type { ActionOutcome } from '../../queue/run-plan.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { isProcessAlive } from '../../state/process-alive.js';
import { FILE_LIMITS, readBoundedFileSync } from '../../transport/bounded-file.js';
import { type FleetSession, openFleet, queuePrefixOf } from '../fleet-session.js';
import { escapeInvisibles, type Terminal } from '../terminal.js';
import { renderPlanText } from '../views/plan-view.js';
import { currentPlan } from './plan-command.js';

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
}

const LOCK_TTL_MS = 60_000;

/**
 * Takes the fleet lock, shows the plan, asks (unless --auto-approve; refuses without it when
 * not on a terminal), runs it through the host queues with in-process workers, and reports each
 * action. Exit 0 only when every action succeeded; 1 when one failed or the apply was refused.
 */
export async function runApply(args: ApplyArgs, terminal: Terminal): Promise<number> {
  const saved = args.target.endsWith('.json') ? readSavedPlan(args.target) : undefined;
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
    () => void session.state.renewLock(holder.id, LOCK_TTL_MS),
    LOCK_TTL_MS / 3,
  );
  try {
    return await act();
  } finally {
    clearInterval(renew);
    await session.state.releaseLock(holder.id);
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

async function applyLocked(
  session: FleetSession,
  saved: Plan | undefined,
  args: ApplyArgs,
  terminal: Terminal,
): Promise<number> {
  const { plan: fresh } = await currentPlan(session, undefined, true);
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
        'vfleet: not applying without confirmation; run with --auto-approve when no one can answer.',
      );
      return 1;
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question("Apply these actions? Only 'yes' will be accepted: ");
    rl.close();
    if (answer.trim() !== 'yes') {
      terminal.out('Apply cancelled.');
      return 1;
    }
  }
  await session.state.setCurrentPlan(plan.id);
  // A progress bar on a terminal; one NDJSON line per action for anything else (CI, tools).
  const bar = terminal.isTTY
    ? new SingleBar(
        {
          format: '  [{bar}] {value}/{total} actions  {last}',
          hideCursor: true,
          clearOnComplete: false,
        },
        Presets.legacy,
      )
    : undefined;
  bar?.start(plan.actions.length, 0, { last: '' });
  // BullMQ loads only for commands that run jobs: plan, status and validate start faster.
  const { runPlan } = await import('../../queue/run-plan.js');
  const outcomes = await runPlan(plan, session.fleet, {
    connect: () => session.connect(),
    prefix: queuePrefixOf(session.fleet),
    engines: session.engines(),
    state: session.state,
    clock: () => Date.now(),
    concurrency: args.concurrency,
    external: args.externalWorkers,
    takeoverMs: args.takeoverMs,
    onOutcome: (o: ActionOutcome) => {
      if (bar) bar.increment(1, { last: escapeInvisibles(`${o.outcome} ${o.action}`) });
      else
        terminal.out(JSON.stringify({ formatVersion: '1', type: 'action', plan: plan.id, ...o }));
    },
  });
  bar?.stop();
  const failed = outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped');
  for (const o of failed)
    terminal.err(`  ! ${o.action}: ${o.outcome}${o.error ? `: ${o.error}` : ''}`);
  const done = outcomes.length - failed.length;
  if (failed.length === 0 && unplaced === 0) {
    terminal.out(`Apply complete: ${done} action${done === 1 ? '' : 's'} done.`);
    return 0;
  }
  terminal.out(
    failed.length === 0
      ? `Apply incomplete: ${done} action${done === 1 ? '' : 's'} done, but ${cannotPlace}.`
      : `Apply incomplete: ${done} done, ${failed.length} failed or skipped${unplaced > 0 ? `, and ${cannotPlace}` : ''}. The next apply resumes from here.`,
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
