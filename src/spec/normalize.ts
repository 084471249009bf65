// A valid FleetDocument → the Fleet model: defaults applied (the same defaults the schema
// declares; test/schema-defaults.test.ts holds them together), pools of image and group merged.

import type {
  Fleet,
  Host,
  Image,
  InstanceGroup,
  LicensePool,
  PatchBaseline,
  PatchWindow,
  ReplicationPolicy,
} from '../model/fleet.js';
import { HOST_DOMAIN } from '../model/fleet.js';
import type { FleetDocument } from '../model/fleet-spec.generated.js';
import { durationMs } from './duration.js';

export const DEFAULTS = {
  failoverTolerate: 1,
  failoverDomain: HOST_DOMAIN,
  engine: 'embedded',
  sshPort: 22,
  sshUser: 'root',
  dataDir: '/var/lib/vfleet',
  command: ['/sbin/init'] as readonly string[],
  threadsPerCore: 1,
  overcommitCpu: 1,
  overcommitMemory: 1,
  allowEmulation: false,
  coverFailover: false,
  replicas: 1,
  diskGiB: 0,
  strategy: 'binpack',
  groupFailover: false,
  replicationInterval: '60s',
  replicationMaxRpo: '5m',
  maxUnavailable: 1,
  onFailure: 'stop',
  windowTimezone: 'UTC',
} as const;

export function normalizeFleet(doc: FleetDocument): Fleet {
  const spec = doc.spec;
  const imageLicenses = new Map((spec.images ?? []).map((i) => [i.name, i.licenses ?? []]));
  const hosts: Host[] = spec.hosts.map((h) => {
    const engine = h.engine ?? DEFAULTS.engine;
    return {
      name: h.name,
      engine,
      ...(engine === 'ssh'
        ? {
            ssh: {
              address: h.address as string,
              port: h.port ?? DEFAULTS.sshPort,
              user: h.user ?? DEFAULTS.sshUser,
              hostKey: h.hostKey as string,
              ...(h.identityFile === undefined ? {} : { identityFile: h.identityFile }),
            },
          }
        : {}),
      dataDir: h.dataDir ?? DEFAULTS.dataDir,
      labels: { ...h.labels },
      cpu: {
        sockets: h.cpu.sockets,
        coresPerSocket: h.cpu.coresPerSocket,
        threadsPerCore: h.cpu.threadsPerCore ?? DEFAULTS.threadsPerCore,
      },
      memoryMiB: h.memoryMiB,
      diskGiB: h.diskGiB,
      os: { ...h.os },
      runs: [...h.runs],
      drain: h.drain ?? false,
      overcommit: {
        cpu: h.overcommit?.cpu ?? DEFAULTS.overcommitCpu,
        memory: h.overcommit?.memory ?? DEFAULTS.overcommitMemory,
      },
      licenses: [...(h.licenses ?? [])],
      patchBaseline: h.patchBaseline,
      packages: { ...h.packages },
      packagesFrom: h.packagesFrom,
    };
  });
  const images: Image[] = spec.images.map((i) => ({
    name: i.name,
    kind: i.kind,
    os: { ...i.os },
    source: i.source === undefined ? undefined : { ...i.source },
    guest:
      i.guest === undefined
        ? undefined
        : {
            user: i.guest.user ?? DEFAULTS.sshUser,
            port: i.guest.port ?? DEFAULTS.sshPort,
            hostKey: i.guest.hostKey,
            identityFile: i.guest.identityFile,
            forwards: (i.guest.forwards ?? []).map((f) => ({ port: f.port, hostPort: f.hostPort })),
          },
    command: i.command ?? DEFAULTS.command,
    allowEmulation: i.allowEmulation ?? DEFAULTS.allowEmulation,
    packages: { ...i.packages },
    packagesFrom: i.packagesFrom,
    licenses: [...(i.licenses ?? [])],
  }));
  const licenses: LicensePool[] = (spec.licenses ?? []).map((l) => ({
    name: l.name,
    product: l.product,
    metric: l.metric,
    entitlement: l.entitlement,
    minimumPerHost: l.minimumPerHost ?? 0,
    minimumPerProcessor: l.minimumPerProcessor ?? 0,
    minimumPerInstance: l.minimumPerInstance ?? 0,
    instancesPerUnit: l.instancesPerUnit,
    coverFailover: l.coverFailover ?? DEFAULTS.coverFailover,
  }));
  const patchBaselines: PatchBaseline[] = (spec.patchBaselines ?? []).map(baselineOf);
  const fleetWindow = windowOf(spec.patching?.patchWindow);
  const imageKinds = new Map((spec.images ?? []).map((i) => [i.name, i.kind]));
  const fleetReplication = replicationPolicy(spec.failover?.replication);
  const groups: InstanceGroup[] = (spec.instances ?? []).map((g) => ({
    name: g.name,
    image: g.image,
    replicas: g.replicas ?? DEFAULTS.replicas,
    resources: {
      vcpus: g.resources.vcpus,
      memoryMiB: g.resources.memoryMiB,
      diskGiB: g.resources.diskGiB ?? DEFAULTS.diskGiB,
    },
    placement: {
      strategy: g.placement?.strategy ?? DEFAULTS.strategy,
      spread: g.placement?.spread,
      requireLabels: { ...g.placement?.requireLabels },
      avoid: [...(g.placement?.avoid ?? [])],
    },
    failover: g.failover === undefined ? DEFAULTS.groupFailover : g.failover !== false,
    failoverPriority:
      typeof g.failover === 'object' ? (g.failover.priority ?? 'medium') : ('medium' as const),
    ...replicationOf(g, imageKinds.get(g.image), fleetReplication),
    patchBaseline: g.patchBaseline,
    ...(g.patch === undefined
      ? {}
      : {
          patch: {
            maxUnavailable: g.patch.maxUnavailable ?? DEFAULTS.maxUnavailable,
            onFailure: g.patch.onFailure ?? DEFAULTS.onFailure,
          },
        }),
    ...windowField(windowOf(g.patchWindow) ?? fleetWindow),
    licenses: [...new Set([...(g.licenses ?? []), ...(imageLicenses.get(g.image) ?? [])])],
    labels: { ...g.labels },
  }));
  return {
    name: doc.metadata.name,
    failover: {
      tolerate:
        spec.failover === undefined ? 0 : (spec.failover.tolerate ?? DEFAULTS.failoverTolerate),
      domain: spec.failover?.domain ?? DEFAULTS.failoverDomain,
      failback: spec.failover?.failback ?? 'manual',
      ...(fleetReplication ? { replication: fleetReplication } : {}),
    },
    hosts,
    images,
    licenses,
    patchBaselines,
    groups,
  };
}

type BaselineSpec = NonNullable<FleetDocument['spec']['patchBaselines']>[number];

/** A baseline: each entry's version as `minimum`, its flags as lists (present only when used). */
function baselineOf(b: BaselineSpec): PatchBaseline {
  const minimum: Record<string, string> = {};
  const security: string[] = [];
  const reboot: string[] = [];
  for (const [name, entry] of Object.entries(b.minimum)) {
    if (typeof entry === 'string') {
      minimum[name] = entry;
      continue;
    }
    minimum[name] = entry.version;
    if (entry.security === true) security.push(name);
    if (entry.reboot === true) reboot.push(name);
  }
  return {
    name: b.name,
    appliesTo: { ...b.appliesTo },
    minimum,
    ...(security.length > 0 ? { security } : {}),
    ...(reboot.length > 0 ? { reboot } : {}),
  };
}

type WindowSpec = { cron: string; duration: string; timezone?: string };

function windowOf(spec: WindowSpec | undefined): PatchWindow | undefined {
  if (spec === undefined) return undefined;
  return {
    cron: spec.cron,
    duration: spec.duration,
    durationMs: durationMs(spec.duration),
    timezone: spec.timezone ?? DEFAULTS.windowTimezone,
  };
}

const windowField = (w: PatchWindow | undefined): { patchWindow?: PatchWindow } =>
  w === undefined ? {} : { patchWindow: w };

type ReplicationSpec = { interval?: string; maxRpo?: string };

function replicationPolicy(spec: ReplicationSpec | undefined): ReplicationPolicy | undefined {
  if (spec === undefined) return undefined;
  return {
    intervalMs: durationMs(spec.interval ?? DEFAULTS.replicationInterval),
    maxRpoMs: durationMs(spec.maxRpo ?? DEFAULTS.replicationMaxRpo),
  };
}

/** The group's replication fields, present only where they say something. */
function replicationOf(
  g: NonNullable<FleetDocument['spec']['instances']>[number],
  kind: string | undefined,
  fleet: ReplicationPolicy | undefined,
): Pick<InstanceGroup, 'replication' | 'onMissingReplica'> {
  const replication = groupReplication(g, kind, fleet);
  const onMissing = typeof g.failover === 'object' ? g.failover.onMissingReplica : undefined;
  return {
    ...(replication ? { replication } : {}),
    ...(onMissing ? { onMissingReplica: onMissing } : {}),
  };
}

/**
 * A group's replication: only a protected group of VMs has one — its own `failover.replication`
 * (false: none), else the fleet's.
 */
function groupReplication(
  g: NonNullable<FleetDocument['spec']['instances']>[number],
  kind: string | undefined,
  fleet: ReplicationPolicy | undefined,
): ReplicationPolicy | undefined {
  if (kind !== 'vm' || g.failover === undefined || g.failover === false) return undefined;
  if (typeof g.failover !== 'object' || g.failover.replication === undefined) return fleet;
  if (g.failover.replication === false) return undefined;
  return replicationPolicy(g.failover.replication);
}
