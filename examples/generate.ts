// A seeded generator of large fleet specs, for benchmarks (validate, schedule, plan) and for
// trying vfleet on a fleet the size of a real one. Same options and seed, same document, byte for
// byte: the only randomness is the mulberry32 stream below, seeded from the options.
//
//   node dist/examples/generate.js --hosts 1000 --instances 20000 --seed 1 > /tmp/gen-20000.yaml
//
// What it builds, and why the numbers are what they are:
// - hosts h-00001… in `racks` racks (labels rack and zone), three shapes: large and medium
//   hypervisors (VMs and containers) and container-only hosts, all Debian 12 x86_64, embedded;
// - Debian 12 container images with real package inventories, a Debian 12 security baseline,
//   Windows Server 2022 (Datacenter and Standard), RHEL 9 and Ubuntu VM images;
// - five license pools, one per metric, with entitlements a good placement can stay within;
// - instance groups of about `groupSize` replicas that add up to exactly `instances`, 80/20
//   container/VM, some spread over racks, some avoiding themselves or another group, some
//   protected by failover (tolerate one rack);
// - resources sized so that demand is about 65% of the fleet's capacity in its tightest
//   dimension (memory, vCPUs or disk, over all hosts and over the VM hosts alone), so that a
//   placement that also holds standby capacity for one rack exists. The 60-70% band holds from
//   about 5 to 130 instances per host; with fewer, every instance is at its largest size and the
//   fleet is emptier; with more, every instance is at its smallest and the fleet fuller.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Document, isMap, isScalar, isSeq, visit } from 'yaml';
import type {
  FleetDocument,
  Host,
  Image,
  InstanceGroup,
  InstanceKind,
  LicensePool,
  PatchBaseline,
} from '../src/model/fleet-spec.generated.js';

export interface GenerateOptions {
  readonly hosts: number;
  readonly instances: number;
  readonly seed: number;
  /** Default max(3, hosts / 200), at most `hosts`. */
  readonly racks?: number;
  /** Replicas per group, on average; default 50. 1 makes one group per instance. */
  readonly groupSize?: number;
  /** spec.failover {tolerate: 1, domain: rack} and protected groups; default true. */
  readonly failover?: boolean;
}

/** Fraction of capacity the generated demand aims at, and the band it is kept in. */
const TARGET_UTILIZATION = 0.65;
const UTILIZATION_BAND = [0.62, 0.68] as const;
const UTILIZATION_CEILING = 0.7;

// --- seeded randomness ----------------------------------------------------------------------

/** mulberry32: a tiny 32-bit PRNG, plenty for test data, and the same on every platform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** [0, 1) */
  float(): number {
    return this.next();
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    const total = choices.reduce((sum, [, w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [value, weight] of choices) {
      r -= weight;
      if (r < 0) return value;
    }
    return (choices[choices.length - 1] as readonly [T, number])[0];
  }
  shuffled<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}

// --- hosts ------------------------------------------------------------------------------------

interface HostShape {
  readonly tier: 'compute' | 'edge';
  readonly sockets: number;
  readonly coresPerSocket: number;
  readonly threadsPerCore: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly runs: Host['runs'];
  readonly overcommitCpu: number;
}

const LARGE: HostShape = {
  tier: 'compute',
  sockets: 2,
  coresPerSocket: 16,
  threadsPerCore: 2,
  memoryMiB: 512 * 1024,
  diskGiB: 8000,
  runs: ['vm', 'container'],
  overcommitCpu: 4,
};
const MEDIUM: HostShape = {
  tier: 'compute',
  sockets: 2,
  coresPerSocket: 8,
  threadsPerCore: 2,
  memoryMiB: 256 * 1024,
  diskGiB: 4000,
  runs: ['vm', 'container'],
  overcommitCpu: 4,
};
const EDGE: HostShape = {
  tier: 'edge',
  sockets: 1,
  coresPerSocket: 32,
  threadsPerCore: 2,
  memoryMiB: 256 * 1024,
  diskGiB: 2000,
  runs: ['container'],
  overcommitCpu: 2,
};
const HOST_MIX = [
  [LARGE, 5],
  [MEDIUM, 3],
  [EDGE, 2],
] as const;
const KERNELS = [
  ['6.1.0-47-amd64', 3],
  ['6.1.0-48-amd64', 1],
] as const;

interface HostDraft {
  readonly name: string;
  readonly rack: number;
  readonly shape: HostShape;
  readonly kernel: string;
  licenses: string[];
}

// --- images, pools, baseline ------------------------------------------------------------------

// Real Debian 12 (bookworm) package versions.
const DEBIAN_12_BASE = {
  'base-files': '12.4+deb12u11',
  bash: '5.2.15-2+b8',
  libc6: '2.36-9+deb12u14',
  libssl3: '3.0.19-1~deb12u2',
  openssl: '3.0.19-1~deb12u2',
  libcurl4: '7.88.1-10+deb12u14',
  libsystemd0: '252.38-1~deb12u1',
  tzdata: '2025b-0+deb12u2',
  zlib1g: '1:1.2.13.dfsg-1',
} as const;

const IMAGES: readonly Image[] = [
  {
    name: 'debian-12',
    kind: 'container',
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    source: { rootfs: 'images/debian-12-rootfs.tar.gz' },
    packages: { ...DEBIAN_12_BASE },
  },
  {
    name: 'debian-12-nginx',
    kind: 'container',
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    source: { rootfs: 'images/debian-12-nginx-rootfs.tar.gz' },
    // Built before the last OpenSSL update: below the baseline, so patch audits have findings.
    packages: {
      ...DEBIAN_12_BASE,
      libssl3: '3.0.17-1~deb12u2',
      openssl: '3.0.17-1~deb12u2',
      nginx: '1.22.1-9+deb12u9',
    },
  },
  {
    name: 'debian-12-postgres',
    kind: 'container',
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    source: { rootfs: 'images/debian-12-postgresql-15-rootfs.tar.gz' },
    packages: { ...DEBIAN_12_BASE, 'postgresql-15': '15.18-0+deb12u1' },
  },
  {
    name: 'debian-12-redis',
    kind: 'container',
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    source: { rootfs: 'images/debian-12-redis-rootfs.tar.gz' },
    packages: { ...DEBIAN_12_BASE, 'redis-server': '5:7.0.15-1~deb12u7' },
  },
  {
    name: 'windows-2022',
    kind: 'vm',
    os: { family: 'windows', release: '2022', arch: 'x86_64' },
    source: { disk: 'images/windows-server-2022-datacenter.qcow2' },
    licenses: ['windows-datacenter'],
  },
  {
    name: 'windows-2022-std',
    kind: 'vm',
    os: { family: 'windows', release: '2022', arch: 'x86_64' },
    source: { disk: 'images/windows-server-2022-standard.qcow2' },
    licenses: ['windows-standard'],
  },
  {
    name: 'rhel-9',
    kind: 'vm',
    os: { family: 'rhel', release: '9.4', arch: 'x86_64' },
    source: { disk: 'images/rhel-9.4-x86_64-kvm.qcow2' },
    licenses: ['rhel-vdc'],
  },
  {
    name: 'ubuntu-24-04',
    kind: 'vm',
    os: { family: 'ubuntu', release: '24.04', arch: 'x86_64' },
    source: { disk: 'images/ubuntu-24.04-server-cloudimg-amd64.qcow2' },
  },
];

const BASELINE: PatchBaseline = {
  name: 'debian-12-security',
  appliesTo: { family: 'debian', release: '12' },
  minimum: {
    libc6: '2.36-9+deb12u14',
    libssl3: '3.0.19-1~deb12u2',
    openssl: '3.0.19-1~deb12u2',
    libcurl4: '7.88.1-10+deb12u14',
  },
};

// --- instance groups --------------------------------------------------------------------------

interface Shape {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
}

/** Realistic sizes, each step about twice the one before; a group is one rung. */
const LADDERS: Record<InstanceKind, readonly Shape[]> = {
  container: [
    { vcpus: 1, memoryMiB: 512, diskGiB: 4 },
    { vcpus: 1, memoryMiB: 1024, diskGiB: 8 },
    { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
    { vcpus: 2, memoryMiB: 4096, diskGiB: 20 },
    { vcpus: 4, memoryMiB: 8192, diskGiB: 40 },
    { vcpus: 8, memoryMiB: 16384, diskGiB: 60 },
    { vcpus: 16, memoryMiB: 32768, diskGiB: 100 },
  ],
  vm: [
    { vcpus: 1, memoryMiB: 2048, diskGiB: 20 },
    { vcpus: 2, memoryMiB: 4096, diskGiB: 40 },
    { vcpus: 2, memoryMiB: 8192, diskGiB: 60 },
    { vcpus: 4, memoryMiB: 16384, diskGiB: 80 },
    { vcpus: 8, memoryMiB: 32768, diskGiB: 120 },
    { vcpus: 16, memoryMiB: 65536, diskGiB: 200 },
    { vcpus: 32, memoryMiB: 131072, diskGiB: 400 },
  ],
};
const TOP_RUNG = 6;

interface Role {
  readonly prefix: string;
  readonly image: string;
  readonly kind: InstanceKind;
  readonly licenses: readonly string[];
}

const CONTAINER_ROLES: readonly (readonly [Role, number])[] = [
  [{ prefix: 'web', image: 'debian-12-nginx', kind: 'container', licenses: [] }, 3],
  [{ prefix: 'api', image: 'debian-12', kind: 'container', licenses: [] }, 3],
  [{ prefix: 'worker', image: 'debian-12', kind: 'container', licenses: [] }, 2],
  [{ prefix: 'pg', image: 'debian-12-postgres', kind: 'container', licenses: [] }, 1],
  [{ prefix: 'cache', image: 'debian-12-redis', kind: 'container', licenses: [] }, 1],
];
const VM_ROLES: readonly (readonly [Role, number])[] = [
  [{ prefix: 'win', image: 'windows-2022', kind: 'vm', licenses: ['backup-agent'] }, 20],
  [
    {
      prefix: 'sql',
      image: 'windows-2022',
      kind: 'vm',
      licenses: ['sql-server', 'backup-agent'],
    },
    10,
  ],
  [{ prefix: 'branch', image: 'windows-2022-std', kind: 'vm', licenses: [] }, 10],
  [{ prefix: 'rhel', image: 'rhel-9', kind: 'vm', licenses: [] }, 20],
  [{ prefix: 'db', image: 'rhel-9', kind: 'vm', licenses: ['backup-agent'] }, 15],
  [{ prefix: 'ci', image: 'ubuntu-24-04', kind: 'vm', licenses: [] }, 25],
];

interface GroupDraft {
  readonly name: string;
  readonly role: Role;
  readonly replicas: number;
  rung: number;
  spread: boolean;
  avoid: string[];
  zone: number | undefined;
  failover: boolean;
}

interface Totals {
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
}

const zero = (): Totals => ({ memoryMiB: 0, vcpus: 0, diskGiB: 0 });

function capacityOf(hosts: readonly HostDraft[], kind?: InstanceKind): Totals {
  const total = zero();
  for (const { shape } of hosts) {
    if (kind && !shape.runs.includes(kind)) continue;
    total.memoryMiB += shape.memoryMiB;
    total.vcpus +=
      shape.sockets * shape.coresPerSocket * shape.threadsPerCore * shape.overcommitCpu;
    total.diskGiB += shape.diskGiB;
  }
  return total;
}

/** How many core units a host-core pool counts for a host: Windows Server's 8/16 minimums. */
function coreUnits(shape: HostShape): number {
  return Math.max(16, shape.sockets * Math.max(8, shape.coresPerSocket));
}

// --- the generator ----------------------------------------------------------------------------

export function generateFleetDocument(options: GenerateOptions): FleetDocument {
  const { hosts: hostCount, instances, seed } = options;
  const groupSize = options.groupSize ?? 50;
  const failover = options.failover ?? true;
  const racks = Math.min(hostCount, options.racks ?? Math.max(3, Math.round(hostCount / 200)));
  const positive = (n: number) => Number.isSafeInteger(n) && n >= 1;
  if (!positive(hostCount)) throw new RangeError(`hosts must be a whole number >= 1: ${hostCount}`);
  if (!Number.isSafeInteger(instances) || instances < 0)
    throw new RangeError(`instances must be a whole number >= 0: ${instances}`);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a whole number: ${seed}`);
  if (!positive(groupSize)) throw new RangeError(`groupSize must be >= 1: ${groupSize}`);
  if (!positive(racks)) throw new RangeError(`racks must be >= 1: ${racks}`);
  if (failover && racks < 2)
    throw new RangeError('failover needs at least 2 racks (and so 2 hosts) to fail over between');

  const random = new Random(seed);

  // Hosts: racks are contiguous runs of hosts; the first host of every rack is large, so that
  // every rack can run VMs whatever the dice say.
  const width = Math.max(5, String(hostCount).length);
  const rackWidth = Math.max(2, String(racks).length);
  const zones = Math.min(3, racks);
  const hosts: HostDraft[] = [];
  for (let i = 0; i < hostCount; i++) {
    const rack = Math.floor((i * racks) / hostCount);
    const firstOfRack = i === 0 || Math.floor(((i - 1) * racks) / hostCount) !== rack;
    hosts.push({
      name: `h-${String(i + 1).padStart(width, '0')}`,
      rack,
      shape: firstOfRack ? LARGE : random.weighted(HOST_MIX),
      kernel: random.weighted(KERNELS),
      licenses: [],
    });
  }
  const rackName = (r: number) => `r${String(r + 1).padStart(rackWidth, '0')}`;
  const zoneName = (z: number) => `z${z + 1}`;
  const zoneOf = (rack: number) => rack % zones;
  const vmHosts = hosts.filter((h) => h.shape.runs.includes('vm'));

  // Group sizes: uniform in [G/2, 3G/2] and adding up to exactly `instances`: a group that would
  // leave fewer than G/2 replicas behind takes them all.
  const sizes: number[] = [];
  const low = Math.max(1, Math.ceil(groupSize / 2));
  const high = Math.max(low, Math.floor((groupSize * 3) / 2));
  for (let left = instances; left > 0; ) {
    let size = Math.min(left, random.int(low, high));
    if (left - size > 0 && left - size < low) size = left;
    sizes.push(size);
    left -= size;
  }
  const nameWidth = Math.max(4, String(sizes.length).length);
  const groups: GroupDraft[] = sizes.map((replicas, g) => {
    const role = random.chance(0.2) ? random.weighted(VM_ROLES) : random.weighted(CONTAINER_ROLES);
    return {
      name: `${role.prefix}-${String(g + 1).padStart(nameWidth, '0')}`,
      role,
      replicas,
      rung: 0,
      spread: false,
      avoid: [],
      zone: undefined,
      failover: false,
    };
  });

  sizeGroups(groups, hosts, instances, random);
  constrainGroups(groups, { hosts, vmHosts, racks, zones, zoneOf, failover }, random);
  const licenses = licensePools(groups, hosts, vmHosts, racks, random);

  const document: FleetDocument = {
    apiVersion: 'vfleet/v1',
    kind: 'Fleet',
    metadata: {
      name: `gen-${hostCount}h-${instances}i-s${seed >>> 0}`,
      description: `Generated by examples/generate.ts: ${hostCount} hosts, ${instances} instances, seed ${seed}, ${racks} racks, groups of about ${groupSize}`,
      labels: { generator: 'vfleet-examples' },
    },
    spec: {
      ...(failover ? { failover: { tolerate: 1, domain: 'rack' } } : {}),
      hosts: hosts.map((h): Host => {
        const { shape } = h;
        return {
          name: h.name,
          engine: 'embedded',
          labels: { rack: rackName(h.rack), zone: zoneName(zoneOf(h.rack)), tier: shape.tier },
          cpu: {
            sockets: shape.sockets,
            coresPerSocket: shape.coresPerSocket,
            threadsPerCore: shape.threadsPerCore,
          },
          memoryMiB: shape.memoryMiB,
          diskGiB: shape.diskGiB,
          os: { family: 'debian', release: '12', kernel: h.kernel, arch: 'x86_64' },
          runs: [...shape.runs] as Host['runs'],
          overcommit: { cpu: shape.overcommitCpu, memory: 1 },
          ...(h.licenses.length > 0 ? { licenses: [...h.licenses] } : {}),
        };
      }) as FleetDocument['spec']['hosts'],
      images: IMAGES.map((image) => structuredClone(image)),
      licenses,
      patchBaselines: [structuredClone(BASELINE)],
      instances: groups.map((g): InstanceGroup => {
        const shape = LADDERS[g.role.kind][g.rung] as Shape;
        const placement: NonNullable<InstanceGroup['placement']> = {};
        if (g.spread) placement.spread = 'rack';
        if (g.zone !== undefined) placement.requireLabels = { zone: zoneName(g.zone) };
        if (g.avoid.length > 0) placement.avoid = [...g.avoid];
        return {
          name: g.name,
          image: g.role.image,
          replicas: g.replicas,
          resources: { ...shape },
          ...(Object.keys(placement).length > 0 ? { placement } : {}),
          ...(g.failover ? { failover: true } : {}),
          ...(g.role.kind === 'container' ? { patchBaseline: BASELINE.name } : {}),
          ...(g.role.licenses.length > 0 ? { licenses: [...g.role.licenses] } : {}),
        };
      }),
    },
  };
  return document;
}

/**
 * Picks each group's rung so that demand is about TARGET_UTILIZATION of capacity: a first guess
 * from the memory budget per instance, then single-rung steps on the binding dimension until
 * the tightest one is inside the band.
 */
function sizeGroups(
  groups: GroupDraft[],
  hosts: readonly HostDraft[],
  instances: number,
  random: Random,
): void {
  if (groups.length === 0) return;
  const capacity = { all: capacityOf(hosts), vm: capacityOf(hosts, 'vm') };
  const vmInstances = groups.reduce((n, g) => n + (g.role.kind === 'vm' ? g.replicas : 0), 0);
  const vmShare = vmInstances / instances;
  // Memory at rung r: 512 * 2^r MiB for a container, 2048 * 2^r for a VM.
  const budget = (TARGET_UTILIZATION * capacity.all.memoryMiB) / instances;
  const centre = Math.log2(budget / (512 * (1 - vmShare) + 2048 * vmShare));
  for (const g of groups) {
    const jitter = random.weighted([
      [-1, 1],
      [0, 2],
      [1, 1],
    ] as const);
    g.rung = Math.min(TOP_RUNG, Math.max(0, Math.round(centre) + jitter));
  }

  const demand = { all: zero(), vm: zero() };
  const add = (g: GroupDraft, sign: 1 | -1) => {
    const shape = LADDERS[g.role.kind][g.rung] as Shape;
    for (const totals of g.role.kind === 'vm' ? [demand.all, demand.vm] : [demand.all]) {
      totals.memoryMiB += sign * shape.memoryMiB * g.replicas;
      totals.vcpus += sign * shape.vcpus * g.replicas;
      totals.diskGiB += sign * shape.diskGiB * g.replicas;
    }
  };
  for (const g of groups) add(g, 1);
  // The tightest dimension, and whether it is one only VMs can relieve.
  const tightest = (): { utilization: number; vmOnly: boolean } => {
    let utilization = 0;
    let vmOnly = false;
    for (const scope of ['all', 'vm'] as const) {
      for (const key of ['memoryMiB', 'vcpus', 'diskGiB'] as const) {
        const u = capacity[scope][key] === 0 ? 0 : demand[scope][key] / capacity[scope][key];
        if (u > utilization) {
          utilization = u;
          vmOnly = scope === 'vm';
        }
      }
    }
    return { utilization, vmOnly };
  };

  const setRung = (g: GroupDraft, rung: number) => {
    add(g, -1);
    g.rung = rung;
    add(g, 1);
  };
  // Round-robin over the groups in a seeded order, so no group is shrunk or grown twice before
  // every other has had its turn.
  const order = random.shuffled(groups);
  let cursor = 0;
  const step = (direction: 1 | -1, eligible: (g: GroupDraft) => boolean): boolean => {
    for (let tries = 0; tries < order.length; tries++) {
      const g = order[cursor++ % order.length] as GroupDraft;
      const from = g.rung;
      if (from + direction < 0 || from + direction > TOP_RUNG || !eligible(g)) continue;
      setRung(g, from + direction);
      // Growing must keep every dimension under the ceiling; otherwise undo and try another.
      if (direction === 1 && tightest().utilization > UTILIZATION_CEILING) {
        setRung(g, from);
        continue;
      }
      return true;
    }
    return false;
  };
  for (let { utilization, vmOnly } = tightest(); utilization > UTILIZATION_BAND[1]; ) {
    if (!step(-1, (g) => !vmOnly || g.role.kind === 'vm')) break;
    ({ utilization, vmOnly } = tightest());
  }
  for (let { utilization } = tightest(); utilization < UTILIZATION_BAND[0]; ) {
    if (!step(1, () => true)) break;
    ({ utilization } = tightest());
  }
}

/**
 * Spread, anti-affinity, zone pinning and failover, each only where it cannot make the fleet
 * unplaceable: a group that avoids itself needs one host per replica (with a rack lost), and
 * two groups that avoid each other need disjoint hosts.
 */
function constrainGroups(
  groups: GroupDraft[],
  fleet: {
    hosts: readonly HostDraft[];
    vmHosts: readonly HostDraft[];
    racks: number;
    zones: number;
    zoneOf: (rack: number) => number;
    failover: boolean;
  },
  random: Random,
): void {
  const eligible = (g: GroupDraft) =>
    g.role.kind === 'vm' ? fleet.vmHosts.length : fleet.hosts.length;
  // Half the eligible hosts left when a rack is down: margin for racks of unequal size and for
  // the capacity other groups take.
  const lost = fleet.failover ? 1 / fleet.racks : 0;
  const survivors = (g: GroupDraft) => Math.floor((eligible(g) * (1 - lost)) / 2);
  const zoneMemory = Array.from({ length: fleet.zones }, () => 0);
  for (const h of fleet.hosts) {
    const zone = fleet.zoneOf(h.rack);
    zoneMemory[zone] = (zoneMemory[zone] ?? 0) + h.shape.memoryMiB;
  }

  groups.forEach((g, i) => {
    g.spread = fleet.racks > 1 && random.chance(0.3);
    if (random.chance(0.15) && g.replicas <= survivors(g)) g.avoid.push(g.name);
    if (random.chance(0.1) && i > 0) {
      const other = groups[random.int(Math.max(0, i - 20), i - 1)] as GroupDraft;
      const both = g.replicas + other.replicas;
      if (
        other.role.kind === g.role.kind &&
        both <= survivors(g) &&
        !other.avoid.includes(g.name) &&
        other.avoid.length < 4
      ) {
        g.avoid.push(other.name);
      }
    }
    // A few small container groups pinned to one zone (a third of the fleet).
    if (!g.spread && g.role.kind === 'container' && random.chance(0.05)) {
      const zone = random.int(0, fleet.zones - 1);
      const demand = (LADDERS.container[g.rung] as Shape).memoryMiB * g.replicas;
      if (demand <= 0.02 * (zoneMemory[zone] as number)) g.zone = zone;
    }
    g.failover = fleet.failover && random.chance(0.3);
  });
}

/**
 * One pool per metric. Entitlements are what a good placement needs plus headroom; a placement
 * that scatters licensed VMs over every host would run out, which is the point of having them.
 */
function licensePools(
  groups: readonly GroupDraft[],
  hosts: readonly HostDraft[],
  vmHosts: readonly HostDraft[],
  racks: number,
  random: Random,
): LicensePool[] {
  const of = (image: string) => groups.filter((g) => g.role.image === image);
  const memory = (gs: readonly GroupDraft[]) =>
    gs.reduce((n, g) => n + (LADDERS.vm[g.rung] as Shape).memoryMiB * g.replicas, 0);
  const averageVmHostMemory =
    vmHosts.reduce((n, h) => n + h.shape.memoryMiB, 0) / Math.max(1, vmHosts.length);
  // Hosts a group needs at least: one per replica if it avoids itself, one per rack if spread.
  const spanOf = (gs: readonly GroupDraft[]) =>
    gs.reduce(
      (n, g) =>
        Math.max(
          n,
          g.avoid.includes(g.name) ? g.replicas : 0,
          g.spread ? Math.min(racks, g.replicas) : 0,
        ),
      0,
    );
  // Hosts to hold these groups half full (room for failover and for everything else).
  const hostsFor = (gs: readonly GroupDraft[]) =>
    gs.length === 0
      ? 0
      : Math.min(
          vmHosts.length,
          Math.max(2, Math.ceil((2 * memory(gs)) / averageVmHostMemory), spanOf(gs) * 2),
        );

  // Windows Server Datacenter: a cluster of hosts assigned to the pool up front, one rack after
  // another so that every rack has some (spread groups and failover targets need them).
  const datacenter = of('windows-2022');
  const wanted = hostsFor(datacenter);
  const byRack = new Map<number, HostDraft[]>();
  for (const h of random.shuffled(vmHosts)) {
    const list = byRack.get(h.rack) ?? [];
    list.push(h);
    byRack.set(h.rack, list);
  }
  const rackOrder = [...byRack.keys()].sort((a, b) => a - b);
  let assigned = 0;
  for (let round = 0; assigned < wanted; round++) {
    let any = false;
    for (const rack of rackOrder) {
      const host = byRack.get(rack)?.[round];
      if (!host || assigned >= wanted) continue;
      host.licenses.push('windows-datacenter');
      assigned++;
      any = true;
    }
    if (!any) break;
  }
  const datacenterUnits = hosts
    .filter((h) => h.licenses.includes('windows-datacenter'))
    .reduce((n, h) => n + coreUnits(h.shape), 0);

  // Windows Server Standard: 2 VMs per licensing of a host; a good placement pairs them up.
  const standardVms = of('windows-2022-std').reduce((n, g) => n + g.replicas, 0);
  const standardUnits = Math.ceil(standardVms / 2) * coreUnits(LARGE);

  // RHEL for Virtual Datacenters: one unit per 2-socket host that runs RHEL.
  const rhelHosts = hostsFor(of('rhel-9'));

  // Per-vCPU and per-instance pools count the same whatever the placement.
  let sqlVcpus = 0;
  let agents = 0;
  for (const g of groups) {
    if (g.role.licenses.includes('sql-server')) {
      sqlVcpus += Math.max(4, (LADDERS.vm[g.rung] as Shape).vcpus) * g.replicas;
    }
    if (g.role.licenses.includes('backup-agent')) agents += g.replicas;
  }
  const headroom = (n: number, factor: number) => Math.ceil(n * factor);

  return [
    {
      name: 'windows-datacenter',
      product: 'Windows Server 2022 Datacenter (core licenses)',
      metric: 'host-core',
      entitlement: headroom(datacenterUnits, 1.25),
      minimumPerProcessor: 8,
      minimumPerHost: 16,
      coverFailover: true,
    },
    {
      name: 'windows-standard',
      product: 'Windows Server 2022 Standard (core licenses)',
      metric: 'host-core',
      entitlement: Math.max(32, headroom(standardUnits, 1.5)),
      minimumPerProcessor: 8,
      minimumPerHost: 16,
      instancesPerUnit: 2,
    },
    {
      name: 'rhel-vdc',
      product: 'Red Hat Enterprise Linux for Virtual Datacenters',
      metric: 'host-socket-pair',
      entitlement: Math.max(2, headroom(rhelHosts, 1.25)),
    },
    {
      name: 'sql-server',
      product: 'SQL Server 2022 Enterprise (per virtual core)',
      metric: 'instance-vcpu',
      entitlement: Math.max(16, headroom(sqlVcpus, 1.2)),
      minimumPerInstance: 4,
    },
    {
      name: 'backup-agent',
      product: 'Backup agent (per protected instance)',
      metric: 'instance',
      entitlement: Math.max(10, headroom(agents, 1.1)),
    },
  ];
}

// Small maps on one line, as people write them: `cpu: { sockets: 2, ... }`.
const FLOW_KEYS = new Set([
  'failover',
  'labels',
  'cpu',
  'os',
  'overcommit',
  'runs',
  'source',
  'licenses',
  'appliesTo',
  'resources',
  'placement',
  'requireLabels',
  'avoid',
]);

export function generateFleetYaml(options: GenerateOptions): string {
  const document = new Document(generateFleetDocument(options));
  document.commentBefore =
    ` Generated by examples/generate.ts --hosts ${options.hosts} --instances ${options.instances} --seed ${options.seed}` +
    `${options.racks === undefined ? '' : ` --racks ${options.racks}`}` +
    `${options.groupSize === undefined ? '' : ` --group-size ${options.groupSize}`}` +
    `${options.failover === false ? ' --no-failover' : ''}; regenerate rather than edit.`;
  visit(document, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || !FLOW_KEYS.has(String(pair.key.value))) return;
      // spec.licenses (a list of pools) shares its key with a host's list of pool names.
      if ((isMap(pair.value) || isSeq(pair.value)) && isSmall(pair.value)) {
        pair.value.flow = true;
      }
    },
  });
  return document.toString({ lineWidth: 0 });
}

/** A list of scalars, or a map of scalars and such lists (placement: { avoid: [...] }). */
function isSmall(node: unknown): boolean {
  const flat = (n: unknown) =>
    isScalar(n) ||
    (isSeq(n) && n.items.every(isScalar)) ||
    (isMap(n) && n.items.every((p) => isScalar(p.value)));
  if (isSeq(node)) return node.items.every(isScalar);
  if (isMap(node)) return node.items.every((pair) => flat(pair.value));
  return false;
}

// --- CLI --------------------------------------------------------------------------------------

const USAGE =
  'usage: node dist/examples/generate.js --hosts N --instances M --seed S [--racks R] [--group-size G] [--no-failover] [--out FILE]';

function wholeNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?[0-9]+$/.test(value)) throw new RangeError(`--${name} must be a whole number: ${value}`);
  return Number(value);
}

function main(argv: readonly string[]): number {
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        hosts: { type: 'string' },
        instances: { type: 'string' },
        seed: { type: 'string' },
        racks: { type: 'string' },
        'group-size': { type: 'string' },
        'no-failover': { type: 'boolean' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    const hosts = wholeNumber('hosts', values.hosts);
    const instances = wholeNumber('instances', values.instances);
    const seed = wholeNumber('seed', values.seed);
    if (hosts === undefined || instances === undefined || seed === undefined) {
      process.stderr.write(`generate: --hosts, --instances and --seed are required\n${USAGE}\n`);
      return 2;
    }
    const racks = wholeNumber('racks', values.racks);
    const groupSize = wholeNumber('group-size', values['group-size']);
    const yaml = generateFleetYaml({
      hosts,
      instances,
      seed,
      ...(racks === undefined ? {} : { racks }),
      ...(groupSize === undefined ? {} : { groupSize }),
      ...(values['no-failover'] ? { failover: false } : {}),
    });
    if (values.out === undefined) process.stdout.write(yaml);
    else writeFileSync(values.out, yaml);
    return 0;
  } catch (e) {
    process.stderr.write(`generate: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
}

if (process.argv[1] !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
