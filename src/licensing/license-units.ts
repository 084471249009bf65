// License metric arithmetic, vendor-true, shared by the scheduler (placement never exceeds an
// entitlement) and the audits (what a placement needs). Pure functions of plain data.
//
// The rules, as the vendors publish them:
// - host-core (Windows Server 2016+ per-core licensing): every physical core of a licensed host,
//   at least `minimumPerProcessor` (8) per processor and `minimumPerHost` (16) per host.
//   Datacenter then covers any number of instances on the host; Standard covers 2
//   (`instancesPerUnit: 2`), and each further 2 need all the cores licensed again.
// - host-socket-pair (RHEL for Virtual Datacenters): one unit per pair of sockets, rounded up.
// - host: one unit per licensed host.
// - instance: one unit per instance; instance-vcpu: one per vCPU, at least `minimumPerInstance`.
import type { Host, LicenseMetric, LicensePool, Resources } from '../model/fleet.js';

const HOST_METRICS: ReadonlySet<LicenseMetric> = new Set(['host-core', 'host-socket-pair', 'host']);

/** Whether the pool counts hosts (a host-level license) rather than instances. */
export function isHostMetric(pool: Pick<LicensePool, 'metric'>): boolean {
  return HOST_METRICS.has(pool.metric);
}

/** Units one full licensing of `host` takes under a host metric, before stacking. */
export function unitsPerHostLicensing(
  pool: Pick<LicensePool, 'metric' | 'minimumPerHost' | 'minimumPerProcessor'>,
  cpu: Host['cpu'],
): number {
  switch (pool.metric) {
    case 'host-core': {
      const perProcessor = Math.max(cpu.coresPerSocket, pool.minimumPerProcessor);
      return Math.max(cpu.sockets * perProcessor, pool.minimumPerHost);
    }
    case 'host-socket-pair':
      return Math.ceil(cpu.sockets / 2);
    case 'host':
      return 1;
    default:
      return 0;
  }
}

/**
 * How many times a host must be fully licensed to cover `instances` licensed instances on it:
 * once when the pool stacks without limit (Datacenter), ⌈instances ÷ instancesPerUnit⌉ for
 * stacked rights (Standard), and at least once for a counted host.
 */
export function licensingsNeeded(
  pool: Pick<LicensePool, 'instancesPerUnit'>,
  instances: number,
): number {
  if (pool.instancesPerUnit === undefined) return 1;
  return Math.max(1, Math.ceil(instances / pool.instancesPerUnit));
}

/** Units a counted host needs under a host metric, covering `instances` licensed instances. */
export function hostUnits(
  pool: Pick<LicensePool, 'metric' | 'minimumPerHost' | 'minimumPerProcessor' | 'instancesPerUnit'>,
  cpu: Host['cpu'],
  instances: number,
): number {
  return unitsPerHostLicensing(pool, cpu) * licensingsNeeded(pool, instances);
}

/** Units one instance needs under an instance metric (0 under a host metric). */
export function instanceUnits(
  pool: Pick<LicensePool, 'metric' | 'minimumPerInstance'>,
  resources: Pick<Resources, 'vcpus'>,
): number {
  switch (pool.metric) {
    case 'instance':
      return 1;
    case 'instance-vcpu':
      return Math.max(resources.vcpus, pool.minimumPerInstance);
    default:
      return 0;
  }
}
