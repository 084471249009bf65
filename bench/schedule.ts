// npm run bench:schedule — placement speed and quality on generated fleets, one line per case.
// Each case runs in its own process, so its peak RSS is its own. Ratios are measured in the same
// process against a naive first-fit written here only, because these machines are noisy.
//
//   npm run bench:schedule              all cases
//   npm run bench:schedule -- --quick   the 100,000-instance cases only
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generateFleetDocument } from '../examples/generate.js';
import type { Fleet } from '../src/model/fleet.js';
import { failureDomainOf } from '../src/model/fleet.js';
import type { Placement } from '../src/model/placement.js';
import { allocatable, demandOf } from '../src/scheduler/capacity.js';
import { schedule } from '../src/scheduler/schedule.js';
import { STATIC_CHECKS } from '../src/scheduler/stack.js';
import { normalizeFleet } from '../src/spec/normalize.js';

interface Case {
  readonly name: string;
  readonly hosts: number;
  readonly instances: number;
  readonly failover: boolean;
  /** Run the naive first-fit baseline for this many seconds at most. */
  readonly naiveSeconds: number;
}

const CASES: readonly Case[] = [
  {
    name: '1k hosts, 100k instances, failover',
    hosts: 1_000,
    instances: 100_000,
    failover: true,
    naiveSeconds: 0,
  },
  {
    name: '1k hosts, 100k instances, no failover',
    hosts: 1_000,
    instances: 100_000,
    failover: false,
    naiveSeconds: 60,
  },
  {
    name: '10k hosts, 1M instances, failover',
    hosts: 10_000,
    instances: 1_000_000,
    failover: true,
    naiveSeconds: 0,
  },
  {
    name: '10k hosts, 1M instances, no failover',
    hosts: 10_000,
    instances: 1_000_000,
    failover: false,
    naiveSeconds: 60,
  },
];

type Vec = [number, number, number];

function main(): void {
  const index = process.argv.indexOf('--case');
  if (index >= 0) {
    runCase(CASES[Number(process.argv[index + 1])] as Case);
    return;
  }
  const quick = process.argv.includes('--quick');
  console.log(
    `bench:schedule on ${process.version}, seed 1 (placements/s: higher is better; ratios: lower is better)`,
  );
  let failed = false;
  CASES.forEach((c, i) => {
    if (quick && c.instances > 100_000) return;
    const child = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), '--case', String(i)],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    process.stdout.write(child.stdout);
    if (child.status !== 0) failed = true;
  });
  process.exitCode = failed ? 1 : 0;
}

function runCase(c: Case): void {
  const fleet = normalizeFleet(
    generateFleetDocument({
      hosts: c.hosts,
      instances: c.instances,
      seed: 1,
      failover: c.failover,
    }),
  );
  const started = performance.now();
  const placement = schedule(fleet);
  const seconds = (performance.now() - started) / 1000;
  const placed = placement.placements.length;
  const rss = process.resourceUsage().maxRSS / 1024;
  const parts = [
    `${c.name}: ${Math.round(placed / seconds).toLocaleString('en-US')} placements/s`,
    `(${placed.toLocaleString('en-US')} placed in ${seconds.toFixed(2)} s, ${placement.unplaceable.length} unplaceable)`,
    `peak RSS ${Math.round(rss)} MiB`,
  ];
  if (c.failover) {
    const f = placement.failover;
    const reserve = reserveRatio(fleet, placement);
    parts.push(
      `failover covered ${f.covered}/${f.protected}`,
      `reserve ÷ largest ${f.domain} load: memory ${reserve[1].toFixed(3)}, vCPU ${reserve[0].toFixed(3)}`,
    );
  } else {
    const used = new Set(placement.placements.map((p) => p.host)).size;
    const bound = hostsLowerBound(fleet, placement);
    parts.push(`hosts used ÷ lower bound: ${used} ÷ ${bound} = ${(used / bound).toFixed(3)}`);
  }
  if (c.naiveSeconds > 0) {
    const naive = naiveFirstFit(fleet, c.naiveSeconds);
    const rate = naive.placed / naive.seconds;
    parts.push(
      `naive first-fit: ${Math.round(rate).toLocaleString('en-US')} placements/s` +
        ` (${naive.placed.toLocaleString('en-US')} in ${naive.seconds.toFixed(1)} s${naive.complete ? '' : ', stopped at the time limit'})` +
        `, vfleet ${(placed / seconds / rate).toFixed(1)}x faster`,
    );
  }
  console.log(parts.join('; '));
  const ok =
    placed > 0 && (!c.failover || placement.failover.covered === placementProtected(placement));
  process.exitCode = ok ? 0 : 1;
}

function placementProtected(placement: Placement): number {
  return placement.placements.filter((p) => p.failoverHost !== null).length;
}

/** Total standby reserve ÷ the protected load of the worst single domain, per resource. */
function reserveRatio(fleet: Fleet, placement: Placement): Vec {
  const demand = demandByGroup(fleet);
  const hostIndex = new Map(fleet.hosts.map((h, i) => [h.name, i]));
  const domainOf = (host: string) => {
    const h = fleet.hosts[hostIndex.get(host)!]!;
    return failureDomainOf(fleet, h);
  };
  const load = new Map<string, Vec>();
  for (const p of placement.placements) {
    if (p.failoverHost === null) continue;
    const d = demand.get(p.group)!;
    const l = load.get(domainOf(p.host)) ?? [0, 0, 0];
    for (let k = 0; k < 3; k++) l[k]! += d[k]!;
    load.set(domainOf(p.host), l);
  }
  const worst: Vec = [0, 0, 0];
  for (const l of load.values()) for (let k = 0; k < 3; k++) worst[k] = Math.max(worst[k]!, l[k]!);
  const reserve: Vec = [0, 0, 0];
  for (const h of placement.hosts) {
    reserve[0] += h.reserved.vcpus * 1000;
    reserve[1] += h.reserved.memoryMiB;
    reserve[2] += h.reserved.diskGiB;
  }
  return [reserve[0] / worst[0]!, reserve[1] / worst[1]!, reserve[2] / worst[2]!];
}

function demandByGroup(fleet: Fleet): Map<string, Vec> {
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  return new Map(
    fleet.groups.map((g) => {
      const d = demandOf(g, images.get(g.image)!);
      return [g.name, [d.cpu, d.memory, d.disk] as Vec];
    }),
  );
}

/**
 * The fewest hosts that could hold the placed demand: per resource, the smallest k whose k
 * largest hosts add up to the demand — over all hosts, and for VMs over the VM hosts alone.
 */
function hostsLowerBound(fleet: Fleet, placement: Placement): number {
  const demand = demandByGroup(fleet);
  const kindOf = new Map(
    fleet.groups.map((g) => [g.name, fleet.images.find((i) => i.name === g.image)!.kind]),
  );
  const total: Vec = [0, 0, 0];
  const vm: Vec = [0, 0, 0];
  for (const p of placement.placements) {
    const d = demand.get(p.group)!;
    for (let k = 0; k < 3; k++) {
      total[k]! += d[k]!;
      if (kindOf.get(p.group) === 'vm') vm[k]! += d[k]!;
    }
  }
  const caps = (hosts: Fleet['hosts']) =>
    hosts.map((h) => {
      const a = allocatable(h);
      return [a.cpu, a.memory, a.disk] as Vec;
    });
  const fewest = (capacities: Vec[], need: Vec) => {
    let bound = 0;
    for (let k = 0; k < 3; k++) {
      const sorted = capacities.map((c) => c[k]!).sort((a, b) => b - a);
      let sum = 0;
      let n = 0;
      while (sum < need[k]! && n < sorted.length) sum += sorted[n++]!;
      bound = Math.max(bound, n);
    }
    return bound;
  };
  return Math.max(
    fewest(caps(fleet.hosts), total),
    fewest(caps(fleet.hosts.filter((h) => h.runs.includes('vm'))), vm),
  );
}

/**
 * The baseline: for each instance in spec order, the first host (in host order) that passes
 * the static checks, capacity, anti-affinity and spread skew. No licenses, no failover, no
 * index: what a scheduler without vfleet's structures does. Stops after `limitSeconds`.
 */
function naiveFirstFit(
  fleet: Fleet,
  limitSeconds: number,
): { placed: number; seconds: number; complete: boolean } {
  const started = performance.now();
  const H = fleet.hosts.length;
  const cap = fleet.hosts.map((h) => allocatable(h));
  const used = fleet.hosts.map(() => ({ cpu: 0, memory: 0, disk: 0 }));
  const groupsOn = fleet.hosts.map(() => new Set<string>());
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  let placed = 0;
  for (const group of fleet.groups) {
    const image = images.get(group.image)!;
    const d = demandOf(group, image);
    const label = group.placement.spread;
    const counts = new Map<string, number>();
    if (label) {
      for (const host of fleet.hosts) {
        if (STATIC_CHECKS.every((c) => c.check(host, group, image).ok))
          counts.set(host.labels[label]!, 0);
      }
    }
    for (let i = 0; i < group.replicas; i++) {
      const min = label ? Math.min(...counts.values()) : 0;
      for (let h = 0; h < H; h++) {
        const host = fleet.hosts[h]!;
        if (!STATIC_CHECKS.every((c) => c.check(host, group, image).ok)) continue;
        const u = used[h]!;
        const c = cap[h]!;
        if (u.cpu + d.cpu > c.cpu || u.memory + d.memory > c.memory || u.disk + d.disk > c.disk)
          continue;
        if (group.placement.avoid.some((a) => groupsOn[h]!.has(a))) continue;
        if (label && counts.get(host.labels[label]!) !== min) continue;
        u.cpu += d.cpu;
        u.memory += d.memory;
        u.disk += d.disk;
        groupsOn[h]!.add(group.name);
        if (label) counts.set(host.labels[label]!, counts.get(host.labels[label]!)! + 1);
        placed++;
        break;
      }
      if ((performance.now() - started) / 1000 > limitSeconds) {
        return { placed, seconds: (performance.now() - started) / 1000, complete: false };
      }
    }
  }
  return { placed, seconds: (performance.now() - started) / 1000, complete: true };
}

main();
