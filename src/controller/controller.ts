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
import { applyFleet } from '../app/apply.js';
import { type FleetSession, openSession, type ValidSpec } from '../app/session.js';
import { isVfleetError } from '../model/errors.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import type { PublishedHealth } from '../state/control-state.js';
import type {
  Controller,
  ControllerEvent,
  ControllerOptions,
  Executor,
  SpecSource,
} from './controller-types.js';
import { HostAgents } from './host-agents.js';
import { LivenessTracker } from './liveness.js';
import { ComplianceWatch, Notifier, notifiedAs } from './notify.js';
import { type ReconcileContext, Reconciler } from './reconcile.js';
import { ReplicationSchedules } from './replication-schedules.js';
import { SyncReporter } from './sync-report.js';

export type {
  Controller,
  ControllerEvent,
  ControllerOptions,
  ExecuteOptions,
  Executor,
  ReconcileReport,
  SpecSource,
} from './controller-types.js';

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
        ...(o.signal ? { signal: o.signal } : {}),
        recordRevision: false,
        clock,
        onEvent: o.onEvent,
      }));
  const first = source.read();
  if (!first.ok) throw new Error('the spec does not validate'); // the command checked it
  let spec: ValidSpec = first;
  let signature = source.signature();
  let session: FleetSession = await open(spec);
  const notifier = new Notifier(
    options.notify ?? { urls: [], events: [], secret: () => undefined },
    spec.fleet.name,
  );
  await notifier.start(() => session.connect(), session.queuePrefix);
  const compliance = new ComplianceWatch(notifier, options.notify);
  const liveness = new LivenessTracker(options.policy);
  const hostAgents = new HostAgents(() => session, {
    ttlMs: options.policy.ttlMs,
    controllerId: id,
    emit: (type, fields) => emit(type, fields),
    leading: () => token !== null,
  });
  let token: number | null = null;
  let reconciling: Promise<void> | null = null;
  // Something happened that a reconcile must see (a host lost or back, a new spec, a new
  // leader): the next tick starts one, even while the last one runs (it starts right after) or
  // backs off — a newer reason supersedes a failing attempt.
  let wanted = true;
  let lastRestartable = new Set<string>();
  let invalidShown = '';
  let lastError = '';
  let sourceError = '';
  let suspended = false;
  let requests: number | null = null;
  const sync = new SyncReporter(source, clock);
  // While the source's newest spec does not validate, that is the fleet's sync status, whatever
  // the reconciles of the last good spec find (they go on: self-heal, restarts).
  let invalidTarget: SourceRevision | undefined;
  let lastHealth = '';
  // What the reconcile in flight last published: its outcome for onReconcile.
  let reported: { status: SyncStatus; health: SyncHealth } | undefined;
  const report: ReconcileContext['report'] = (status, health, message, o = {}) => {
    const now = invalidShown === '' ? health : 'Degraded';
    if (now === 'Degraded' && lastHealth !== 'Degraded')
      notifier.send(
        'health-degraded',
        { status, health: now, message: invalidShown || message },
        clock(),
      );
    lastHealth = now;
    reported =
      invalidShown === '' ? { status, health } : { status: 'OutOfSync', health: 'Degraded' };
    return (
      invalidShown === ''
        ? sync.publish(session.control, spec.file, status, health, message, { ...o, suspended })
        : sync.publish(
            session.control,
            spec.file,
            'OutOfSync',
            'Degraded',
            `the spec does not validate: ${invalidShown} (the fleet stays at its last good spec: ${message})`,
            { suspended, ...(invalidTarget ? { target: invalidTarget } : {}) },
          )
    ).catch(() => undefined);
  };
  const reconciler = new Reconciler({
    session: () => session,
    execute,
    clock,
    emit: (type, fields) => emit(type, fields),
    report,
    intervalMs: options.intervalMs,
    autoApply: options.autoApply,
    prune: options.prune ?? false,
    syncTimeoutMs: options.syncTimeoutMs ?? 10 * 60_000,
  });

  const replication = new ReplicationSchedules(() => session, {
    runWorker: !options.externalWorkers,
    concurrency: options.concurrency,
    clock,
    emit: (type, fields) => emit(type, fields),
  });

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
    const pushed = notifiedAs(type);
    if (pushed) notifier.send(pushed, { ...fields, type }, event.at);
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

  /** A fetch asked for has ended: reconcile what it found, at once. */
  function fetched(): void {
    wanted = true;
    options.nudge?.();
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
      // Its source may be an interval old, and a push signalled while no one led was seen by none.
      if (source.fetchNow) void source.fetchNow().then(fetched);
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
      const commit = source.revision?.()?.commit;
      if (shown !== invalidShown) {
        invalidShown = shown;
        await emit('spec-invalid', {
          source: source.describe,
          ...(commit ? { commit } : {}),
          cause: `${shown} — the fleet is left as it is`,
        });
      }
      invalidTarget = source.revision?.();
      await report('OutOfSync', 'Degraded', 'nothing applied from it');
      return;
    }
    invalidShown = '';
    if (read.specHash === spec.specHash) return;
    const next = await open(read);
    const old = session;
    spec = read;
    session = next;
    reconciler.reset();
    wanted = true; // a newer spec supersedes a failing one: no backoff
    const commit = source.revision?.()?.commit;
    await emit('spec-changed', {
      source: source.describe,
      ...(commit ? { commit } : {}),
      specHash: read.specHash,
    });
    // A sync of the older spec, failing, retrying or just slow, does not hold the newer one up.
    if (reconciling)
      reconciler.supersede(`superseded by a newer spec${commit ? ` (${commit.slice(0, 7)})` : ''}`);
    await (reconciling ?? Promise.resolve());
    // The replication queue and worker were made from the older session's connections, which its
    // close quits (left on them, every sync and schedule change stopped): new ones are made from
    // the new session at the next tick, and the old session closes once they have (a sync they
    // run is let finish, in the background: a full copy can outlast the leader's lease).
    const detached = replication.detach();
    void detached.then(() => old.close()).catch(() => undefined);
  }

  /** `vfleet suspend|resume`, `vfleet reconcile --now`, and the source's own troubles. */
  async function signals(): Promise<void> {
    const [held, asked] = await Promise.all([
      session.control.suspended(),
      session.control.reconcileRequests(),
    ]);
    if ((held !== undefined) !== suspended) {
      suspended = held !== undefined;
      wanted = true;
      await emit(suspended ? 'suspended' : 'resumed', {
        ...(held ? { by: held.by, cause: held.reason } : {}),
      });
    }
    if (requests !== null && asked !== requests) {
      // Requests since the last tick are one; a source that fetches reconciles once the fetch is
      // done (a new commit: followSpec), not the current spec again while the fetch runs.
      await emit('reconcile-requested', {
        cause: `asked from outside (vfleet reconcile --now, a push webhook)${source.fetchNow ? ': fetching first' : ''}`,
        requests: asked - requests,
      });
      if (source.fetchNow) void source.fetchNow().then(fetched);
      else wanted = true;
    }
    requests = asked;
    const failing = source.lastError?.() ?? '';
    if (failing !== sourceError) {
      sourceError = failing;
      if (failing) {
        await emit('source-unreachable', { source: source.describe, cause: failing });
        await report('Unknown', 'Degraded', `cannot read ${source.describe}: ${failing}`);
      } else await emit('source-reachable', { source: source.describe });
    }
  }

  async function tick(awaitReconcile = false): Promise<void> {
    const now = clock();
    await agents(now);
    await leadership(now);
    // After a Redis round trip that answered (the leader lease): see host-agents.ts.
    if (runAgents) hostAgents.tick(now);
    replication.startWorker();
    if (token === null) return;
    await judge(now);
    await signals();
    await followSpec();
    if (reconciling === null && (wanted || reconciler.due(clock()))) {
      wanted = false;
      const leaderToken = token;
      const at = clock();
      reported = undefined;
      reconciling = reconciler
        .run(leaderToken, suspended)
        .then(() => compliance.check(session, clock()))
        .then(() => replication.sync())
        .finally(() => {
          reconciling = null;
          options.onReconcile?.({
            at,
            durationMs: clock() - at,
            status: reported?.status ?? 'Unknown',
            health: reported?.health ?? 'Unknown',
          });
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
      // The hosts' watchdogs are fed until they are disarmed, last: a reconcile or a replication
      // sync in flight can outlast a ttl, and a watchdog left unfed would kill the instances a
      // clean stop promises to leave running.
      const feedMs = Math.max(50, Math.min(1000, options.policy.ttlMs / 4));
      const feeding = runAgents ? setInterval(() => hostAgents.tick(clock()), feedMs) : undefined;
      try {
        await (reconciling ?? Promise.resolve()).catch(() => undefined);
        await replication.close();
      } finally {
        clearInterval(feeding);
      }
      if (runAgents) await hostAgents.close().catch(() => undefined);
      if (token !== null) {
        await session.control.releaseLeadership(id, token).catch(() => undefined);
        await emit('leader-released', { controller: id, token });
        token = null;
      }
      await notifier.close();
      await session.close();
    },
  };
}
