// What `vfleet apply` and `vfleet destroy` share on the command line: the saved plan read, the
// question asked (or refused without a terminal), app/apply.ts run with its events shown, and
// its end said (views/apply-view.ts).
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { applyFleet } from '../app/apply.js';
import { VfleetError } from '../model/errors.js';
import type { Plan } from '../model/plan.js';
import { parsePlan } from '../plan/plan-file.js';
import { takeoverMsFrom } from '../queue/worker-lock.js';
import { FILE_LIMITS, readBoundedFileSync } from '../transport/bounded-file.js';
import { parseDuration } from './duration.js';
import { withSession } from './open-session.js';
import type { Terminal } from './terminal.js';
import {
  type ApplyWords,
  applyEventView,
  applyWords,
  renderApplyResult,
} from './views/apply-view.js';
import { windowClock } from './window-clock.js';

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
  /** Only JSON lines on standard output (the plan, each action, the result); needs --auto-approve. */
  readonly json?: boolean;
  /** How long a Redis that went away may take to come back before the apply stops (--redis-wait). */
  readonly redisWaitMs?: number;
}

/** What `apply` and `destroy` both take on the command line. */
export interface ApplyOptionValues {
  readonly file: string;
  readonly autoApprove: boolean;
  readonly workers: number;
  readonly externalWorkers: boolean;
  readonly json: boolean;
  readonly redisWait?: string;
}

/**
 * How long an apply waits for a Redis that went away (killed, restarting, failing over) before
 * it stops: long enough for a supervisor's restart and a replay of the AOF, or a Sentinel's
 * failover (docs/redis.md, "Faults").
 */
export const DEFAULT_REDIS_WAIT = '60s';

/** Adds the options `apply` and `destroy` share; `verb` words the --auto-approve help. */
export function withApplyOptions(command: Command, verb: string): Command {
  return command
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--auto-approve', `${verb} without asking`, false)
    .option('--workers <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--external-workers', 'vfleet worker processes serve the queues: run none here', false)
    .option(
      '--redis-wait <duration>',
      `how long to wait for a Redis that went away (killed, restarting, failing over): back in time, the ${verb} reads the fleet again and resumes; else it stops (default VFLEET_REDIS_WAIT, else ${DEFAULT_REDIS_WAIT})`,
    )
    .option(
      '--json',
      'print only JSON lines (formatVersion 1): the plan, each action, the result',
      false,
    );
}

/** The shared options as ApplyArgs for `target` (a spec, or apply's saved plan). */
export function applyArgsOf(target: string, o: ApplyOptionValues): ApplyArgs {
  if (!Number.isInteger(o.workers) || o.workers < 1)
    throw new VfleetError('usage', '--workers takes a whole number ≥ 1');
  return {
    target,
    spec: o.file,
    autoApprove: o.autoApprove,
    concurrency: o.workers,
    externalWorkers: o.externalWorkers,
    takeoverMs: takeoverMsFrom(process.env),
    json: o.json,
    redisWaitMs: parseDuration(
      o.redisWait ?? process.env.VFLEET_REDIS_WAIT ?? DEFAULT_REDIS_WAIT,
      o.redisWait === undefined && process.env.VFLEET_REDIS_WAIT
        ? 'VFLEET_REDIS_WAIT'
        : '--redis-wait',
    ),
  };
}

/**
 * Exit 0 only when every action succeeded and the fleet matches its spec; 1 when one failed, an
 * instance cannot be placed, or the apply was refused.
 */
export async function runApply(args: ApplyArgs, terminal: Terminal): Promise<number> {
  const saved =
    !args.destroy && args.target.endsWith('.json') ? readSavedPlan(args.target) : undefined;
  const json = args.json === true;
  if (json && !args.autoApprove && !saved) {
    // Terraform's apply -json too: the question would be in the middle of the JSON.
    throw new VfleetError(
      'usage',
      '--json needs --auto-approve (or a saved plan): no question is asked in JSON',
    );
  }
  return withSession(
    saved ? args.spec : args.target,
    terminal,
    async (session) => {
      const words = applyWords(
        saved ? saved.destroy === true : args.destroy === true,
        session.fleet.name,
      );
      const view = applyEventView(terminal, session.fleet.name, json);
      try {
        const result = await applyFleet(session, {
          ...(saved ? { saved } : {}),
          destroy: args.destroy === true,
          approve: () => (args.autoApprove ? Promise.resolve(true) : ask(words, terminal)),
          concurrency: args.concurrency,
          externalWorkers: args.externalWorkers,
          takeoverMs: args.takeoverMs,
          clock: windowClock(process.env),
          onEvent: view.onEvent,
        });
        view.end();
        return renderApplyResult(result, session, words, terminal, json);
      } finally {
        view.end();
      }
    },
    args.redisWaitMs === undefined ? {} : { lostAfterMs: args.redisWaitMs },
  );
}

/** Terraform's question; refused without a terminal to ask on. (`vfleet host patch` asks it too.) */
export async function ask(words: ApplyWords, terminal: Terminal): Promise<boolean> {
  if (!terminal.isTTY || !process.stdin.isTTY) {
    terminal.err(
      `vfleet: not ${words.doing} without confirmation; run with --auto-approve when no one can answer.`,
    );
    return false;
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const answer = await rl.question(`${words.ask} Only 'yes' will be accepted: `);
  rl.close();
  if (answer.trim() === 'yes') return true;
  terminal.out(`${words.verb} cancelled.`);
  return false;
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
