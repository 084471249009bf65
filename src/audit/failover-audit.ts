// The failover audit: does every failure scenario still work? Checked from the instances, not
// taken from the scheduler's word: for each failure domain, the protected instances it holds are
// moved onto their failover hosts, and each target must have the room (allocatable capacity
// minus what already runs there). A host's reserve is the most any one scenario lands on it.
// The arithmetic is the scheduler's own (scheduler/failover-scenarios.ts), so the two cannot
// disagree on what a scenario needs; what it is filled with here is the placement or the
// observed state, whatever the scheduler thought.
import type { Fleet, Resources } from '../model/fleet.js';
import { failureDomainOf } from '../model/fleet.js';
import { rpoSeconds } from '../model/replication.js';
import { allocatableOf, demandOf, hostAmounts } from '../scheduler/capacity.js';
import { FailoverScenarios } from '../scheduler/failover-scenarios.js';
import type { AuditInput } from './audit-input.js';

export type ProtectionStatus =
  | 'covered'
  | 'no-failover-host'
  | 'unknown-host'
  | 'same-domain'
  | 'over-capacity'
  /** Its failover host is suspect, lost or fenced: it would have nowhere to go. */
  | 'failover-host-down'
  /** Its own host is suspect, lost or fenced: its failure is happening (the controller acts). */
  | 'host-down'
  /** A replicated VM whose failover host keeps no complete replica of it: it would restart without its data. */
  | 'replica-missing'
  /** A replicated VM whose replica is older than its group's maxRpo. */
  | 'rpo-exceeded';

export interface ProtectedInstance {
  readonly instance: string;
  readonly group: string;
  readonly host: string;
  readonly domain: string;
  readonly failoverHost: string | null;
  readonly failoverDomain: string | null;
  readonly status: ProtectionStatus;
  /** A replicated VM's replica (observed audits): where, as of when, how old against its objective. */
  readonly replica?: {
    readonly target: string | null;
    readonly consistentAt: number | null;
    readonly rpoSeconds: number | null;
    readonly maxRpoSeconds: number;
  };
}

export interface Overload {
  readonly host: string;
  readonly resource: 'vcpus' | 'memoryMiB' | 'diskGiB';
  readonly needed: number;
  readonly free: number;
}

export interface Scenario {
  /** The failure domain that fails (a label value, or a host name). */
  readonly domain: string;
  readonly hosts: readonly string[];
  readonly protected: number;
  readonly covered: number;
  readonly status: 'covered' | 'not-covered';
  readonly overloads: readonly Overload[];
}

export interface Reserve {
  readonly host: string;
  readonly domain: string;
  /** Per resource, the most one scenario lands here. */
  readonly reserved: Resources;
  /** Allocatable minus what runs here. */
  readonly free: Resources;
}

export interface FailoverAudit {
  readonly tolerate: number;
  readonly domain: string;
  readonly protected: number;
  readonly covered: number;
  readonly instances: readonly ProtectedInstance[];
  readonly scenarios: readonly Scenario[];
  readonly reserves: readonly Reserve[];
  /**
   * The hosts not ok now, with their health, and the failure domains they are in: the fleet is
   * running degraded, and the scenarios say what protection is left for a further failure.
   */
  readonly degraded: {
    readonly hosts: Readonly<Record<string, string>>;
    readonly domains: readonly string[];
  } | null;
}

const asResources = (cpu: number, memory: number, disk: number): Resources => ({
  vcpus: cpu / 1000,
  memoryMiB: memory,
  diskGiB: disk,
});
const RESOURCE_NAME = { cpu: 'vcpus', memory: 'memoryMiB', disk: 'diskGiB' } as const;

export function failoverAudit(input: AuditInput): FailoverAudit {
  const fleet: Fleet = input.fleet;
  const hosts = new Map(fleet.hosts.map((h) => [h.name, h]));
  const hostIndex = new Map(fleet.hosts.map((h, i) => [h.name, i]));
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const domainOf = (host: string) => {
    const h = hosts.get(host);
    return h ? failureDomainOf(fleet, h) : '';
  };
  const capacity = allocatableOf(fleet.hosts);
  const used = hostAmounts(fleet.hosts.length);
  for (const i of input.instances) {
    const h = hostIndex.get(i.host);
    if (h === undefined) continue;
    const d = demandOf(i, images.get(i.image));
    used.cpu[h] = (used.cpu[h] as number) + d.cpu;
    used.memory[h] = (used.memory[h] as number) + d.memory;
    used.disk[h] = (used.disk[h] as number) + d.disk;
  }
  const tolerate = fleet.failover.tolerate;
  const protectedOnes =
    tolerate === 0 ? [] : input.instances.filter((i) => groups.get(i.group)?.failover === true);

  // Static checks first; capacity per scenario after.
  const status = new Map<string, ProtectionStatus>();
  const notOk = input.hostsNotOk ?? new Map<string, string>();
  for (const i of protectedOnes) {
    const target = i.failoverHost;
    status.set(
      i.instance,
      notOk.has(i.host)
        ? 'host-down'
        : target === null
          ? 'no-failover-host'
          : !hosts.has(target)
            ? 'unknown-host'
            : domainOf(target) === domainOf(i.host)
              ? 'same-domain'
              : notOk.has(target)
                ? 'failover-host-down'
                : 'covered',
    );
  }
  const domains = [...new Set(fleet.hosts.map((h) => failureDomainOf(fleet, h)))].sort();
  // The scheduler's own arithmetic (scheduler/failover-scenarios.ts), filled from the instances.
  const scenarios = new FailoverScenarios(capacity, used);
  const results: Scenario[] = [];
  domains.forEach((d, dn) => {
    const inDomain = protectedOnes.filter((i) => domainOf(i.host) === d);
    const landers = new Map<string, string[]>();
    for (const i of inDomain) {
      if (status.get(i.instance) !== 'covered' || i.failoverHost === null) continue;
      scenarios.land(hostIndex.get(i.failoverHost) as number, dn, demandOf(i, images.get(i.image)));
      landers.set(i.failoverHost, [...(landers.get(i.failoverHost) ?? []), i.instance]);
    }
    const overloads: Overload[] = [];
    for (const target of [...landers.keys()].sort()) {
      const short = scenarios.shortfalls(hostIndex.get(target) as number, dn);
      for (const { resource, needed, free } of short) {
        const scale = resource === 'cpu' ? 1000 : 1;
        overloads.push({
          host: target,
          resource: RESOURCE_NAME[resource],
          needed: needed / scale,
          free: free / scale,
        });
      }
      if (short.length > 0) {
        for (const name of landers.get(target) ?? []) status.set(name, 'over-capacity');
      }
    }
    const covered = inDomain.filter((i) => status.get(i.instance) === 'covered').length;
    results.push({
      domain: d,
      hosts: fleet.hosts.filter((h) => failureDomainOf(fleet, h) === d).map((h) => h.name),
      protected: inDomain.length,
      covered,
      status: covered === inDomain.length ? 'covered' : 'not-covered',
      overloads,
    });
  });
  // Data protection after capacity: a replicated VM covered by room but not by a fresh replica
  // on its failover host would come back without (some of) its data.
  const replicas = new Map<string, NonNullable<ProtectedInstance['replica']>>();
  const recorded = input.replication;
  for (const i of recorded ? protectedOnes : []) {
    const policy = groups.get(i.group)?.replication;
    if (!policy || !recorded) continue;
    const r = recorded.statuses.get(i.instance);
    const usable = r !== undefined && r.consistentAt !== null && r.target === i.failoverHost;
    const rpo = usable ? rpoSeconds(r, recorded.nowMs) : null;
    replicas.set(i.instance, {
      target: r?.target ?? null,
      consistentAt: usable ? r.consistentAt : null,
      rpoSeconds: rpo,
      maxRpoSeconds: Math.round(policy.maxRpoMs / 1000),
    });
    if (status.get(i.instance) !== 'covered') continue;
    if (!usable) status.set(i.instance, 'replica-missing');
    else if ((rpo as number) * 1000 > policy.maxRpoMs) status.set(i.instance, 'rpo-exceeded');
  }
  const instances = protectedOnes.map((i): ProtectedInstance => {
    const replica = replicas.get(i.instance);
    return {
      instance: i.instance,
      group: i.group,
      host: i.host,
      domain: domainOf(i.host),
      failoverHost: i.failoverHost,
      failoverDomain:
        i.failoverHost !== null && hosts.has(i.failoverHost) ? domainOf(i.failoverHost) : null,
      status: status.get(i.instance) ?? 'no-failover-host',
      ...(replica ? { replica } : {}),
    };
  });
  const downDomains = [
    ...new Set([...notOk.keys()].filter((h) => hosts.has(h)).map(domainOf)),
  ].sort();
  return {
    tolerate,
    domain: fleet.failover.domain,
    degraded: notOk.size === 0 ? null : { hosts: Object.fromEntries(notOk), domains: downDomains },
    protected: instances.length,
    covered: instances.filter((i) => i.status === 'covered').length,
    instances,
    scenarios: tolerate === 0 ? [] : results,
    reserves: fleet.hosts.map((h, i) => ({
      host: h.name,
      domain: failureDomainOf(fleet, h),
      reserved: asResources(
        scenarios.reserveCpu[i] as number,
        scenarios.reserveMem[i] as number,
        scenarios.reserveDisk[i] as number,
      ),
      free: asResources(
        (capacity.cpu[i] as number) - (used.cpu[i] as number),
        (capacity.memory[i] as number) - (used.memory[i] as number),
        (capacity.disk[i] as number) - (used.disk[i] as number),
      ),
    })),
  };
}
