// One reconcile of the leader (docs/controller.md, "Reconcile"; docs/gitops.md for the sync
// rules): plan; run the restarts of down hosts' instances always, everything else only with
// --auto-apply (and removals only with --prune); a sync runs under an AbortSignal that a newer
// spec or the sync's time limit fires; the outcome becomes events, the sync status published,
// and when the next reconcile is due (the interval, or a backoff after a failure).
import type { ApplyResult } from '../app/apply.js';
import { planFleet } from '../app/plan.js';
import type { FleetSession } from '../app/session.js';
import { sessionSource } from '../app/source.js';
import { isVfleetError, VfleetError } from '../model/errors.js';
import type { Plan, PlanAction } from '../model/plan.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import { isRestart, restartsOnly, withoutActions, withoutRemovals } from '../plan/restarts.js';
import type { Executor } from './controller.js';

const MAX_BACKOFF_MS = 5 * 60_000;

export interface ReconcileContext {
  readonly session: () => FleetSession;
  readonly execute: Executor;
  readonly clock: () => number;
  readonly emit: (type: string, fields?: Record<string, unknown>) => Promise<void>;
  readonly report: (
    status: SyncStatus,
    health: SyncHealth,
    message: string,
    options?: {
      readonly applied?: boolean;
      readonly suspended?: boolean;
      readonly target?: SourceRevision;
    },
  ) => Promise<void>;
  readonly intervalMs: number;
  readonly autoApply: boolean;
  readonly prune: boolean;
  readonly syncTimeoutMs: number;
}

export class Reconciler {
  private failures = 0;
  private nextAt = 0;
  private lastDrift = '';
  private heldShown = '';
  private withheldShown = '';
  private deferredShown = '';
  private abort: AbortController | null = null;

  constructor(private readonly ctx: ReconcileContext) {}

  /** A new spec: no backoff left from the old one's failures. */
  reset(): void {
    this.failures = 0;
  }

  due(now: number): boolean {
    return now >= this.nextAt;
  }

  /** Aborts the sync in flight, if any (a newer spec superseded it). */
  supersede(reason: string): boolean {
    if (!this.abort) return false;
    this.abort.abort(new VfleetError('superseded', reason));
    return true;
  }

  async run(leaderToken: number, suspended: boolean): Promise<void> {
    const { clock, emit } = this.ctx;
    const session = this.ctx.session();
    const at = clock();
    // Judged against the revision this session's spec is (not the source's newest: a newer one
    // may arrive while this reconcile runs).
    const target = await sessionSource(session);
    const report: ReconcileContext['report'] = (status, health, message, o = {}) =>
      this.ctx.report(status, health, message, { ...o, target });
    try {
      const { plan } = await planFleet(session, { nowMs: at });
      const applying = this.ctx.autoApply && !suspended;
      // What would run: restarts only, or everything but (without --prune) the removals, and
      // never a patch outside its window (docs/patching.md): the reconcile is due again when the
      // earliest window opens.
      const narrow = (p: Plan): Plan =>
        applying ? withoutDeferred(this.ctx.prune ? p : withoutRemovals(p).plan) : restartsOnly(p);
      const deferred = plan.actions.filter((a) => a.deferredUntil !== undefined);
      await this.reportDeferred(deferred);
      const narrowed = {
        plan: narrow(plan),
        held: applying && !this.ctx.prune ? withoutRemovals(plan).held : [],
      };
      await this.reportHeld(narrowed.held);
      const withheld = (plan.withheld ?? []).map((w) => `${w.instance}: ${w.reason}`).join('; ');
      if (withheld !== this.withheldShown && withheld !== '')
        await emit('restart-withheld', { cause: withheld });
      this.withheldShown = withheld;
      if (plan.actions.length === 0) {
        if (this.lastDrift !== '') await emit('in-sync', { cause: 'the fleet matches the spec' });
        this.lastDrift = '';
        this.failures = 0;
        this.nextAt = at + this.ctx.intervalMs;
        await report('Synced', 'Healthy', 'the fleet matches the spec', {
          applied: true,
          suspended,
        });
        return;
      }
      const notRun = plan.actions.length - narrowed.plan.actions.length;
      if (narrowed.plan.actions.length === 0) {
        const drift = `${plan.summary.create}/${plan.summary.move}/${plan.summary.update}/${plan.summary.patch}/${plan.summary.destroy}`;
        const onlyDeferred = deferred.length > 0 && deferred.length === notRun;
        const why = suspended
          ? 'not applied: the fleet is suspended (vfleet resume)'
          : !this.ctx.autoApply
            ? 'not applied: run with --auto-apply, or vfleet apply'
            : onlyDeferred
              ? `not applied yet: patches wait for their window (until ${[...new Set(deferred.map((a) => a.deferredUntil))].sort().join(', ')})`
              : 'not applied: only removals (and --prune is off) or patches outside their window';
        if (drift !== this.lastDrift) await emit('drift', { summary: plan.summary, cause: why });
        this.lastDrift = drift;
        this.nextAt = at + this.ctx.intervalMs;
        await report('OutOfSync', 'Healthy', `${plan.actions.length} change(s) ${why}`, {
          suspended,
        });
        return;
      }
      await report(
        'OutOfSync',
        'Progressing',
        `applying ${narrowed.plan.actions.length} action(s)`,
        {
          suspended,
        },
      );
      const result = await this.sync(session, leaderToken, narrow);
      await this.settle(result, at, notRun, suspended, report);
    } catch (e) {
      const cause = isVfleetError(e) ? `${e.code}: ${e.message}` : String(e);
      if (isVfleetError(e) && (e.code === 'superseded' || e.code === 'sync-timeout')) {
        // Not a failure of the fleet: the next reconcile (now, for a newer spec) takes over.
        this.nextAt = at;
        await emit('sync-aborted', { cause });
        await report('OutOfSync', 'Progressing', `sync aborted: ${cause}`, { suspended });
        return;
      }
      this.failed(at);
      await emit('reconcile-failed', { cause, retryInMs: this.nextAt - at });
      await report('OutOfSync', 'Degraded', `reconcile failed: ${cause}`, { suspended });
    } finally {
      // A patch deferred now (planned outside its window, or the window closed while its
      // rollout ran) is due when its window next opens: the reconcile wakes then.
      if (this.opensAt !== null && this.opensAt > at)
        this.nextAt = Math.min(this.nextAt, this.opensAt);
      this.opensAt = null;
    }
  }

  /** When the earliest deferred patch of this reconcile may start (epoch ms), if any. */
  private opensAt: number | null = null;

  private noteOpening(until: string | undefined): void {
    if (until === undefined || until === 'never') return;
    const ms = Date.parse(until);
    if (Number.isFinite(ms)) this.opensAt = this.opensAt === null ? ms : Math.min(this.opensAt, ms);
  }

  /** Patches outside their window: said once until it changes, and the wake-up noted. */
  private async reportDeferred(deferred: readonly PlanAction[]): Promise<void> {
    for (const a of deferred) this.noteOpening(a.deferredUntil);
    const until = [...new Set(deferred.map((a) => a.deferredUntil))].sort().join(', ');
    const shown = `${deferred.length}:${until}`;
    if (shown === this.deferredShown) return;
    this.deferredShown = shown;
    if (deferred.length > 0) {
      await this.ctx.emit('patches-deferred', {
        patches: deferred.length,
        until,
        cause: 'outside their patch window: started when it opens',
      });
    }
  }

  /** Runs the plan through the executor under an abort (superseded, or past the time limit). */
  private async sync(
    session: FleetSession,
    leaderToken: number,
    narrow: (plan: Plan) => Plan,
  ): Promise<ApplyResult> {
    const abort = new AbortController();
    this.abort = abort;
    const timer = setTimeout(
      () =>
        abort.abort(
          new VfleetError(
            'sync-timeout',
            `the sync ran longer than ${Math.round(this.ctx.syncTimeoutMs / 1000)} s and was aborted`,
          ),
        ),
      this.ctx.syncTimeoutMs,
    );
    const byId = new Map<string, PlanAction>();
    try {
      const result = await this.ctx.execute(session, {
        leaderToken,
        select: narrow,
        signal: abort.signal,
        onEvent: (e) => {
          if (e.type === 'running') {
            for (const a of e.plan.actions) if (isRestart(a)) byId.set(a.id, a);
          }
          if (e.type !== 'outcome') return;
          const action = byId.get(e.outcome.action);
          if (!action) return;
          const ok = e.outcome.outcome !== 'failed' && e.outcome.outcome !== 'skipped';
          void this.ctx.emit(ok ? 'restarted' : 'restart-failed', {
            instance: action.instance,
            host: action.host,
            from: action.fromHost,
            generation: action.generation,
            priority: action.priority,
            // What a replicated VM restarted from, and the data window it lost (the RPO suffered).
            ...(action.fromReplica
              ? {
                  from_replica: new Date(action.fromReplica.consistentAt).toISOString(),
                  rpoSeconds: Math.round(action.fromReplica.rpoMs / 1000),
                }
              : {}),
            ...(ok ? {} : { cause: e.outcome.error ?? e.outcome.outcome }),
          });
        },
      });
      if (abort.signal.aborted) throw abort.signal.reason;
      return result;
    } catch (e) {
      throw abort.signal.aborted ? abort.signal.reason : e;
    } finally {
      clearTimeout(timer);
      this.abort = null;
    }
  }

  private async reportHeld(held: readonly PlanAction[]): Promise<void> {
    const names = held.map((a) => a.instance).sort();
    const shown = names.join(',');
    if (shown === this.heldShown) return;
    this.heldShown = shown;
    if (names.length > 0)
      await this.ctx.emit('prune-skipped', {
        instances: names,
        cause: 'gone from the spec: destroyed only with --prune (and what waits for their room)',
      });
  }

  private failed(at: number): void {
    this.failures++;
    const backoff = Math.min(MAX_BACKOFF_MS, this.ctx.intervalMs, 1000 * 2 ** (this.failures - 1));
    this.nextAt = at + backoff;
  }

  private async settle(
    result: ApplyResult,
    at: number,
    notRunBefore: number,
    suspended: boolean,
    report: ReconcileContext['report'],
  ): Promise<void> {
    const { emit } = this.ctx;
    let notRun = notRunBefore;
    if (result.status === 'applied') {
      const bad = result.outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped');
      const plan: Plan = result.plan;
      // Patches the window closed on while the rollout ran: not run, due when it opens again.
      const late = result.outcomes.filter((o) => o.outcome === 'deferred');
      for (const o of late) this.noteOpening(o.until);
      if (late.length > 0) {
        await emit('patches-deferred', {
          patches: late.length,
          until: [...new Set(late.map((o) => o.until))].sort().join(', '),
          cause: 'the patch window closed: no new patch started; the rest run when it opens',
        });
      }
      notRun += late.length;
      if (bad.length > 0) {
        this.failed(at);
        const cause = bad[0]?.error ?? 'an action failed';
        await emit('reconcile-failed', {
          plan: plan.id,
          failed: bad.length,
          cause,
          retryInMs: this.nextAt - at,
        });
        await report('OutOfSync', 'Degraded', `${bad.length} action(s) failed: ${cause}`, {
          suspended,
        });
        return;
      }
      this.failures = 0;
      this.lastDrift = '';
      this.nextAt = at + this.ctx.intervalMs;
      await emit('reconciled', {
        plan: plan.id,
        actions: plan.actions.length,
        summary: plan.summary,
        ...(plan.unplaceable.length > 0 ? { unplaceable: plan.unplaceable.length } : {}),
        ...(notRun === 0 ? {} : { notApplied: notRun }),
      });
      const unplaceable = plan.unplaceable.length;
      const health: SyncHealth = unplaceable > 0 ? 'Degraded' : 'Healthy';
      const why = unplaceable > 0 ? `; ${unplaceable} instance(s) cannot be placed` : '';
      if (notRun === 0) {
        await report('Synced', health, `applied ${plan.actions.length} action(s)${why}`, {
          applied: unplaceable === 0,
          suspended,
        });
      } else {
        await report('OutOfSync', health, `${notRun} change(s) not applied${why}`, { suspended });
      }
      return;
    }
    if (result.status === 'locked') {
      // Someone applies by hand: try again soon, without counting it a failure.
      this.nextAt = at + Math.min(this.ctx.intervalMs, 2_000);
      await emit('reconcile-waiting', { cause: `the fleet lock is held by ${result.holder.id}` });
      return;
    }
    this.failed(at);
    await emit('reconcile-failed', { cause: result.status, retryInMs: this.nextAt - at });
    await report('OutOfSync', 'Degraded', `reconcile failed: ${result.status}`, { suspended });
  }
}

/** The plan without its patches outside their window (and what waits for them). */
function withoutDeferred(plan: Plan): Plan {
  return withoutActions(
    plan,
    plan.actions.filter((a) => a.deferredUntil !== undefined).map((a) => a.id),
  ).plan;
}
