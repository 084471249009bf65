// A plan is data (habit 2, docs/architecture.md): what apply will do, in order, with what it costs in licenses and
// what failover coverage it leaves. Printed, saved to a file, applied later by another module.

import type {
  FailoverPriority,
  GuestAccess,
  InstanceKind,
  PackageVersions,
  PatchWindow,
  Resources,
} from './fleet.js';
import type { FailoverSummary, Unplaceable } from './placement.js';
import type { SourceRevision } from './source.js';

export const PLAN_FORMAT_VERSION = '1';

/**
 * `update` replaces the instance in place (destroy, create); `retarget` only records a new
 * failover host — the standby reservation moved, the instance keeps running untouched.
 */
export const ACTION_KINDS = [
  'destroy',
  'move',
  'update',
  'start',
  'retarget',
  'create',
  'patch',
] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/** How each action is shown, Terraform style. */
export const ACTION_SYMBOL: Readonly<Record<ActionKind, string>> = {
  create: '+',
  start: '~',
  update: '~',
  retarget: '~',
  move: '>',
  destroy: '-',
  patch: '^',
};

export interface PlanAction {
  /** `<instance>.<kind>`: unique in a plan, part of the job ids apply derives. */
  readonly id: string;
  readonly kind: ActionKind;
  readonly instance: string;
  readonly group: string;
  /** Where the instance runs after the action (for destroy: where it ran). */
  readonly host: string;
  /** move: where it runs now. */
  readonly fromHost: string | null;
  /** The instance's generation once the action is done. */
  readonly generation: number;
  readonly image: string;
  readonly resources: Resources;
  readonly failoverHost: string | null;
  /** Ids of actions that must finish first (they free the capacity this one needs). */
  readonly dependsOn: readonly string[];
  /** Why, for people: "new replica", "vcpus 2 → 4", "group removed"… */
  readonly reason: string;
  /** patch: the packages to raise, installed name → the baseline's minimum version. */
  readonly packages?: PackageVersions;
  /**
   * patch: its batch in its group's rolling patch (1, 2, …): at most `maxUnavailable` replicas
   * a batch, and batch n+1 waits for every replica of batch n (docs/patching.md).
   */
  readonly batch?: number;
  /** patch: the group's maintenance window; apply starts the patch only while it is open. */
  readonly window?: PatchWindow;
  /**
   * patch: outside its window when the plan was made: when the window next opens (ISO 8601), or
   * `never`. Apply leaves it (and its group's later batches) for then.
   */
  readonly deferredUntil?: string;
  /**
   * patch: the packages whose baseline entry says `reboot: true` — the embedded engine's
   * emulation of an update that asks for a restart (a real host's dpkg says it itself).
   */
  readonly reboot?: readonly string[];
  /** patch: the group's `onFailure` is rollback: a failed patch restores the replica's snapshot. */
  readonly rollback?: true;
  /**
   * move: one of a cycle of moves (a swap), so it is stopped first: stopped and removed on its
   * source (its disk copied to the target), then started on the target once what it waits for
   * has left. Other instances' actions that wait for it wait only for it to leave.
   */
  readonly stopFirst?: boolean;
  /**
   * move: a running VM between hosts whose engines migrate live (`capabilities.migratesTo`): one
   * `migrate` job moves it without stopping it; it falls back to stop, copy, start only when
   * the migration fails (plan/live-moves.ts, docs/replication.md).
   */
  readonly live?: boolean;
  /**
   * destroy: of a second copy (ObservedState.strays) on `host`, while the instance's own record
   * is on another host and stays: apply removes it from the host and leaves the state alone.
   */
  readonly stray?: boolean;
  /**
   * create: a restart off a host that is down (`fromHost`), with its group's failover priority:
   * the queues run high first.
   */
  readonly priority?: FailoverPriority;
  /**
   * The host the instance ran on before a restart moved it away (ObservedInstance.homeHost):
   * carried by every action on it, so the record keeps it, until it is back there.
   */
  readonly homeHost?: string;
  /**
   * create, a restart of a replicated VM (docs/replication.md): it boots from the replica its
   * failover host keeps, as of `consistentAt`; `rpoMs` is the data window lost — from that point
   * to when its host was last seen.
   */
  readonly fromReplica?: {
    readonly consistentAt: number;
    readonly seq: number;
    readonly rpoMs: number;
  };
}

/** A restart the plan holds back: a replicated VM with no usable replica (onMissingReplica: wait). */
export interface WithheldRestart {
  readonly instance: string;
  readonly host: string;
  readonly fromHost: string;
  readonly reason: string;
}

/**
 * An image as apply needs it to create an instance: resolved from the spec when the plan was
 * made (packagesFrom read, source paths absolute), so a saved plan runs what it showed.
 */
export interface PlanImage {
  readonly name: string;
  readonly kind: InstanceKind;
  readonly os: { readonly family: string; readonly release: string; readonly arch: string };
  readonly packages: PackageVersions;
  /** Real engines: the image's files on the machine that runs vfleet, as absolute paths. */
  readonly source?: {
    readonly rootfs?: string;
    readonly disk?: string;
    readonly kernel?: string;
    readonly initrd?: string;
    readonly cmdline?: string;
  };
  /** Real engines, containers: the sandbox's argument vector. */
  readonly command?: readonly string[];
  /** Real engines, VMs: how vfleet reaches the guest (its identityFile an absolute path). */
  readonly guest?: GuestAccess;
}

export interface LicenseChange {
  readonly pool: string;
  readonly metric: string;
  readonly entitlement: number;
  readonly before: number;
  readonly after: number;
}

export interface PlanSummary {
  readonly create: number;
  readonly move: number;
  /** Updates and starts: changes to an instance that stays where it is. */
  readonly update: number;
  /** Instances raised to their patch baseline, one replica of a group at a time. */
  readonly patch: number;
  readonly destroy: number;
}

export interface Plan {
  readonly formatVersion: typeof PLAN_FORMAT_VERSION;
  readonly id: string;
  readonly fleet: string;
  /** sha256 of the spec file and every file it names that vfleet read (packagesFrom). */
  readonly specHash: string;
  /** The observed state's version the plan was made against. */
  readonly stateVersion: number;
  /** The spec's source: its file, or the git commit it is at (model/source.ts). */
  readonly source?: SourceRevision;
  readonly actions: readonly PlanAction[];
  /** Every image an action creates an instance from, by name: a saved plan needs no spec to run. */
  readonly images: Readonly<Record<string, PlanImage>>;
  readonly unplaceable: readonly Unplaceable[];
  readonly licenses: readonly LicenseChange[];
  readonly failover: FailoverSummary;
  readonly summary: PlanSummary;
  /**
   * A destroy plan (`vfleet destroy`, `plan --destroy`): every instance of the fleet removed,
   * nothing placed. Absent on the plans that take the fleet to its spec.
   */
  readonly destroy?: true;
  /** Restarts held back until a replica exists or an operator decides (absent: none). */
  readonly withheld?: readonly WithheldRestart[];
}
