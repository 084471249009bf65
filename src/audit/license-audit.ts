// The license audit's data: per pool what is owned, used by running instances, and needed once
// failover targets are counted too (coverFailover); per counted host why it counts; per instance
// which pools it draws on. Pure: from the fleet and a placement (planned, or rebuilt from the
// observed state). Renderers (text, md, json, csv, html, junit) come on top.
import { LicenseLedger } from '../licensing/license-ledger.js';
import { hostUnits, isHostMetric } from '../licensing/license-units.js';
import type { Fleet } from '../model/fleet.js';
import { domainNumbers } from '../model/fleet.js';
import type { AuditInput } from './audit-input.js';

export interface PoolFinding {
  readonly pool: string;
  readonly product: string | null;
  readonly metric: string;
  readonly entitlement: number;
  /** Units the running instances (and hosts the spec assigns) take. */
  readonly used: number;
  /** Units including the failover targets of coverFailover pools. */
  readonly needed: number;
  readonly available: number;
  readonly shortfall: number;
  readonly status: 'compliant' | 'shortfall';
}

export interface CountedHost {
  readonly pool: string;
  readonly host: string;
  readonly cores: number;
  readonly sockets: number;
  readonly units: number;
  readonly assigned: boolean;
  /** Licensed instances running here. */
  readonly runs: readonly string[];
  /** Licensed instances that fail over to here. */
  readonly failoverFor: readonly string[];
}

export interface LicenseAudit {
  readonly pools: readonly PoolFinding[];
  readonly hosts: readonly CountedHost[];
  readonly instances: ReadonlyArray<{
    readonly instance: string;
    readonly pools: readonly string[];
  }>;
}

export function licenseAudit(input: AuditInput): LicenseAudit {
  const fleet: Fleet = input.fleet;
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const hostIndex = new Map(fleet.hosts.map((h, i) => [h.name, i]));
  const poolIndex = new Map(fleet.licenses.map((p, i) => [p.name, i]));
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const domains = domainNumbers(fleet);
  const domainOf = (host: string) => domains.get(host) ?? -1;
  const running = new LicenseLedger(fleet.licenses, fleet.hosts);
  const withFailover = new LicenseLedger(fleet.licenses, fleet.hosts);
  const runs = new Map<string, string[]>();
  const failoverFor = new Map<string, string[]>();
  const note = (map: Map<string, string[]>, key: string, instance: string) => {
    const list = map.get(key) ?? [];
    list.push(instance);
    map.set(key, list);
  };
  const instances: Array<{ instance: string; pools: string[] }> = [];
  for (const p of input.instances) {
    // An instance whose group left the spec still runs, and still draws on its image's pools.
    const licenses = groups.get(p.group)?.licenses ?? images.get(p.image)?.licenses ?? [];
    if (licenses.length === 0) continue;
    instances.push({ instance: p.instance, pools: [...licenses] });
    const h = hostIndex.get(p.host);
    if (h === undefined) continue;
    for (const name of licenses) {
      const pool = poolIndex.get(name);
      if (pool === undefined) continue;
      running.addPrimary(pool, h, p.resources);
      withFailover.addPrimary(pool, h, p.resources);
      note(runs, `${name}\u0000${p.host}`, p.instance);
      const t = p.failoverHost === null ? undefined : hostIndex.get(p.failoverHost);
      if (t !== undefined && fleet.licenses[pool]?.coverFailover) {
        withFailover.addFailover(pool, t, domainOf(p.host));
        note(failoverFor, `${name}\u0000${p.failoverHost}`, p.instance);
      }
    }
  }
  const pools = fleet.licenses.map((pool, i): PoolFinding => {
    const used = running.used(i);
    const needed = withFailover.used(i);
    const shortfall = Math.max(0, needed - pool.entitlement);
    return {
      pool: pool.name,
      product: pool.product ?? null,
      metric: pool.metric,
      entitlement: pool.entitlement,
      used,
      needed,
      available: Math.max(0, pool.entitlement - needed),
      shortfall,
      status: shortfall > 0 ? 'shortfall' : 'compliant',
    };
  });
  const where = new Map(input.instances.map((p) => [p.instance, p.host]));
  const hosts: CountedHost[] = [];
  fleet.licenses.forEach((pool, i) => {
    if (!isHostMetric(pool)) return;
    for (const h of withFailover.countedHosts(i)) {
      const host = fleet.hosts[h];
      if (!host) continue;
      const key = `${pool.name}\u0000${host.name}`;
      const here = runs.get(key) ?? [];
      const incoming = failoverFor.get(key) ?? [];
      hosts.push({
        pool: pool.name,
        host: host.name,
        cores: host.cpu.sockets * host.cpu.coresPerSocket,
        sockets: host.cpu.sockets,
        units: hostUnits(pool, host.cpu, here.length + worstScenario(incoming, where, domainOf)),
        assigned: host.licenses.includes(pool.name),
        runs: here,
        failoverFor: incoming,
      });
    }
  });
  return { pools, hosts, instances };
}

/** The most of `incoming` that one failure scenario lands on a host. */
function worstScenario(
  incoming: readonly string[],
  where: ReadonlyMap<string, string>,
  domainOf: (host: string) => number,
): number {
  if (incoming.length === 0) return 0;
  const perDomain = new Map<number, number>();
  for (const instance of incoming) {
    const d = domainOf(where.get(instance) ?? '');
    perDomain.set(d, (perDomain.get(d) ?? 0) + 1);
  }
  return Math.max(...perDomain.values());
}
