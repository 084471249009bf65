// The failover arithmetic, in one place: what each failure scenario — the loss of one failure
// domain (a rack, or a host) — would restart on each host, and whether each host has the room.
// The scheduler fills it as it places protected instances (failover-reserve.ts); the failover
// audit (src/audit/failover-audit.ts) fills it from a placement or the observed state and reads
// it back. (test/scheduler/invariants.ts recomputes the same from the spec on its own, so that
// the property tests do not check this code with itself.)
//
// For host t and failed domain d, load(t, d) is the demand of the protected instances of d whose
// failover host is t. Scenario d works on t when used(t) + load(t, d) ≤ capacity(t), per
// resource. Only one domain fails at a time (tolerate 1), so scenarios share standby capacity:
// t's reserve is the per-resource maximum of its loads over every d.
//
// Amounts are in the scheduler's units (capacity.ts): milli-vCPUs, MiB, GiB.
import type { Amounts, HostAmounts } from './capacity.js';

/** A resource scenario d would need on t beyond what t has free. */
export interface Shortfall {
  readonly resource: keyof Amounts;
  /** What d's failure lands on t. */
  readonly needed: number;
  /** Capacity minus what runs on t. */
  readonly free: number;
}

export class FailoverScenarios {
  /** Per host: the most any one scenario lands there, per resource. */
  readonly reserveCpu: Float64Array;
  readonly reserveMem: Float64Array;
  readonly reserveDisk: Float64Array;
  private readonly capacity: HostAmounts;
  private readonly used: HostAmounts;
  /** Per host: failed domain → [cpu, memory, disk] that would land here. */
  private readonly loads: Array<Map<number, Float64Array> | undefined>;

  /**
   * Over hosts 0…n-1 with these capacities and uses, read live: the owner may go on adding to
   * `used` (the scheduler does as it places).
   */
  constructor(capacity: HostAmounts, used: HostAmounts) {
    const n = capacity.cpu.length;
    this.capacity = capacity;
    this.used = used;
    this.reserveCpu = new Float64Array(n);
    this.reserveMem = new Float64Array(n);
    this.reserveDisk = new Float64Array(n);
    this.loads = new Array(n);
  }

  /** What the failure of domain d lands on host t, as [cpu, memory, disk]; undefined if nothing. */
  loadOn(t: number, d: number): Float64Array | undefined {
    return this.loads[t]?.get(d);
  }

  /**
   * An instance of domain d with this demand restarts on t when d fails. Returns whether t's
   * reserve grew (scenario d is now t's worst in some resource).
   */
  land(t: number, d: number, demand: Amounts): boolean {
    let loads = this.loads[t];
    if (!loads) {
      loads = new Map();
      this.loads[t] = loads;
    }
    let load = loads.get(d);
    if (!load) {
      load = new Float64Array(3);
      loads.set(d, load);
    }
    load[0] = (load[0] as number) + demand.cpu;
    load[1] = (load[1] as number) + demand.memory;
    load[2] = (load[2] as number) + demand.disk;
    const grew =
      (load[0] as number) > this.reserveCpu[t]! ||
      (load[1] as number) > this.reserveMem[t]! ||
      (load[2] as number) > this.reserveDisk[t]!;
    this.reserveCpu[t] = Math.max(this.reserveCpu[t]!, load[0] as number);
    this.reserveMem[t] = Math.max(this.reserveMem[t]!, load[1] as number);
    this.reserveDisk[t] = Math.max(this.reserveDisk[t]!, load[2] as number);
    return grew;
  }

  /** Whether t can take `demand` more in scenario d: used + load(t, d) + demand ≤ capacity. */
  fits(t: number, d: number, demand: Amounts): boolean {
    const load = this.loads[t]?.get(d);
    const c = load ? (load[0] as number) : 0;
    const m = load ? (load[1] as number) : 0;
    const k = load ? (load[2] as number) : 0;
    const { capacity, used } = this;
    return (
      used.cpu[t]! + c + demand.cpu <= capacity.cpu[t]! &&
      used.memory[t]! + m + demand.memory <= capacity.memory[t]! &&
      used.disk[t]! + k + demand.disk <= capacity.disk[t]!
    );
  }

  /** The resources scenario d overloads on t (the negation of `fits` with nothing more). */
  shortfalls(t: number, d: number): Shortfall[] {
    const load = this.loads[t]?.get(d);
    if (!load) return [];
    const short: Shortfall[] = [];
    const check = (resource: keyof Amounts, needed: number, used: number, cap: number) => {
      if (used + needed > cap) short.push({ resource, needed, free: cap - used });
    };
    const { capacity, used } = this;
    check('cpu', load[0] as number, used.cpu[t]!, capacity.cpu[t]!);
    check('memory', load[1] as number, used.memory[t]!, capacity.memory[t]!);
    check('disk', load[2] as number, used.disk[t]!, capacity.disk[t]!);
    return short;
  }
}
