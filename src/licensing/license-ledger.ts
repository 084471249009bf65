// What a placement uses of each license pool, kept up to date as instances are placed, so the
// scheduler can ask "what would this placement add?" in constant time and never exceed an
// entitlement. Host metrics count a host when it runs a licensed instance, is assigned the pool
// in the spec, or (coverFailover) is the failover target of a licensed instance; stacked rights
// (instancesPerUnit) count the most instances the host could hold in any one failure scenario.
import type { Host, LicensePool, Resources } from '../model/fleet.js';
import { hostUnits, instanceUnits, isHostMetric } from './license-units.js';

interface HostMetricState {
  readonly primary: Int32Array;
  /** Most failover instances of this pool that land on the host in any one scenario. */
  readonly failoverMax: Int32Array;
  /** Per host: scenario → failover instances of this pool landing there. */
  readonly failoverByScenario: Array<Map<number, number> | undefined>;
  readonly counted: Uint8Array;
  readonly assigned: Uint8Array;
  /** Counted hosts, in the order they became counted. */
  readonly countedHosts: number[];
}

export class LicenseLedger {
  readonly pools: readonly LicensePool[];
  private readonly hosts: readonly Host[];
  private readonly usedUnits: Float64Array;
  private readonly hostState: Array<HostMetricState | undefined>;

  constructor(pools: readonly LicensePool[], hosts: readonly Host[]) {
    this.pools = pools;
    this.hosts = hosts;
    this.usedUnits = new Float64Array(pools.length);
    const poolIndex = new Map(pools.map((p, i) => [p.name, i]));
    this.hostState = pools.map((pool) =>
      isHostMetric(pool)
        ? {
            primary: new Int32Array(hosts.length),
            failoverMax: new Int32Array(hosts.length),
            failoverByScenario: new Array(hosts.length),
            counted: new Uint8Array(hosts.length),
            assigned: new Uint8Array(hosts.length),
            countedHosts: [],
          }
        : undefined,
    );
    hosts.forEach((host, h) => {
      for (const name of host.licenses) {
        const p = poolIndex.get(name);
        const state = p === undefined ? undefined : this.hostState[p];
        if (p === undefined || !state) continue;
        state.assigned[h] = 1;
        this.count(p, state, h);
      }
    });
  }

  used(pool: number): number {
    return this.usedUnits[pool] as number;
  }

  /** Whether `units` more fit within the pool's entitlement. */
  affordable(pool: number, units: number): boolean {
    return (
      (this.usedUnits[pool] as number) + units <= (this.pools[pool] as LicensePool).entitlement
    );
  }

  isCounted(pool: number, host: number): boolean {
    return this.hostState[pool]?.counted[host] === 1;
  }

  countedHosts(pool: number): readonly number[] {
    return this.hostState[pool]?.countedHosts ?? [];
  }

  /** Names of the host-metric pools that count `host`. */
  poolsCounting(host: number): string[] {
    const names: string[] = [];
    this.hostState.forEach((state, p) => {
      if (state?.counted[host]) names.push((this.pools[p] as LicensePool).name);
    });
    return names;
  }

  /** Units placing one more licensed instance on `host` would add to `pool`. */
  primaryDelta(pool: number, host: number, resources: Pick<Resources, 'vcpus'>): number {
    const state = this.hostState[pool];
    const p = this.pools[pool] as LicensePool;
    if (!state) return instanceUnits(p, resources);
    const cpu = (this.hosts[host] as Host).cpu;
    const n = (state.primary[host] as number) + (state.failoverMax[host] as number);
    const before = state.counted[host] ? hostUnits(p, cpu, n) : 0;
    return hostUnits(p, cpu, n + 1) - before;
  }

  /** Units making `host` the failover target of one more licensed instance in `scenario` adds. */
  failoverDelta(pool: number, host: number, scenario: number): number {
    const state = this.hostState[pool];
    const p = this.pools[pool] as LicensePool;
    if (!state || !p.coverFailover) return 0;
    const cpu = (this.hosts[host] as Host).cpu;
    const landing = (state.failoverByScenario[host]?.get(scenario) ?? 0) + 1;
    const max = Math.max(state.failoverMax[host] as number, landing);
    const primary = state.primary[host] as number;
    const before = state.counted[host]
      ? hostUnits(p, cpu, primary + (state.failoverMax[host] as number))
      : 0;
    return hostUnits(p, cpu, primary + max) - before;
  }

  addPrimary(pool: number, host: number, resources: Pick<Resources, 'vcpus'>): void {
    const delta = this.primaryDelta(pool, host, resources);
    const state = this.hostState[pool];
    if (state) {
      if (!state.counted[host]) {
        state.counted[host] = 1;
        state.countedHosts.push(host);
      }
      state.primary[host] = (state.primary[host] as number) + 1;
    }
    this.usedUnits[pool] = (this.usedUnits[pool] as number) + delta;
  }

  addFailover(pool: number, host: number, scenario: number): void {
    const state = this.hostState[pool];
    const p = this.pools[pool] as LicensePool;
    if (!state || !p.coverFailover) return;
    const delta = this.failoverDelta(pool, host, scenario);
    let byScenario = state.failoverByScenario[host];
    if (!byScenario) {
      byScenario = new Map();
      state.failoverByScenario[host] = byScenario;
    }
    const landing = (byScenario.get(scenario) ?? 0) + 1;
    byScenario.set(scenario, landing);
    if (landing > (state.failoverMax[host] as number)) state.failoverMax[host] = landing;
    if (!state.counted[host]) {
      state.counted[host] = 1;
      state.countedHosts.push(host);
    }
    this.usedUnits[pool] = (this.usedUnits[pool] as number) + delta;
  }

  private count(pool: number, state: HostMetricState, host: number): void {
    if (state.counted[host]) return;
    state.counted[host] = 1;
    state.countedHosts.push(host);
    const p = this.pools[pool] as LicensePool;
    this.usedUnits[pool] =
      (this.usedUnits[pool] as number) + hostUnits(p, (this.hosts[host] as Host).cpu, 0);
  }
}
