// Status: every host with what it holds and whether it answers, every instance as the state has
// it corrected by its host (missing, stopped), and the drift a plan would fix. Data only.
import type { InjectedFault } from '../engines/engine-set.js';
import type { EngineKind } from '../model/fleet.js';
import { type HostHealth, instancesUnknown } from '../model/host-health.js';
import type { RecordedInstance } from '../model/instances.js';
import type { PlanSummary } from '../model/plan.js';
import { lastEvents } from '../state/event-stream.js';
import { planFleet } from './plan.js';
import type { FleetSession } from './session.js';

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
};

export interface FleetStatus {
  readonly fleet: string;
  readonly stateVersion: number;
  /** Where the state is, safe to show (a password is `***`). */
  readonly redis: string;
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
  const instances: InstanceStatusRow[] = recorded.instances.map((i) => {
    const hostHealth = health.get(i.host)?.health;
    if (hostHealth !== undefined && instancesUnknown(hostHealth))
      return { ...i, status: 'unknown' as const };
    return observed.missing?.[i.instance] !== undefined
      ? { ...i, status: 'missing' as const }
      : { ...i, status: live.get(i.instance) ?? i.status };
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
  return {
    fleet: session.fleet.name,
    stateVersion: recorded.version,
    redis: session.connection.url,
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
