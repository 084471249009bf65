// How apply and destroy show what happens (app/apply.ts's events) and how they ended (its result):
// the plan, a progress bar on a terminal or one NDJSON line per action for anything else (CI,
// tools), the failures, the summary line, and the exit code.
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import type { ApplyEvent, ApplyResult, Resumed } from '../../app/apply.js';
import type { FleetSession } from '../../app/session.js';
import type { Plan } from '../../model/plan.js';
import { escapeInvisibles, type Terminal } from '../terminal.js';
import { jsonDocument } from './json.js';
import { lockedMessage, takeoverMessage } from './lock-view.js';
import { renderPlanText } from './plan-view.js';

/** The words of apply, or of destroy. */
export interface ApplyWords {
  readonly verb: 'Apply' | 'Destroy' | 'Host patch';
  readonly doing: string;
  readonly ask: string;
}

export function applyWords(destroy: boolean, fleet: string): ApplyWords {
  return destroy
    ? { verb: 'Destroy', doing: 'destroying', ask: `Destroy every instance of fleet ${fleet}?` }
    : { verb: 'Apply', doing: 'applying', ask: 'Apply these actions?' };
}

/**
 * Shows apply's events as they come; `end` once the apply returned (the progress bar stops).
 * With `json` (apply --json) standard output carries only JSON lines — the plan, one line per
 * action, the result — and what is said for people goes to standard error.
 */
export function applyEventView(
  terminal: Terminal,
  fleet: string,
  json = false,
): { onEvent: (event: ApplyEvent) => void; end: () => void } {
  let bar: CliProgress.SingleBar | undefined;
  const onEvent = (event: ApplyEvent) => {
    switch (event.type) {
      case 'lock-taken-over':
        terminal.err(takeoverMessage(fleet, event.holder));
        return;
      case 'waiting-for-earlier-jobs': {
        const jobs = event.jobs;
        terminal.err(
          `vfleet: waiting for ${jobs.length} job${jobs.length === 1 ? '' : 's'} an earlier apply left running (${jobs.slice(0, 3).join(', ')}${jobs.length > 3 ? ', …' : ''}) to finish before reading the hosts.`,
        );
        return;
      }
      case 'warning':
        terminal.err(`Warning: ${event.message}`);
        return;
      case 'resuming':
        bar?.stop();
        bar = undefined;
        terminal.err(
          `vfleet: Redis came back as another server (restarted or failed over) during the apply, ${event.doneBefore} action${event.doneBefore === 1 ? '' : 's'} done before; reading the fleet again and resuming (round ${event.round}): what it lost is enqueued again.`,
        );
        if (json)
          terminal.out(
            jsonDocument({ type: 'resuming', round: event.round, doneBefore: event.doneBefore }),
          );
        return;
      case 'plan':
        terminal.out(
          json ? jsonDocument({ type: 'plan', plan: event.plan }) : renderPlanText(event.plan),
        );
        return;
      case 'running':
        if (terminal.isTTY && !json) {
          // Loaded only when a bar is drawn: a command that draws none starts faster.
          const { Presets, SingleBar } = createRequire(import.meta.url)(
            'cli-progress',
          ) as typeof CliProgress;
          bar = new SingleBar(
            {
              format: '  [{bar}] {value}/{total} actions  {last}',
              hideCursor: true,
              clearOnComplete: false,
            },
            Presets.legacy,
          );
          bar.start(event.plan.actions.length, 0, { last: '' });
        }
        return;
      case 'outcome': {
        const o = event.outcome;
        if (bar) bar.increment(1, { last: escapeInvisibles(`${o.outcome} ${o.action}`) });
        else terminal.out(jsonDocument({ type: 'action', plan: event.plan.id, ...o }));
        return;
      }
    }
  };
  return { onEvent, end: () => bar?.stop() };
}

/**
 * The end of an apply: what is said, and the exit code (0 only when the fleet matches its spec).
 * With `json`, what is said goes to standard error and one `result` line to standard output.
 */
export function renderApplyResult(
  result: ApplyResult,
  session: FleetSession,
  words: ApplyWords,
  terminal: Terminal,
  json = false,
): number {
  if (!json) return sayResult(result, session, words, terminal);
  const code = sayResult(result, session, words, { ...terminal, out: terminal.err });
  terminal.out(jsonDocument({ type: 'result', ...resultCounts(result), exitCode: code }));
  return code;
}

/** The result in numbers, for the JSON line. */
function resultCounts(result: ApplyResult) {
  const plan = 'plan' in result ? result.plan : undefined;
  const outcomes =
    result.status === 'applied'
      ? result.outcomes
      : result.status === 'store-lost'
        ? result.reported
        : [];
  const failed = outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped').length;
  const deferred = outcomes.filter((o) => o.outcome === 'deferred').length;
  const resumed = 'resumed' in result ? result.resumed : undefined;
  return {
    status: result.status,
    plan: plan?.id ?? null,
    actions: plan?.actions.length ?? 0,
    done: (resumed?.doneBefore ?? 0) + outcomes.length - failed - deferred,
    failed,
    deferred,
    stoppedRollouts: stoppedRollouts(plan, outcomes),
    unplaceable: plan?.unplaceable.length ?? 0,
    ...(resumed ? { resumed } : {}),
  };
}

function sayResult(
  result: ApplyResult,
  session: FleetSession,
  words: ApplyWords,
  terminal: Terminal,
): number {
  switch (result.status) {
    case 'locked':
      terminal.err(lockedMessage(session.fleet.name, result.holder));
      return 1;
    case 'earlier-jobs-running':
      terminal.err(
        `vfleet: jobs of an earlier apply still run after ${result.deadlineMs / 60_000} minutes; not applying over them. Stop the workers running them (vfleet worker), or wait, and apply again.`,
      );
      return 1;
    case 'stale':
      terminal.err(`vfleet: ${result.staleness.message}`);
      return 1;
    case 'cancelled':
      return 1;
    case 'store-lost':
      sayResumed(result.resumed, terminal);
      return storeLost(result, session, terminal);
    case 'applied':
      sayResumed(result.resumed, terminal);
      if (result.afterFailover !== undefined) {
        const n = result.afterFailover;
        terminal.out(
          `${words.verb} incomplete: Redis failed over during it and lost writes; the fleet, read again, is ${n} action${n === 1 ? '' : 's'} from the spec. The next ${words.verb.toLowerCase()} resumes from here.`,
        );
        return 1;
      }
      return applied(result.plan, result.outcomes, words, terminal, result.resumed);
  }
}

/** How often the apply resumed, and what it enqueued again. */
function sayResumed(resumed: Resumed | undefined, terminal: Terminal): void {
  if (!resumed) return;
  const n = resumed.reenqueued;
  terminal.out(
    `Resumed ${resumed.times === 1 ? 'once' : `${resumed.times} times`} after Redis came back as another server: ${n} action${n === 1 ? '' : 's'} enqueued again (not run yet, or lost with the writes Redis lost).`,
  );
}

/**
 * Instances the fleet has no place for: the apply cannot make the fleet match the spec, and says
 * so in its exit status (as Nomad's job run does for placement failures), even when everything it
 * could do is done.
 */
function applied(
  plan: Plan,
  outcomes: Extract<ApplyResult, { status: 'applied' }>['outcomes'],
  words: ApplyWords,
  terminal: Terminal,
  resumed?: Resumed,
): number {
  const doneBefore = resumed?.doneBefore ?? 0;
  const unplaced = plan.unplaceable.length;
  const cannotPlace = `${unplaced} instance${unplaced === 1 ? '' : 's'} cannot be placed (above)`;
  if (plan.actions.length === 0 && doneBefore === 0) {
    if (unplaced === 0) return 0;
    terminal.out(`Apply incomplete: nothing to do, but ${cannotPlace}.`);
    return 1;
  }
  const failed = outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped');
  for (const o of failed)
    terminal.err(`  ! ${o.action}: ${o.outcome}${o.error ? `: ${o.error}` : ''}`);
  for (const r of stoppedRollouts(plan, outcomes)) {
    terminal.err(
      `  ! rollout of group ${r.group} stopped after ${r.after} failed: ${r.notRun} patch${r.notRun === 1 ? '' : 'es'} of the group not run; the rest of the fleet went on.`,
    );
  }
  const deferred = outcomes.filter((o) => o.outcome === 'deferred');
  const until = [...new Set(deferred.map((o) => o.until ?? 'never'))].sort();
  const later =
    deferred.length === 0
      ? ''
      : `; ${deferred.length} patch${deferred.length === 1 ? '' : 'es'} deferred until ${until.join(', ')} (outside ${deferred.length === 1 ? 'its' : 'their'} patch window: the next apply inside it, or the controller, runs ${deferred.length === 1 ? 'it' : 'them'})`;
  const done = doneBefore + outcomes.length - failed.length - deferred.length;
  if (failed.length === 0 && unplaced === 0) {
    // Resumed to the end: every action of the plan approved has its effect, whichever round's
    // job (or a job whose outcome Redis lost) did it.
    const all = resumed && deferred.length === 0 ? resumed.planned : done;
    terminal.out(`${words.verb} complete: ${all} action${all === 1 ? '' : 's'} done${later}.`);
    return 0;
  }
  terminal.out(
    failed.length === 0
      ? `Apply incomplete: ${done} action${done === 1 ? '' : 's'} done, but ${cannotPlace}.`
      : `${words.verb} incomplete: ${done} done, ${failed.length} failed or skipped${unplaced > 0 ? `, and ${cannotPlace}` : ''}${later}. The next ${words.verb.toLowerCase()} resumes from here.`,
  );
  return 1;
}

/** The groups whose rolling patch stopped at a failure, and how many of their patches did not run. */
function stoppedRollouts(
  plan: Plan | undefined,
  outcomes: readonly { readonly action: string; readonly stoppedAfter?: string }[],
): Array<{ group: string; after: string; notRun: number }> {
  const groupOf = new Map((plan?.actions ?? []).map((a) => [a.id, a.group]));
  const stopped = new Map<string, { group: string; after: string; notRun: number }>();
  for (const o of outcomes) {
    if (o.stoppedAfter === undefined) continue;
    const group = groupOf.get(o.action) ?? '';
    const known = stopped.get(group) ?? { group, after: o.stoppedAfter, notRun: 0 };
    known.notRun++;
    stopped.set(group, known);
  }
  return [...stopped.values()];
}

/**
 * The apply lost its Redis midway: one line saying so, what was done, and how to resume. No
 * stack trace and no flood of connection errors (every client was closed the moment the store
 * was declared lost). Exit 1.
 */
function storeLost(
  result: Extract<ApplyResult, { status: 'store-lost' }>,
  session: FleetSession,
  terminal: Terminal,
): number {
  const { plan, reported } = result;
  terminal.err(`vfleet: ${result.error.message}; the apply stopped.`);
  const failed = reported.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped').length;
  const done = reported.length - failed;
  const unknown = plan.actions.length - reported.length;
  const refused = result.error.code === 'redis-refuses-writes';
  terminal.out(
    `Apply interrupted: ${done} of ${plan.actions.length} actions done, ${failed} failed or skipped, ${unknown} not run or unknown (in flight when Redis ${refused ? 'refused writes' : 'went away'}).`,
  );
  terminal.out(
    refused
      ? 'To resume, run vfleet apply again once Redis accepts writes (above): it reads what the hosts run and applies what is left.'
      : session.connection.embedded
        ? "To resume, run vfleet apply again: it restarts the private redis-server from its AOF (at most the last second of writes is lost; what the hosts run is adopted), removes this apply's lock, and applies what is left."
        : `To resume, run vfleet apply again once Redis at ${session.connection.url} answers; it removes this apply's lock (from another machine: vfleet force-unlock <id>, as it says) and applies what is left.`,
  );
  return 1;
}
