// Host liveness, as the controller judges it (docs/controller.md): the rules, pure, shared by the
// controller, status, plan and the emulated hosts' watchdog, so that all of them agree on when a
// host is suspect, when it is lost, when its instances may run elsewhere, and when a host that
// cannot reach the control plane must stop its own instances.
//
// Time here is always an age measured on ONE clock: the controller measures a lease's age from
// the moment *it* saw the lease last change (never by comparing its clock with the host's), and a
// host's watchdog measures the time since *its* last successful renewal on its own clock. Clock
// skew between the two cannot make either act early (Nomad's heartbeat timers, Proxmox's
// watchdog work the same way).
//
//   age ≤ ttl                    ok
//   ttl < age ≤ ttl + grace      suspect   (a missed renewal or two: nothing moves yet)
//   age > ttl + grace            lost      (the host's instances are `unknown`)
//   age ≥ ttl + 2 × ttl          lost, and its instances may restart elsewhere: its watchdog
//                                stopped them by `ttl` on its own clock, so a restart now
//                                cannot make a second running copy (Proxmox restarts only after
//                                the dead node's lock is acquired, ~2 lock timeouts)
//   `vfleet host fenced`         fenced    (an operator asserts the host is off: at once)
//   `drain: true` in the spec    draining  (being retired; its instances move off as usual)

/** The health a host is in: the `health` of `vfleet status --json`'s hosts. */
export const HOST_HEALTHS = ['ok', 'suspect', 'lost', 'fenced', 'draining'] as const;
export type HostHealth = (typeof HOST_HEALTHS)[number];

export interface LivenessPolicy {
  /** How long a lease lives without renewal (`--lease-ttl`, default 10 s). */
  readonly ttlMs: number;
  /**
   * After the ttl, how long a host is only suspect before it is lost (default 4 s: the leader
   * ticks at most every second, so a host is declared lost within ttl + 5 s of its last renewal).
   */
  readonly graceMs: number;
}

export const DEFAULT_LIVENESS: LivenessPolicy = { ttlMs: 10_000, graceMs: 4_000 };

/** What is known of a host besides its lease's age. */
export interface HostCondition {
  /** An operator asserted the host is off (`vfleet host fenced`). */
  readonly fenced: boolean;
  /** The spec retires it (`drain: true`). */
  readonly draining: boolean;
}

/** A host's health from its lease's age (ms since the lease last changed; Infinity: never seen). */
export function healthOf(ageMs: number, policy: LivenessPolicy, host: HostCondition): HostHealth {
  if (host.fenced) return 'fenced';
  if (ageMs > policy.ttlMs + policy.graceMs) return 'lost';
  if (ageMs > policy.ttlMs) return 'suspect';
  return host.draining ? 'draining' : 'ok';
}

/** The lease age after which a lost host's watchdog has certainly stopped its instances. */
export function restartAfterMs(policy: LivenessPolicy): number {
  return 3 * policy.ttlMs;
}

/**
 * Whether a host's instances may now run elsewhere: the operator fenced it, or its lease has been
 * expired for two ttls and its engine stops its own instances when cut off (a host without such
 * a watchdog waits for `vfleet host fenced`: restarting its instances could run them twice).
 */
export function mayRestartElsewhere(
  ageMs: number,
  policy: LivenessPolicy,
  host: HostCondition & { readonly selfFences: boolean },
): boolean {
  if (host.fenced) return true;
  return host.selfFences && ageMs >= restartAfterMs(policy);
}

/** A host's watchdog: stop every instance once no renewal has succeeded for a ttl. */
export function watchdogFires(sinceLastRenewalMs: number, policy: LivenessPolicy): boolean {
  return sinceLastRenewalMs >= policy.ttlMs;
}

/** Whether instances on a host in this health are of unknown state (never shown `running`). */
export function instancesUnknown(health: HostHealth): boolean {
  return health === 'suspect' || health === 'lost' || health === 'fenced';
}
