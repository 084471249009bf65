// The controller (docs/controller.md): the long-running reconciler of one fleet. Any number may
// run; each tick every one of them
//
//   1. runs the embedded hosts' emulated agents (renew the lease, or stop the instances of a host
//      cut off for a ttl, or destroy a returning host's stale copies), and renews the vfleet agent
//      of every real host it reaches (host-agents.ts: the host's lease in Redis first, then its
//      watchdog fed; a returning host's stale copies destroyed);
//   2. takes or renews the leader lease; exactly one is leader, with a fencing token every job
//      it enqueues carries;
//
// and the leader
//
//   3. judges every host's health from its lease's age as it saw it change (liveness.ts) and
//      publishes it (status and plan read it);
//   4. reconciles: when a host became restartable (lost for 2 ttls past its lease, or fenced), at
//      every interval, and when the spec changed — plan, and run the restarts of down hosts'
//      instances always, everything else only with --auto-apply; a failed reconcile is retried
//      with backoff, and a newer spec does not wait for the backoff.
//
// Every detection, fence, restart and failure is an event in the fleet's stream (`vfleet
// events`). The spec comes from a SpecSource, so a git-backed source can replace the file.
import { hostname } from 'node:os';
import { type ApplyOptions, type ApplyResult, applyFleet } from '../app/apply.js';
import { planFleet } from '../app/plan.js';
import { type FleetSession, openSession, type SpecRead, type ValidSpec } from '../app/session.js';
import { isVfleetError } from '../model/errors.js';
import { instancesUnknown, type LivenessPolicy } from '../model/host-health.js';
import type { Plan, PlanAction } from '../model/plan.js';
import { isRestart, restartsOnly } from '../plan/restarts.js';
import type { PublishedHealth } from '../state/control-state.js';
import { HostAgents } from './host-agents.js';
import { LivenessTracker } from './liveness.js';

/** Where the controller reads the spec: a file today, a git repository later. */
export interface SpecSource {
  /** Names the source in events (`fleet.yaml`, later a URL and a commit). */
  readonly describe: string;
  /** Something that changes whenever the spec may have (cheap: asked every tick). */
  signature(): string;
  read(): SpecRead;
}

export interface ControllerOptions {
  readonly policy: LivenessPolicy;
  /** How often the leader plans even when nothing happened (`--interval`, default 30 s). */
  readonly intervalMs: number;
  /** Apply every change (self-heal, roll out spec changes); without, only restarts run. */
  readonly autoApply: boolean;
  /** How often a tick runs (default: a quarter of the ttl, at most 1 s). */
  readonly tickMs?: number;
  readonly concurrency: number;
  readonly takeoverMs: number;
  /** `vfleet worker`s serve the queues: the controller runs no workers itself. */
  readonly externalWorkers: boolean;
  readonly clock?: () => number;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Every event, as it is also appended to the fleet's stream. */
  readonly onEvent?: (event: ControllerEvent) => void;
  /** Every reconcile's outcome and duration, for the HTTP server's metrics (src/http/). */
  readonly onReconcile?: (report: ReconcileReport) => void;
  /**
   * Run the embedded hosts' emulated agents in this process (default true: nothing else runs
   * them). The simulation runs them as the hosts' own processes, on the hosts' own clocks.
   */
  readonly runAgents?: boolean;
  /** How a plan is run (default: apply through the host queues, app/apply.ts). */
  readonly executor?: Executor;
  /** Opens a session on a spec (default: app/session.ts's, on REDIS_URL or the private Redis). */
  readonly openSession?: (spec: ValidSpec) => Promise<FleetSession>;
  /** A random id (default: host:pid:random). */
  readonly id?: string;
}

/** What a reconcile asks of the executor: run the fresh plan (narrowed by `select`), fenced. */
export interface ExecuteOptions {
  readonly leaderToken: number;
  readonly select?: (plan: Plan) => Plan;
  readonly onEvent: NonNullable<ApplyOptions['onEvent']>;
}
export type Executor = (session: FleetSession, options: ExecuteOptions) => Promise<ApplyResult>;

export interface ControllerEvent {
  readonly at: number;
  readonly type: string;
  readonly [field: string]: unknown;
}

/** How one reconcile ended: `waiting` is an apply by hand holding the fleet lock. */
export type ReconcileSync = 'in-sync' | 'drift' | 'failed' | 'waiting';

export interface ReconcileReport {
  /** Epoch ms when it started, and how long it took. */
  readonly at: number;
  readonly durationMs: number;
  /** in-sync: nothing left to change (or all of it applied); drift: changes not applied. */
  readonly sync: ReconcileSync;
  readonly specHash: string;
  /** Hosts the plan judged suspect, lost or fenced; instances it could not place. */
  readonly hostsNotOk: number;
  readonly unplaceable: number;
}

const MAX_BACKOFF_MS = 5 * 60_000;

/** One controller, ticked by its caller: the loop (startController) or the simulation. */
export interface Controller {
  readonly id: string;
  /** One tick; with `awaitReconcile` also the reconcile it starts. */
  tick(awaitReconcile?: boolean): Promise<void>;
  /** The fencing token while leader, else null. */
  token(): number | null;
  /** Waits for a reconcile in flight, gives up the lease if held, closes the session. */
  close(): Promise<void>;
  /** Drops the session's Redis clients now (a stop while Redis does not answer). */
  abandon(): void;
  /** The session on the current spec (a new one when the spec changes). */
  session(): FleetSession;
}

export async function createController(
  source: SpecSource,
  options: ControllerOptions,
): Promise<Controller> {
  const clock = options.clock ?? (() => Date.now());
  const id =
    options.id ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  const runAgents = options.runAgents ?? true;
  const execute: Executor =
    options.executor ??
    ((s, o) =>
      applyFleet(s, {
        approve: async () => true,
        concurrency: options.concurrency,
        externalWorkers: options.externalWorkers,
        takeoverMs: options.takeoverMs,
        leaderToken: o.leaderToken,
        ...(o.select ? { select: o.select } : {}),
        onEvent: o.onEvent,
      }));
  const first = source.read();
  if (!first.ok) throw new Error('the spec does not validate'); // the command checked it
  let spec: ValidSpec = first;
  let signature = source.signature();
  let session: FleetSession = await open(spec);
  const liveness = new LivenessTracker(options.policy);
  const hostAgents = new HostAgents(() => session, {
    ttlMs: options.policy.ttlMs,
    controllerId: id,
    emit: (type, fields) => emit(type, fields),
    leading: () => token !== null,
  });
  let token: number | null = null;
  let reconciling: Promise<void> | null = null;
  let nextReconcileAt = 0;
  // Something happened that a reconcile must see (a host lost or back, a new spec, a new
  // leader): the next tick starts one, even while the last one runs (it starts right after) or
  // backs off — a newer reason supersedes a failing attempt.
  let wanted = true;
  let failures = 0;
  let lastRestartable = new Set<string>();
  let lastDrift = '';
  let invalidShown = '';
  let lastError = '';

  async function open(valid: ValidSpec): Promise<FleetSession> {
    if (options.openSession) return options.openSession(valid);
    return openSession(valid, {
      cwd: options.cwd,
      env: options.env,
      lostAfterMs: Number.POSITIVE_INFINITY,
    });
  }

  const emit = async (type: string, fields: Record<string, unknown> = {}) => {
    const event: ControllerEvent = { at: clock(), type, ...fields };
    options.onEvent?.(event);
    await session.state.appendEvent({ ...event, by: 'controller' }).catch(() => undefined);
  };

  async function agents(now: number): Promise<void> {
    if (!runAgents) return;
    const ticked = await session.engines.agentTick(now, options.policy.ttlMs);
    for (const [host, result] of ticked) {
      if (result.state === 'self-fenced' && result.instances.length > 0)
        await emit('self-fenced', {
          host,
          instances: result.instances,
          cause: `cut off from the control plane for ${options.policy.ttlMs} ms: its watchdog stopped its instances`,
        });
      else if (result.state === 'ok' && result.instances.length > 0)
        await emit('stale-copies-destroyed', {
          host,
          instances: result.instances,
          cause: 'the host returned; these instances run elsewhere now at a newer generation',
        });
    }
  }

  async function leadership(now: number): Promise<void> {
    if (token !== null) {
      if (await session.control.renewLeadership(id, token, options.policy.ttlMs)) return;
      await emit('leader-lost', { controller: id, token });
      token = null;
      liveness.reset();
    }
    const taken = await session.control.takeLeadership(
      { id, pid: process.pid, host: hostname(), since: now, policy: options.policy },
      options.policy.ttlMs,
    );
    if (taken.leader && taken.holder) {
      token = taken.holder.token;
      liveness.reset();
      wanted = true;
      await emit('leader', { controller: id, token, pid: process.pid });
    }
  }

  async function judge(now: number): Promise<void> {
    const [leases, fenced] = await Promise.all([
      session.control.leases(),
      session.control.fenced(),
    ]);
    const hosts = session.fleet.hosts.map((h) => ({
      name: h.name,
      fenced: fenced.has(h.name),
      draining: h.drain,
      selfFences: session.engines.capabilities(h.name).selfFences,
    }));
    const seqs = new Map([...leases].map(([host, l]) => [host, l.seq]));
    for (const change of liveness.observe(now, hosts, seqs)) {
      if (change.from === null && change.to === 'ok') continue; // first sight of a live host
      // A host back (its instances may need starting) or a new fence: reconcile now.
      if (change.to === 'ok' || change.to === 'fenced') wanted = true;
      await emit(`host-${change.to}`, {
        host: change.host,
        from: change.from,
        leaseAgeMs: change.leaseAgeMs,
        cause:
          change.to === 'fenced'
            ? `an operator fenced it (vfleet host fenced ${change.host})`
            : change.to === 'ok' || change.to === 'draining'
              ? 'its lease is renewed again'
              : `no lease renewal for ${change.leaseAgeMs} ms (ttl ${options.policy.ttlMs} ms)`,
      });
    }
    const published = new Map<string, PublishedHealth>();
    for (const [host, h] of liveness.all()) {
      published.set(host, {
        health: h.health,
        leaseAgeMs: h.leaseAgeMs,
        since: h.since,
        restartable: h.restartable,
        at: now,
      });
    }
    await session.control.publishHealth(published);
    const restartable = new Set(
      [...liveness.all()].filter(([, h]) => h.restartable).map(([host]) => host),
    );
    let newly = false;
    for (const host of restartable) {
      if (lastRestartable.has(host)) continue;
      newly = true;
      const h = liveness.get(host);
      await emit('restart-allowed', {
        host,
        leaseAgeMs: h?.leaseAgeMs,
        cause:
          h?.health === 'fenced'
            ? 'an operator fenced it'
            : `no lease renewal for ${h?.leaseAgeMs} ms: its watchdog stopped its instances ${2 * options.policy.ttlMs} ms ago at the latest`,
      });
    }
    lastRestartable = restartable;
    if (newly) wanted = true; // now: the reason the controller exists
  }

  /** A new spec: validated, then a session on it (the old one closes once nothing uses it). */
  async function followSpec(): Promise<void> {
    const now = source.signature();
    if (now === signature) return;
    signature = now;
    const read = source.read();
    if (!read.ok) {
      const first = read.diagnostics.find((d) => d.severity === 'error');
      const shown = first ? `${first.file}:${first.line}:${first.column}: ${first.message}` : '';
      if (shown !== invalidShown) {
        invalidShown = shown;
        await emit('spec-invalid', {
          source: source.describe,
          cause: `${shown} — the fleet is left as it is`,
        });
      }
      return;
    }
    invalidShown = '';
    if (read.specHash === spec.specHash) return;
    const next = await open(read);
    const old = session;
    spec = read;
    session = next;
    failures = 0;
    wanted = true; // a newer spec supersedes a failing one: no backoff
    await emit('spec-changed', { source: source.describe, specHash: read.specHash });
    await (reconciling ?? Promise.resolve());
    await old.close().catch(() => undefined);
  }

  async function reconcile(leaderToken: number): Promise<void> {
    const at = clock();
    const specHash = session.specHash;
    let judged = { hostsNotOk: 0, unplaceable: 0 };
    const done = (sync: ReconcileSync) =>
      options.onReconcile?.({ at, durationMs: clock() - at, sync, specHash, ...judged });
    try {
      const { plan, health } = await planFleet(session, { nowMs: at });
      judged = {
        hostsNotOk: [...health.values()].filter((h) => instancesUnknown(h.health)).length,
        unplaceable: plan.unplaceable.length,
      };
      const restarts = plan.actions.filter(isRestart);
      const others = plan.actions.length - restarts.length;
      if (plan.actions.length === 0) {
        if (lastDrift !== '') await emit('in-sync', { cause: 'the fleet matches the spec' });
        lastDrift = '';
        failures = 0;
        nextReconcileAt = at + options.intervalMs;
        done('in-sync');
        return;
      }
      if (restarts.length === 0 && !options.autoApply) {
        const drift = `${plan.summary.create}/${plan.summary.move}/${plan.summary.update}/${plan.summary.patch}/${plan.summary.destroy}`;
        if (drift !== lastDrift)
          await emit('drift', {
            summary: plan.summary,
            cause: 'not applied: run with --auto-apply, or vfleet apply',
          });
        lastDrift = drift;
        nextReconcileAt = at + options.intervalMs;
        done('drift');
        return;
      }
      const byId = new Map<string, PlanAction>();
      const result = await execute(session, {
        leaderToken,
        ...(options.autoApply ? {} : { select: restartsOnly }),
        onEvent: (e) => {
          if (e.type === 'running') {
            for (const a of e.plan.actions) if (isRestart(a)) byId.set(a.id, a);
          }
          if (e.type !== 'outcome') return;
          const action = byId.get(e.outcome.action);
          if (!action) return;
          const ok = e.outcome.outcome !== 'failed' && e.outcome.outcome !== 'skipped';
          void emit(ok ? 'restarted' : 'restart-failed', {
            instance: action.instance,
            host: action.host,
            from: action.fromHost,
            generation: action.generation,
            priority: action.priority,
            ...(ok ? {} : { cause: e.outcome.error ?? e.outcome.outcome }),
          });
        },
      });
      done(await settle(result, at, others));
    } catch (e) {
      failed(at, isVfleetError(e) ? `${e.code}: ${e.message}` : String(e));
      await emit('reconcile-failed', {
        cause: isVfleetError(e) ? `${e.code}: ${e.message}` : String(e),
        retryInMs: nextReconcileAt - at,
      });
      done('failed');
    }
  }

  function failed(at: number, _cause: string): void {
    failures++;
    const backoff = Math.min(MAX_BACKOFF_MS, options.intervalMs, 1000 * 2 ** (failures - 1));
    nextReconcileAt = at + backoff;
  }

  async function settle(result: ApplyResult, at: number, others: number): Promise<ReconcileSync> {
    if (result.status === 'applied') {
      const bad = result.outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'skipped');
      const plan: Plan = result.plan;
      if (bad.length > 0) {
        failed(at, `${bad.length} action(s) failed`);
        await emit('reconcile-failed', {
          plan: plan.id,
          failed: bad.length,
          cause: bad[0]?.error ?? 'an action failed',
          retryInMs: nextReconcileAt - at,
        });
        return 'failed';
      }
      failures = 0;
      lastDrift = '';
      nextReconcileAt = at + options.intervalMs;
      await emit('reconciled', {
        plan: plan.id,
        actions: plan.actions.length,
        summary: plan.summary,
        ...(plan.unplaceable.length > 0 ? { unplaceable: plan.unplaceable.length } : {}),
        ...(options.autoApply || others === 0 ? {} : { notApplied: others }),
      });
      return options.autoApply || others === 0 ? 'in-sync' : 'drift';
    }
    if (result.status === 'locked') {
      // Someone applies by hand: try again soon, without counting it a failure.
      nextReconcileAt = at + Math.min(options.intervalMs, 2_000);
      await emit('reconcile-waiting', { cause: `the fleet lock is held by ${result.holder.id}` });
      return 'waiting';
    }
    failed(at, result.status);
    await emit('reconcile-failed', { cause: result.status, retryInMs: nextReconcileAt - at });
    return 'failed';
  }

  async function tick(awaitReconcile = false): Promise<void> {
    const now = clock();
    await agents(now);
    await leadership(now);
    // After a Redis round trip that answered (the leader lease): see host-agents.ts.
    if (runAgents) hostAgents.tick(now);
    if (token === null) return;
    await judge(now);
    await followSpec();
    if (reconciling === null && (wanted || clock() >= nextReconcileAt)) {
      wanted = false;
      const leaderToken = token;
      reconciling = reconcile(leaderToken).finally(() => {
        reconciling = null;
      });
    }
    if (awaitReconcile) await (reconciling ?? Promise.resolve());
  }

  return {
    id,
    async tick(awaitReconcile = false) {
      try {
        await tick(awaitReconcile);
        lastError = '';
      } catch (e) {
        // Said once until it changes: a Redis that is down fails every tick the same way.
        const cause = isVfleetError(e)
          ? `${e.code}: ${e.message}`
          : /MaxRetriesPerRequest|Connection is closed|ECONNREFUSED|ENOENT|ETIMEDOUT/.test(
                String(e),
              )
            ? `Redis ${session.connection.url} does not answer; retrying every tick`
            : String(e);
        if (cause !== lastError) await emit('controller-error', { cause });
        lastError = cause;
      }
    },
    token: () => token,
    session: () => session,
    abandon() {
      options.onEvent?.({
        at: clock(),
        type: 'stopping-without-redis',
        cause: `Redis ${session.connection.url} does not answer: the leader lease, if held, expires on its own within ${options.policy.ttlMs} ms`,
      });
      session.connection.clients.abandon();
    },
    async close() {
      await (reconciling ?? Promise.resolve()).catch(() => undefined);
      if (runAgents) await hostAgents.close().catch(() => undefined);
      if (token !== null) {
        await session.control.releaseLeadership(id, token).catch(() => undefined);
        await emit('leader-released', { controller: id, token });
        token = null;
      }
      await session.close();
    },
  };
}
