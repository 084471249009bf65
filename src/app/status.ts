// Status: every host with what it holds and whether it answers, every instance as the state has
// it corrected by its host (missing, stopped), and the drift a plan would fix. Data only.

import type { InjectedFault } from '../engines/engine-set.js';
import type { EngineKind } from '../model/fleet.js';
import { type HostHealth, instancesUnknown } from '../model/host-health.js';
import type { RecordedInstance } from '../model/instances.js';
import type { PlanSummary } from '../model/plan.js';
import {
  type ReplicationHealth,
  type ReplicationStatus,
  replicationHealth,
  rpoSeconds,
} from '../model/replication.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import { lastEvents } from '../state/event-stream.js';
import { ReplicationState } from '../state/replication-state.js';
import { planFleet } from './plan.js';
import { replicates } from './replication.js';
import type { FleetSession } from './session.js';
import { readSync } from './sync.js';

export interface HostStatus {
  readonly name: string;
  readonly engine: EngineKind;
  /** ok, suspect, lost, fenced or draining (model/host-health.ts), as the controller judges it. */
  readonly health: HostHealth;
  /** ms since the host's lease last changed; null: no lease seen. */
  readonly leaseAgeMs: number | null;
  /** Whether a controller judged the health (else this process, from what it could read). */
  readonly judgedBy: 'controller' | 'observer';
  /**
   * A fault injected on purpose: `failed` (`vfleet host fail`), `partitioned` (`vfleet host
   * partition`: its instances run, but it cannot reach the control plane); null: none.
   */
  readonly fault: InjectedFault | null;
  /** The instances the host itself reports running right now (null: it does not answer). */
  readonly running: readonly string[] | null;
  /** Epoch ms of the last heartbeat a worker wrote for it; null: never. */
  readonly lastHeartbeat: number | null;
  readonly instances: number;
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/**
 * An instance's record, its status as its host has it: `missing` when it no longer runs it,
 * `unknown` when its host is suspect, lost or fenced (never `running` then).
 */
export type InstanceStatusRow = Omit<RecordedInstance, 'status'> & {
  readonly status: RecordedInstance['status'] | 'missing' | 'unknown';
  /** OutOfSync when a plan would change it now (docs/gitops.md). */
  readonly sync: SyncStatus;
  readonly health: SyncHealth;
  /** A replicated VM's disk replication (docs/replication.md); absent for the others. */
  readonly replication?: InstanceReplication;
};

/** `instances[].replication` in status: where the replica is and how old. */
export interface InstanceReplication {
  readonly target: string;
  /** When the last sync ended (ms), null before the first. */
  readonly lastSyncAt: number | null;
  /** The replica's consistency point (ms), null before the first complete sync. */
  readonly consistentAt: number | null;
  /** How old the replica is now, in seconds (the RPO were the host to fail now). */
  readonly rpoSeconds: number | null;
  readonly maxRpoSeconds: number;
  readonly state: ReplicationHealth;
  readonly lastBytes: number;
  readonly lastKind: 'full' | 'incremental' | null;
  readonly fullReason?: string;
  readonly error?: string;
}

/** The fleet against its source, Argo CD style: the leader's word, or this process's own. */
export interface FleetSync {
  readonly status: SyncStatus;
  readonly health: SyncHealth;
  readonly message: string;
  /** What the controller follows, and its newest revision (a controller's judgement only). */
  readonly source?: string;
  readonly target?: SourceRevision;
  readonly suspended?: { readonly by: string; readonly reason: string; readonly at: number };
  readonly judgedBy: 'controller' | 'observer';
  /** When the controller published it (epoch ms). */
  readonly at?: number;
}

/** An instance's health from its status (Argo CD's words). */
export function instanceHealth(status: InstanceStatusRow['status']): SyncHealth {
  switch (status) {
    case 'running':
      return 'Healthy';
    case 'created':
      return 'Progressing';
    case 'missing':
      return 'Missing';
    case 'unknown':
      return 'Unknown';
    default:
      return 'Degraded';
  }
}

const HEALTH_ORDER: readonly SyncHealth[] = [
  'Healthy',
  'Suspended',
  'Progressing',
  'Unknown',
  'Missing',
  'Degraded',
];

/** The fleet's health: the worst of its instances' (an unplaceable instance is Degraded). */
export function fleetHealth(healths: readonly SyncHealth[]): SyncHealth {
  let worst: SyncHealth = 'Healthy';
  for (const h of healths) if (HEALTH_ORDER.indexOf(h) > HEALTH_ORDER.indexOf(worst)) worst = h;
  return worst;
}

export interface FleetStatus {
  readonly fleet: string;
  readonly stateVersion: number;
  /** Where the state is, safe to show (a password is `***`). */
  readonly redis: string;
  /** The revision the fleet was last brought to cleanly (an apply, a controller's sync). */
  readonly source: (SourceRevision & { readonly appliedAt: number }) | null;
  readonly sync: FleetSync;
  readonly hosts: readonly HostStatus[];
  readonly instances: readonly InstanceStatusRow[];
  /** What a plan would change now. */
  readonly drift: PlanSummary;
  /** Instances of the spec that cannot be placed. */
  readonly unplaceable: number;
  readonly warnings: readonly string[];
  /** The last few controller events (detections, fences, restarts, failures), oldest first. */
  readonly events: ReadonlyArray<Readonly<Record<string, unknown>>>;
}

export async function fleetStatus(
  session: FleetSession,
  nowMs: number = Date.now(),
): Promise<FleetStatus> {
  // The sync view first, then the records: a Synced view then never shows records older than the
  // sync it reports (read the other way round, an apply ending in between showed Synced with an
  // instance missing).
  const [source, view, leader] = await Promise.all([
    session.control.recordedRevision(),
    readSync(session),
    session.control.leader(),
  ]);
  const recorded = await session.state.readAll();
  const { plan, observed, health } = await planFleet(session, { nowMs });
  const [failed, running] = await Promise.all([
    session.engines.failed(),
    session.engines.running(),
  ]);
  // As the hosts have them: an instance its answering host no longer runs is `missing`, one it
  // runs stopped is `stopped`, whatever the state last recorded; one on a host that is not ok is
  // `unknown`.
  const live = new Map(observed.instances.map((i) => [i.instance, i.status]));
  const changing = new Set(plan.actions.map((a) => a.instance));
  const policies = new Map(session.fleet.groups.map((g) => [g.name, g.replication]));
  const replication = replicates(session)
    ? await new ReplicationState(session.connection.redis, session.fleet.name).all()
    : new Map<string, ReplicationStatus>();
  const instances: InstanceStatusRow[] = recorded.instances.map((i) => {
    const hostHealth = health.get(i.host)?.health;
    const status: InstanceStatusRow['status'] =
      hostHealth !== undefined && instancesUnknown(hostHealth)
        ? 'unknown'
        : observed.missing?.[i.instance] !== undefined
          ? 'missing'
          : (live.get(i.instance) ?? i.status);
    const policy = policies.get(i.group);
    const replica = replication.get(i.instance);
    return {
      ...i,
      status,
      sync: changing.has(i.instance) ? 'OutOfSync' : 'Synced',
      health: instanceHealth(status),
      ...(policy && i.failoverHost !== null
        ? {
            replication: {
              target: replica?.target ?? i.failoverHost,
              lastSyncAt: replica?.lastSyncAt ?? null,
              consistentAt: replica?.consistentAt ?? null,
              rpoSeconds: replica ? rpoSeconds(replica, nowMs) : null,
              maxRpoSeconds: Math.round(policy.maxRpoMs / 1000),
              state: replicationHealth(replica, policy, nowMs),
              lastBytes: replica?.lastBytes ?? 0,
              lastKind: replica?.lastKind ?? null,
              ...(replica?.fullReason ? { fullReason: replica.fullReason } : {}),
              ...(replica?.error ? { error: replica.error } : {}),
            },
          }
        : {}),
    };
  });
  const beats = new Map(recorded.hosts.map((h) => [h.name, h.lastHeartbeat]));
  const byHost = new Map<string, InstanceStatusRow[]>();
  for (const i of instances) {
    const on = byHost.get(i.host);
    if (on) on.push(i);
    else byHost.set(i.host, [i]);
  }
  const hosts = session.fleet.hosts.map((h) => {
    const on = byHost.get(h.name) ?? [];
    const judged = health.get(h.name);
    return {
      name: h.name,
      engine: h.engine,
      health: judged?.health ?? ('ok' as const),
      leaseAgeMs: judged?.leaseAgeMs ?? null,
      judgedBy: judged?.judgedBy ?? ('observer' as const),
      fault: failed.get(h.name) ?? null,
      running: running.get(h.name) ?? null,
      lastHeartbeat: beats.get(h.name) ?? null,
      instances: on.length,
      vcpus: on.reduce((n, i) => n + i.resources.vcpus, 0),
      memoryMiB: on.reduce((n, i) => n + i.resources.memoryMiB, 0),
    };
  });
  const changes = plan.actions.length + plan.unplaceable.length;
  const own: FleetSync = {
    status: hosts.some((h) => h.running === null)
      ? 'Unknown'
      : changes === 0
        ? 'Synced'
        : 'OutOfSync',
    health: fleetHealth([
      ...instances.map((i) => i.health),
      ...(plan.unplaceable.length > 0 ? (['Degraded'] as const) : []),
    ]),
    message:
      changes === 0
        ? 'the fleet matches the spec'
        : `${plan.actions.length} change(s) to apply${plan.unplaceable.length > 0 ? `, ${plan.unplaceable.length} instance(s) cannot be placed` : ''}`,
    judgedBy: 'observer',
    ...(view.suspended ? { suspended: view.suspended } : {}),
  };
  const published = view.published;
  const sync: FleetSync =
    leader && published
      ? {
          status: published.status,
          health: published.health,
          message: published.message,
          source: published.source,
          ...(published.target ? { target: published.target } : {}),
          ...(view.suspended ? { suspended: view.suspended } : {}),
          judgedBy: 'controller',
          at: published.at,
        }
      : own;
  return {
    fleet: session.fleet.name,
    stateVersion: recorded.version,
    redis: session.connection.url,
    source: source ?? null,
    sync,
    hosts,
    instances,
    drift: plan.summary,
    unplaceable: plan.unplaceable.length,
    warnings: await session.engines.factsWarnings(),
    events: await lastControllerEvents(session, 5),
  };
}

/**
 * The last `count` controller events: those with a `type` (actions' outcomes have none), read
 * from the stream's newest 200 entries.
 */
async function lastControllerEvents(
  session: FleetSession,
  count: number,
): Promise<Array<Readonly<Record<string, unknown>>>> {
  const recent = await lastEvents(session.connection.redis, session.fleet.name, 200);
  return recent
    .filter(({ event }) => typeof event.type === 'string')
    .slice(-count)
    .map(({ event }) => event);
}
