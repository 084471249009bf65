// The feasibility checks, each a small named object that returns a reason instead of throwing
// (habit 3, docs/architecture.md). Static checks depend only on the spec and are evaluated once per class of
// identical instances; dynamic checks depend on what has been placed so far.
// The order below is the order reasons are reported in: the first check that fails names the
// host's reason, so cheap, certain checks come before the ones that depend on the others.
import type { Host, Image, InstanceGroup } from '../model/fleet.js';

export type Verdict = { ok: true } | { ok: false; reason: string };
export const OK: Verdict = { ok: true };
export const no = (reason: string): Verdict => ({ ok: false, reason });

export interface StaticCheck {
  readonly name: string;
  check(host: Host, group: InstanceGroup, image: Image): Verdict;
}

/** A host being drained takes nothing: what it runs moves off, nothing new lands. */
export const notDraining: StaticCheck = {
  name: 'not-draining',
  check: (host) => (host.drain ? no('host-draining') : OK),
};

/** The host runs this kind of instance at all (QEMU for VMs, namespaces for containers). */
export const runsKind: StaticCheck = {
  name: 'runs-kind',
  check: (host, _group, image) =>
    host.runs.includes(image.kind) ? OK : no(`runs-no-${image.kind}`),
};

/**
 * A container shares the host's kernel: family, release and arch must match. A VM brings its
 * own kernel; only the arch must match, unless the image allows emulation (TCG).
 */
export const osCompatible: StaticCheck = {
  name: 'os-compatible',
  check: (host, _group, image) => {
    if (image.kind === 'container') {
      if (host.os.arch !== image.os.arch) return no('arch-mismatch');
      if (host.os.family !== image.os.family || host.os.release !== image.os.release) {
        return no('os-mismatch');
      }
      return OK;
    }
    return host.os.arch === image.os.arch || image.allowEmulation ? OK : no('arch-mismatch');
  },
};

export const requiredLabels: StaticCheck = {
  name: 'required-labels',
  check: (host, group) => {
    for (const [key, value] of Object.entries(group.placement.requireLabels)) {
      if (host.labels[key] !== value) return no('missing-labels');
    }
    return OK;
  },
};

/** A group spread over a label can only use hosts that carry it. */
export const carriesSpreadLabel: StaticCheck = {
  name: 'spread-label',
  check: (host, group) =>
    group.placement.spread === undefined || host.labels[group.placement.spread] !== undefined
      ? OK
      : no('no-spread-label'),
};

/** The static stage, in order. */
export const STATIC_CHECKS: readonly StaticCheck[] = [
  notDraining,
  runsKind,
  osCompatible,
  requiredLabels,
  carriesSpreadLabel,
];

/**
 * The dynamic stage's reasons, in the order the scheduler evaluates them (schedule.ts): capacity
 * first (the common reason, and the cheapest), then anti-affinity, spread skew, licenses, and
 * last failover, whose check looks for a standby target and so costs the most.
 */
export const DYNAMIC_CHECK_NAMES = [
  'capacity',
  'anti-affinity',
  'spread-skew',
  'license',
  'failover-capacity',
] as const;
