// What the scheduler decides: where every instance runs, where it restarts if its failure
// domain fails, what each host holds and reserves, what each license pool uses, and why the
// instances that could not be placed were not. Plain data: printed, saved, diffed (habit 2, docs/architecture.md).
import type { InstanceKind } from './fleet.js';

export const PLACEMENT_FORMAT_VERSION = '1';

/**
 * Why a host cannot take an instance: the reason the first failing check gives
 * (src/scheduler/checks/, in the order src/scheduler/stack.ts runs them). Every view prints it
 * as it is; docs/scheduler.md explains each.
 */
export type StaticReason =
  | 'host-down'
  | 'host-draining'
  | `runs-no-${InstanceKind}`
  | 'arch-mismatch'
  | 'os-mismatch'
  | 'missing-labels'
  | 'no-spread-label';

export type DynamicReason =
  | 'insufficient-cpu'
  | 'insufficient-memory'
  | 'insufficient-disk'
  | 'anti-affinity'
  | 'spread-skew'
  | `license-exhausted:${string}`
  | 'failover-capacity';

/**
 * A reason an instance was not placed on a host: a check's, or `not-chosen` (the host passed
 * every check, and another was taken), or `no-hosts` (the fleet has none).
 */
export type PlacementReason = StaticReason | DynamicReason | 'not-chosen' | 'no-hosts';

export interface ResourceAmounts {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
}

export interface PlacementEntry {
  readonly instance: string;
  readonly group: string;
  readonly host: string;
  /** Where it restarts when its own failure domain fails; null when not protected or not covered. */
  readonly failoverHost: string | null;
}

export interface HostUsage {
  readonly name: string;
  readonly used: ResourceAmounts;
  /** Standby reserve: per resource, the most any single-domain failure would land here. */
  readonly reserved: ResourceAmounts;
  /** License pools that count this host (host metrics). */
  readonly licenses: readonly string[];
}

export interface LicenseUse {
  readonly pool: string;
  readonly metric: string;
  readonly entitlement: number;
  readonly used: number;
}

export interface Unplaceable {
  readonly instance: string;
  readonly group: string;
  /** Reason → how many hosts it ruled out. */
  readonly reasons: Readonly<Partial<Record<PlacementReason, number>>>;
}

export interface FailoverSummary {
  readonly tolerate: number;
  readonly domain: string;
  /** Instances of groups with `failover: true`. */
  readonly protected: number;
  /** Protected instances placed with a guaranteed failover host. */
  readonly covered: number;
}

export interface Placement {
  readonly formatVersion: typeof PLACEMENT_FORMAT_VERSION;
  readonly placements: readonly PlacementEntry[];
  readonly hosts: readonly HostUsage[];
  readonly licenses: readonly LicenseUse[];
  readonly unplaceable: readonly Unplaceable[];
  readonly failover: FailoverSummary;
}

/** Where instances run now, as far as the scheduler needs to know (for stability). */
export interface ObservedPlacement {
  readonly instances: ReadonlyArray<{
    readonly instance: string;
    /**
     * The group its record names, if known: where its replica is looked for first (its name
     * decides: replicaOf). Saves making each name's group on 100,000 instances.
     */
    readonly group?: string;
    readonly host: string;
    /** Kept too when it still works, so a re-plan does not move standby reserves or licenses. */
    readonly failoverHost?: string | null;
    /** Where it ran before a restart (failback: auto moves it back there when it can). */
    readonly homeHost?: string;
  }>;
}

export const NOTHING_OBSERVED: ObservedPlacement = { instances: [] };

/** One host's verdict for one instance, as `explain` shows it. */
export interface HostVerdict {
  readonly host: string;
  readonly ok: boolean;
  /** The first check that ruled the host out. */
  readonly reason: StaticReason | DynamicReason | null;
  /** Effective free capacity left after placing (MiB-equivalent); binpack picks the lowest. */
  readonly freeAfter: number | null;
  /** License units the placement would add. */
  readonly licenseUnits: number | null;
  readonly chosen: boolean;
}

export interface Explanation {
  readonly instance: string;
  readonly group: string;
  readonly strategy: string;
  readonly kept: boolean;
  readonly hosts: readonly HostVerdict[];
}
