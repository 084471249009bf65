// The leader's view of host liveness: for every host, when it last saw the host's lease change
// (`seq` grew), on its own clock — never the host's `at`, so clock skew between the controller and
// the hosts cannot make a host look fresh or stale. A controller that has just become leader has
// seen nothing yet: every host's age starts at zero then (a full ttl of grace, as Nomad resets
// its heartbeat timers on a leader election). Pure: the caller brings the clock and the leases.
import {
  type HostCondition,
  type HostHealth,
  healthOf,
  type LivenessPolicy,
  mayRestartElsewhere,
} from '../model/host-health.js';

export interface HostLiveness {
  readonly health: HostHealth;
  /** ms since the lease last changed, as this controller saw it. */
  readonly leaseAgeMs: number;
  /** Since when (controller clock) the host has been in this health. */
  readonly since: number;
  readonly restartable: boolean;
}

export interface LivenessChange {
  readonly host: string;
  readonly from: HostHealth | null;
  readonly to: HostHealth;
  readonly leaseAgeMs: number;
}

export interface HostFacts extends HostCondition {
  readonly name: string;
  readonly selfFences: boolean;
}

export class LivenessTracker {
  private readonly seen = new Map<string, { seq: number; at: number }>();
  private readonly current = new Map<string, HostLiveness>();

  constructor(private readonly policy: LivenessPolicy) {}

  /** Forgets what was seen: a controller that has just (again) become leader starts afresh. */
  reset(): void {
    this.seen.clear();
    this.current.clear();
  }

  /**
   * Judges every host at `nowMs` from the leases read now (host → seq); the changes of health
   * since the last call.
   */
  observe(
    nowMs: number,
    hosts: readonly HostFacts[],
    leases: ReadonlyMap<string, number>,
  ): LivenessChange[] {
    const changes: LivenessChange[] = [];
    for (const host of hosts) {
      const seq = leases.get(host.name) ?? -1;
      const before = this.seen.get(host.name);
      if (!before || before.seq !== seq) this.seen.set(host.name, { seq, at: nowMs });
      const age = nowMs - (this.seen.get(host.name)?.at ?? nowMs);
      const health = healthOf(age, this.policy, host);
      const previous = this.current.get(host.name);
      const restartable = mayRestartElsewhere(age, this.policy, host);
      this.current.set(host.name, {
        health,
        leaseAgeMs: age,
        since: previous && previous.health === health ? previous.since : nowMs,
        restartable,
      });
      if (!previous || previous.health !== health) {
        changes.push({
          host: host.name,
          from: previous?.health ?? null,
          to: health,
          leaseAgeMs: age,
        });
      }
    }
    return changes;
  }

  get(host: string): HostLiveness | undefined {
    return this.current.get(host);
  }

  all(): ReadonlyMap<string, HostLiveness> {
    return this.current;
  }
}
