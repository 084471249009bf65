// The failover audit: does every failure scenario still work? Checked from scratch, not taken
// from the scheduler's word: for each failure domain, the protected instances it holds are moved
// onto their failover hosts, and each target must have the room (allocatable capacity minus what
// already runs there). A host's reserve is the most any one scenario lands on it.
import type { Fleet, Resources } from '../model/fleet.js';
import { failureDomainOf } from '../model/fleet.js';
import { type Amounts, allocatable, demandOf } from '../scheduler/capacity.js';
import type { AuditInput } from './audit-input.js';

export type ProtectionStatus =
  | 'covered'
  | 'no-failover-host'
  | 'unknown-host'
  | 'same-domain'
  | 'over-capacity';

export interface ProtectedInstance {
  readonly instance: string;
  readonly group: string;
  readonly host: string;
  readonly domain: string;
  readonly failoverHost: string | null;
  readonly failoverDomain: string | null;
  readonly status: ProtectionStatus;
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
}

const zero = (): Amounts => ({ cpu: 0, memory: 0, disk: 0 });
const add = (a: Amounts, b: Amounts) => {
  a.cpu += b.cpu;
  a.memory += b.memory;
  a.disk += b.disk;
};
const asResources = (a: Amounts): Resources => ({
  vcpus: a.cpu / 1000,
  memoryMiB: a.memory,
  diskGiB: a.disk,
});

export function failoverAudit(input: AuditInput): FailoverAudit {
  const fleet: Fleet = input.fleet;
  const hosts = new Map(fleet.hosts.map((h) => [h.name, h]));
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const domainOf = (host: string) => {
    const h = hosts.get(host);
    return h ? failureDomainOf(fleet, h) : '';
  };
  const used = new Map(fleet.hosts.map((h) => [h.name, zero()]));
  for (const i of input.instances) {
    const u = used.get(i.host);
    if (u) add(u, demandOf(i, images.get(i.image)));
  }
  const free = new Map(
    fleet.hosts.map((h) => {
      const a = allocatable(h);
      const u = used.get(h.name) ?? zero();
      return [h.name, { cpu: a.cpu - u.cpu, memory: a.memory - u.memory, disk: a.disk - u.disk }];
    }),
  );
  const tolerate = fleet.failover.tolerate;
  const protectedOnes =
    tolerate === 0 ? [] : input.instances.filter((i) => groups.get(i.group)?.failover === true);

  // Static checks first; capacity per scenario after.
  const status = new Map<string, ProtectionStatus>();
  for (const i of protectedOnes) {
    const target = i.failoverHost;
    status.set(
      i.instance,
      target === null
        ? 'no-failover-host'
        : !hosts.has(target)
          ? 'unknown-host'
          : domainOf(target) === domainOf(i.host)
            ? 'same-domain'
            : 'covered',
    );
  }
  const domains = [...new Set(fleet.hosts.map((h) => failureDomainOf(fleet, h)))].sort();
  const reserved = new Map(fleet.hosts.map((h) => [h.name, zero()]));
  const scenarios: Scenario[] = [];
  for (const d of domains) {
    const inDomain = protectedOnes.filter((i) => domainOf(i.host) === d);
    const landing = new Map<string, Amounts>();
    const landers = new Map<string, string[]>();
    for (const i of inDomain) {
      if (status.get(i.instance) !== 'covered' || i.failoverHost === null) continue;
      const l = landing.get(i.failoverHost) ?? zero();
      add(l, demandOf(i, images.get(i.image)));
      landing.set(i.failoverHost, l);
      landers.set(i.failoverHost, [...(landers.get(i.failoverHost) ?? []), i.instance]);
    }
    const overloads: Overload[] = [];
    for (const [target, l] of [...landing].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const f = free.get(target) ?? zero();
      const r = reserved.get(target) ?? zero();
      r.cpu = Math.max(r.cpu, l.cpu);
      r.memory = Math.max(r.memory, l.memory);
      r.disk = Math.max(r.disk, l.disk);
      const short: Overload[] = [];
      if (l.cpu > f.cpu)
        short.push({ host: target, resource: 'vcpus', needed: l.cpu / 1000, free: f.cpu / 1000 });
      if (l.memory > f.memory)
        short.push({ host: target, resource: 'memoryMiB', needed: l.memory, free: f.memory });
      if (l.disk > f.disk)
        short.push({ host: target, resource: 'diskGiB', needed: l.disk, free: f.disk });
      if (short.length > 0) {
        overloads.push(...short);
        for (const name of landers.get(target) ?? []) status.set(name, 'over-capacity');
      }
    }
    const covered = inDomain.filter((i) => status.get(i.instance) === 'covered').length;
    scenarios.push({
      domain: d,
      hosts: fleet.hosts.filter((h) => failureDomainOf(fleet, h) === d).map((h) => h.name),
      protected: inDomain.length,
      covered,
      status: covered === inDomain.length ? 'covered' : 'not-covered',
      overloads,
    });
  }
  const instances = protectedOnes.map(
    (i): ProtectedInstance => ({
      instance: i.instance,
      group: i.group,
      host: i.host,
      domain: domainOf(i.host),
      failoverHost: i.failoverHost,
      failoverDomain:
        i.failoverHost !== null && hosts.has(i.failoverHost) ? domainOf(i.failoverHost) : null,
      status: status.get(i.instance) ?? 'no-failover-host',
    }),
  );
  return {
    tolerate,
    domain: fleet.failover.domain,
    protected: instances.length,
    covered: instances.filter((i) => i.status === 'covered').length,
    instances,
    scenarios: tolerate === 0 ? [] : scenarios,
    reserves: fleet.hosts.map((h) => ({
      host: h.name,
      domain: failureDomainOf(fleet, h),
      reserved: asResources(reserved.get(h.name) ?? zero()),
      free: asResources(free.get(h.name) ?? zero()),
    })),
  };
}
