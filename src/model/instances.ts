// One vocabulary for an instance, in the three places it lives, and every mapping between them:
//
//   desired   what the spec and the scheduler want: a PlacementEntry (model/placement.ts) of a
//             group (model/fleet.ts) — name, group, host, failover host, image, resources;
//   recorded  what the state store holds (state/, Redis): RecordedInstance, one per instance;
//   reported  what a host says it runs (engines/): ReportedInstance, from `list` and `describe`.
//
// Plans read the observed state (model/observed.ts): the recorded instances corrected by what
// the hosts report (app/refresh.ts). A job writes what its host reported back as a record
// (queue/action-handler.ts). Both conversions are here and only here.
import type { PackageVersions, Resources } from './fleet.js';
import type { InstanceStatus, ObservedInstance } from './observed.js';

/** An instance as the state store records it: an observed instance whose packages are known. */
export interface RecordedInstance extends ObservedInstance {
  /** Package → version, as the host last reported the instance's inventory. */
  readonly packages: PackageVersions;
}

/** What a real host reports about an instance beyond its status. */
export interface InstanceRuntime {
  /** The process that is the instance: QEMU, or the sandbox's `unshare`. */
  readonly pid?: number;
  /** Sandboxes: PID 1 of the sandbox's pid namespace, as the host numbers it. */
  readonly initPid?: number;
  /** VMs: QEMU's run state from QMP `query-status` (running, paused, shutdown, …). */
  readonly state?: string;
  /** Sandboxes: which resource limits the host enforces (cgroup v2), and why not where not. */
  readonly limits?: { readonly memory: boolean; readonly cpu: boolean; readonly note?: string };
  /** The instance's console output on the host (serial log, sandbox log). */
  readonly log?: string;
}

/** One package whose installed version a patch changed, as dpkg reported it before and after. */
export interface PackageChange {
  readonly package: string;
  /** The version before, or null: it was not installed. */
  readonly from: string | null;
  /** The version after, or null: it is no longer installed (removed, or left unconfigured). */
  readonly to: string | null;
}

/**
 * The last patch a real host ran on an instance (engines/real/apt-patch.ts), as the host's record
 * of the instance keeps it.
 */
export interface PatchRecord {
  readonly generation: number;
  /** `unchanged`: everything asked for was installed already. */
  readonly outcome: 'patched' | 'unchanged' | 'failed';
  /** What dpkg reports changed, the packages asked for and any dependency apt brought in. */
  readonly changed: readonly PackageChange[];
  /** The instance's root asks for a reboot (`/var/run/reboot-required`, Debian's convention). */
  readonly rebootRequired: boolean;
  /** A failure as one line: what failed where, with the tail of apt's and dpkg's own output. */
  readonly error?: string;
  /** failed: the instance was put back as it was before the patch, from its snapshot. */
  readonly rolledBack?: boolean;
}

/**
 * An instance's last patch as the state keeps it (state/patch-state.ts), from its host's
 * `lastPatch`: what the patch audit's `pending-reboot` and `failed` come from.
 */
export interface PatchStatus {
  readonly instance: string;
  readonly generation: number;
  readonly outcome: PatchRecord['outcome'];
  /** The packages the patch changed, or (failed) was asked to raise. */
  readonly packages: readonly string[];
  readonly rebootRequired: boolean;
  readonly rolledBack?: boolean;
  readonly error?: string;
  /** When it was recorded, epoch ms. */
  readonly at: number;
}

/** The state's PatchStatus of a host's last patch (`asked`: the packages the job asked to raise). */
export function patchStatusOf(
  instance: string,
  record: PatchRecord,
  asked: readonly string[],
  at: number,
): PatchStatus {
  return {
    instance,
    generation: record.generation,
    outcome: record.outcome,
    packages:
      record.outcome === 'failed' ? [...asked].sort() : record.changed.map((c) => c.package).sort(),
    rebootRequired: record.rebootRequired,
    ...(record.rolledBack ? { rolledBack: true } : {}),
    ...(record.error === undefined ? {} : { error: record.error }),
    at,
  };
}

/**
 * An instance as its host reports it. (Hosts' records written before vfleet said `instance`
 * everywhere call it `name`; the engines read both.)
 */
export interface ReportedInstance {
  readonly instance: string;
  readonly group: string;
  readonly generation: number;
  readonly status: Exclude<InstanceStatus, 'failed'>;
  readonly image: string;
  readonly resources: Resources;
  readonly packages: PackageVersions;
  /** Real engines: how the host sees the instance right now (absent for the embedded engine). */
  readonly runtime?: InstanceRuntime;
  /** Real engines: the last patch the host ran on it, if any. */
  readonly lastPatch?: PatchRecord;
}

/**
 * The record of an instance its host runs and the state did not know (refresh adopts it): no
 * failover host yet — the next plan gives it one.
 */
export function recordedFromReported(host: string, reported: ReportedInstance): RecordedInstance {
  return {
    instance: reported.instance,
    group: reported.group,
    host,
    generation: reported.generation,
    status: reported.status,
    image: reported.image,
    resources: reported.resources,
    failoverHost: null,
    packages: { ...reported.packages },
  };
}

/**
 * The record a job writes once its host reports the instance: at the job's generation, with the
 * failover host its plan gave it.
 */
export function recordedAfterAction(
  host: string,
  reported: ReportedInstance,
  action: {
    readonly group: string;
    readonly generation: number;
    readonly failoverHost: string | null;
    readonly homeHost?: string;
  },
): RecordedInstance {
  const { packages, ...fields } = recordedFromReported(host, reported);
  // `packages` stays the last key (state/fleet-state.ts reads records fastest that way).
  return {
    ...fields,
    group: action.group,
    generation: action.generation,
    failoverHost: action.failoverHost,
    ...(action.homeHost !== undefined && action.homeHost !== host
      ? { homeHost: action.homeHost }
      : {}),
    packages,
  };
}

/** An adopted record as a plan that will not write it sees it: packages not yet reported. */
export function observedFromRecorded({
  packages: _,
  ...observed
}: RecordedInstance): ObservedInstance {
  return observed;
}
