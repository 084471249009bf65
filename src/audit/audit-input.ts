// What every audit reads: the instances, where they run and fail over to, with their resources
// and installed packages — as planned (the spec placed by the scheduler, each instance as its
// image is) or as observed (the state store's records, as the hosts last reported them).
import type { Fleet, PackageVersions, Resources } from '../model/fleet.js';
import type { PatchStatus } from '../model/instances.js';
import type { ObservedState } from '../model/observed.js';
import type { Placement } from '../model/placement.js';
import type { ReplicationStatus } from '../model/replication.js';

export interface AuditInstance {
  readonly instance: string;
  readonly group: string;
  readonly host: string;
  readonly failoverHost: string | null;
  readonly image: string;
  readonly resources: Resources;
  readonly packages: PackageVersions;
}

export type AuditSource = 'planned' | 'observed';

export interface AuditInput {
  readonly fleet: Fleet;
  readonly source: AuditSource;
  readonly instances: readonly AuditInstance[];
  /**
   * The hosts that are not ok now (suspect, lost, fenced) with their health: a failover target
   * among them covers nothing, and an instance on one is not protected but being failed over.
   * Absent for a planned audit (no hosts are asked).
   */
  readonly hostsNotOk?: ReadonlyMap<string, string>;
  /**
   * The replicated VMs' replication as recorded (observed audits of a spec that replicates):
   * a replica missing or older than its group's maxRpo is a finding (docs/replication.md).
   */
  readonly replication?: {
    readonly statuses: ReadonlyMap<string, ReplicationStatus>;
    readonly nowMs: number;
  };
  /**
   * Each instance's last patch as its host reported it (observed audits): where the packages it
   * raised wait for a reboot (`pending-reboot`), or it failed (`failed`). Absent: none known.
   */
  readonly patchStatuses?: ReadonlyMap<string, PatchStatus>;
}

/** The spec as the scheduler would place it; packages as the images declare them. */
export function plannedInput(fleet: Fleet, placement: Placement): AuditInput {
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const instances: AuditInstance[] = [];
  for (const p of placement.placements) {
    const group = groups.get(p.group);
    if (!group) continue;
    instances.push({
      instance: p.instance,
      group: p.group,
      host: p.host,
      failoverHost: p.failoverHost,
      image: group.image,
      resources: group.resources,
      packages: images.get(group.image)?.packages ?? {},
    });
  }
  return { fleet, source: 'planned', instances };
}

/** The fleet as the state store has it; an instance whose host never reported packages has its image's. */
export function observedInput(fleet: Fleet, observed: ObservedState): AuditInput {
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const instances = observed.instances.map(
    (o): AuditInstance => ({
      instance: o.instance,
      group: o.group,
      host: o.host,
      failoverHost: o.failoverHost,
      image: o.image,
      resources: o.resources,
      packages: o.packages ?? images.get(o.image)?.packages ?? {},
    }),
  );
  return { fleet, source: 'observed', instances };
}
