// Status: every host with what it holds and whether it answers, every instance as the state has
// it corrected by its host (missing, stopped), and the drift a plan would fix. Data only.
import type { InjectedFault } from '../engines/engine-set.js';
import type { EngineKind } from '../model/fleet.js';
import type { RecordedInstance } from '../model/instances.js';
import type { PlanSummary } from '../model/plan.js';
import { planFleet } from './plan.js';
import type { FleetSession } from './session.js';

export interface HostStatus {
  readonly name: string;
  readonly engine: EngineKind;
  /**
   * Under a fault injected on purpose: `failed` (`vfleet host fail`), `partitioned` (`vfleet host
   * partition`: its instances run, but it cannot reach the control plane).
   */
  readonly health: 'ok' | InjectedFault;
  /** Epoch ms of the last heartbeat a worker wrote for it; null: never. */
  readonly lastHeartbeat: number | null;
  readonly instances: number;
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/** An instance's record, its status as its host has it: `missing` when it no longer runs it. */
export type InstanceStatusRow = Omit<RecordedInstance, 'status'> & {
  readonly status: RecordedInstance['status'] | 'missing';
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
}

export async function fleetStatus(session: FleetSession): Promise<FleetStatus> {
  const recorded = await session.state.readAll();
  const { plan, observed } = await planFleet(session);
  // As the hosts have them: an instance its answering host no longer runs is `missing`, one it
  // runs stopped is `stopped`, whatever the state last recorded.
  const live = new Map(observed.instances.map((i) => [i.instance, i.status]));
  const instances: InstanceStatusRow[] = recorded.instances.map((i) =>
    observed.missing?.[i.instance] !== undefined
      ? { ...i, status: 'missing' as const }
      : { ...i, status: live.get(i.instance) ?? i.status },
  );
  const failed = await session.engines.failed();
  const beats = new Map(recorded.hosts.map((h) => [h.name, h.lastHeartbeat]));
  const hosts = session.fleet.hosts.map((h) => {
    const on = instances.filter((i) => i.host === h.name);
    return {
      name: h.name,
      engine: h.engine,
      health: failed.get(h.name) ?? ('ok' as const),
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
  };
}
