// npm run bench:chaos [-- --instances 20000] [--hosts 200] [--minutes 5] [--rate 4] [--seed 1]
//                        [--faults redis-kill,worker-kill,worker-stop,leader-stop,leader-kill,host-fail,host-partition]
//
// A seeded chaos run (issue 17): a generated fleet (examples/generate.ts, protected groups that
// tolerate a rack) on emulated hosts, kept converged by the processes users run — two `vfleet
// controller --auto-apply --external-workers` (a leader and a standby) and three `vfleet worker`
// — through a redis-server of the run's own with AOF `everysec`. Faults from the list are injected
// at random (`--rate` a minute, exponential gaps, the seed's order) for `--minutes`, one at a time:
//
//   redis-kill      the redis-server SIGKILLed and started again on its AOF (up to ~1 s of writes lost)
//   worker-kill     a worker SIGKILLed mid-work; a new one started
//   worker-stop     a worker SIGSTOPped past its jobs' lock (a machine cut off), then SIGCONTed:
//                   its jobs are taken over, its late completions refused
//   leader-stop     the leader controller SIGSTOPped for two lease ttls, then SIGCONTed: the standby
//                   leads, the old leader's late jobs are refused by their fencing token
//   leader-kill     the leader SIGKILLed; a new controller started
//   host-fail       an emulated host crashes (its instances die); once its protected instances run
//                   again elsewhere it recovers
//   host-partition  an emulated host loses the control plane (its instances run on until its
//                   watchdog fences them); healed after the failover
//
// Checked every second from the emulated hosts' own records (the truth, whatever the controllers
// believe): no instance running on two hosts at once (doubled, must be 0); how long each instance
// the spec places was not running; after each fault, the time until every one of them runs exactly
// once again (converged). At the end: instances lost (placed by the spec, not running; must be 0).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { generateFleetDocument, mulberry32 } from '../examples/generate.js';
import { engineHostKeys, fleetKeys } from '../src/state/keys.js';
import { type BenchRedis, startRedis } from './bench-redis.js';

const FAULTS = [
  'redis-kill',
  'worker-kill',
  'worker-stop',
  'leader-stop',
  'leader-kill',
  'host-fail',
  'host-partition',
] as const;
type Fault = (typeof FAULTS)[number];

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '20000' },
    hosts: { type: 'string', default: '200' },
    minutes: { type: 'string', default: '5' },
    rate: { type: 'string', default: '4' },
    seed: { type: 'string', default: '1' },
    faults: { type: 'string', default: FAULTS.join(',') },
    'converge-timeout': { type: 'string', default: '180' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`npm run bench:chaos [-- options]   (or node dist/bench/chaos.js [options])
  --instances N           the generated fleet's instances (default 20000)
  --hosts N               its emulated hosts (default 200)
  --minutes M             how long faults are injected (default 5)
  --rate R                faults a minute, exponential gaps (default 4)
  --seed S                the fleet's and the faults' seed (default 1)
  --faults a,b,…          drawn from ${FAULTS.join(', ')} (default all)
  --converge-timeout S    how long a convergence may take, in seconds (default 180)
Prints each fault and its convergence, then the instances lost and running twice (both must be 0).`);
  process.exit(0);
}
const faults = String(values.faults)
  .split(',')
  .map((f) => f.trim())
  .filter((f) => f !== '') as Fault[];
for (const f of faults) {
  if (!FAULTS.includes(f)) throw new Error(`--faults: unknown fault ${f} (${FAULTS.join(', ')})`);
}
const SEED = Number(values.seed);
const RUN_MS = Number(values.minutes) * 60_000;
const RATE = Number(values.rate);
const CONVERGE_MS = Number(values['converge-timeout']) * 1000;
// The controllers' default lease ttl: a plan of a 20,000-instance fleet from empty holds a loaded
// machine's CPU for seconds, and a leader must renew its lease around it.
const TTL_MS = 10_000;
const LOCK_MS = 5_000;

const bin = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));
const dir = mkdtempSync(`${tmpdir()}/vfleet-chaos-`);
const redisDir = `${dir}/redis`;
mkdirSync(redisDir);
mkdirSync(`${dir}/logs`);
let keep = false;

const rand = mulberry32(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

// --- the redis-server, restartable on its AOF (bench-redis.ts) --------------------------------
let redis: BenchRedis | undefined;
/** The run's own reads: one try a command, so that a look fails while the server restarts. */
let probe: Redis | undefined;
const reads = (): Redis => {
  if (!probe) throw new Error('no redis-server yet');
  return probe;
};
let env: NodeJS.ProcessEnv = process.env;
async function startRedisServer(): Promise<void> {
  redis = await startRedis({ aof: true, dir: redisDir, readyMs: 60_000 });
  probe = redis.connect({ maxRetriesPerRequest: 1, lazyConnect: true });
  probe.on('error', () => undefined); // refused while the server restarts
  env = {
    ...process.env,
    REDIS_URL: `redis://127.0.0.1:${redis.port}/0`,
    VFLEET_EMBEDDED_BOOT_MS: '0',
  };
}

// --- the vfleet processes --------------------------------------------------------------------
interface Proc {
  readonly role: 'controller' | 'worker';
  readonly name: string;
  readonly child: ChildProcess;
  stopped: boolean;
}
const procs: Proc[] = [];
let started = 0;
/** Actions the controllers reported applied (their `reconciled` events) and restarts. */
let actionsApplied = 0;
let restarts = 0;

function startProc(role: Proc['role']): Proc {
  const name = `${role}-${++started}`;
  const args =
    role === 'controller'
      ? [
          'controller',
          '--auto-apply',
          '--prune',
          '--external-workers',
          '--lease-ttl',
          `${TTL_MS}ms`,
          '--interval',
          '5s',
          '--json',
        ]
      : ['worker', '--lock-ms', String(LOCK_MS)];
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf('\n');
      if (!line.startsWith('{')) continue;
      try {
        const event = JSON.parse(line) as {
          type?: string;
          actions?: number;
          notApplied?: number;
        };
        if (event.type === 'reconciled') {
          actionsApplied += (event.actions ?? 0) - (event.notApplied ?? 0);
        }
        if (event.type === 'restarted') restarts++;
      } catch {
        // not an event
      }
    }
  });
  // Each process's output in the run's folder, kept when the run fails.
  const log = createWriteStream(`${dir}/logs/${name}.log`);
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const proc: Proc = { role, name, child, stopped: false };
  procs.push(proc);
  return proc;
}

const alive = (role: Proc['role']) =>
  procs.filter((p) => p.role === role && p.child.exitCode === null && p.child.signalCode === null);

// --- the truth --------------------------------------------------------------------------------
let fleetName = '';
let hosts: string[] = [];
/** The instances the spec places (the plan from empty, less what cannot be placed). */
let placed = new Set<string>();

/** How many hosts (but `except`) run each instance, by their own records. */
async function running(except?: string): Promise<Map<string, number>> {
  const pipe = reads().pipeline();
  for (const host of hosts) {
    if (host !== except) pipe.hgetall(engineHostKeys(fleetName, host).instances);
  }
  const replies = (await pipe.exec()) ?? [];
  const copies = new Map<string, number>();
  for (const [error, records] of replies) {
    if (error) throw error;
    for (const [name, json] of Object.entries(records as Record<string, string>)) {
      if ((JSON.parse(json) as { status?: string }).status !== 'running') continue;
      copies.set(name, (copies.get(name) ?? 0) + 1);
    }
  }
  return copies;
}

let doubled = 0;
const doubledNames = new Set<string>();
const downSince = new Map<string, number>();
/** Placed instances seen running since they were wanted: only they can be down. */
const hasRun = new Set<string>();
let longestDownMs = 0;
let longestDownName = '';
let lastCheck = { missing: 0, extra: 0 };

/** One look at the hosts: doubles, down times; whether every placed instance runs exactly once. */
async function check(now: number): Promise<boolean> {
  let copies: Map<string, number>;
  try {
    copies = await running();
  } catch {
    lastCheck = { missing: -1, extra: -1 }; // Redis not answering (a redis-kill)
    return false;
  }
  let missing = 0;
  for (const [name, n] of copies) {
    if (n > 1 && !doubledNames.has(name)) {
      doubledNames.add(name);
      doubled++;
      console.log(`  DOUBLE: ${name} runs on ${n} hosts`);
    }
  }
  for (const name of downSince.keys()) if (!placed.has(name)) downSince.delete(name);
  for (const name of placed) {
    const n = copies.get(name) ?? 0;
    if (n === 0) {
      missing++;
      if (hasRun.has(name) && !downSince.has(name)) downSince.set(name, now);
    } else {
      hasRun.add(name);
      const since = downSince.get(name);
      if (since !== undefined) {
        downSince.delete(name);
        if (now - since > longestDownMs) {
          longestDownMs = now - since;
          longestDownName = name;
        }
      }
    }
  }
  lastCheck = { missing, extra: copies.size - (placed.size - missing) };
  return missing === 0 && lastCheck.extra === 0;
}

async function converge(from: number, what: string): Promise<number> {
  while (Date.now() - from < CONVERGE_MS) {
    if (await check(Date.now())) return Date.now() - from;
    await delay(1_000);
  }
  throw new Error(
    `${what}: not converged within ${CONVERGE_MS / 1000} s (${lastCheck.missing} placed instances not running, ${lastCheck.extra} running that the spec does not place)`,
  );
}

async function leader(): Promise<Proc | undefined> {
  const raw = await reads()
    .get(fleetKeys(fleetName).leader)
    .catch(() => null);
  if (!raw) return undefined;
  const pid = (JSON.parse(raw) as { pid?: number }).pid;
  return procs.find((p) => p.child.pid === pid && p.role === 'controller');
}

async function waitFor(what: string, ok: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ok().catch(() => false)) return;
    await delay(250);
  }
  throw new Error(`${what}: not within ${ms / 1000} s`);
}

function vfleet(args: string[]): string {
  const run = spawnSync(process.execPath, [bin, ...args], {
    cwd: dir,
    env,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (run.status !== 0) throw new Error(`vfleet ${args.join(' ')}: ${run.stderr.trim()}`);
  return run.stdout;
}

/** Whether every protected instance of `host` runs somewhere else (its failover happened). */
async function failedOver(host: string, protectedThere: readonly string[]): Promise<boolean> {
  const elsewhere = await running(host);
  return protectedThere.every((name) => (elsewhere.get(name) ?? 0) === 1);
}

// --- the faults --------------------------------------------------------------------------------
async function inject(fault: Fault): Promise<string> {
  switch (fault) {
    case 'redis-kill': {
      await redis?.killAndRestart();
      return `redis-server pid ${redis?.pid}`;
    }
    case 'worker-kill': {
      const victim = pick(alive('worker'));
      victim.child.kill('SIGKILL');
      startProc('worker');
      return victim.name;
    }
    case 'worker-stop': {
      const victim = pick(alive('worker'));
      victim.child.kill('SIGSTOP');
      await delay(LOCK_MS * 2);
      victim.child.kill('SIGCONT');
      return victim.name;
    }
    case 'leader-stop':
    case 'leader-kill': {
      const current = await leader();
      if (!current) return 'no leader at the time';
      if (fault === 'leader-kill') {
        current.child.kill('SIGKILL');
        startProc('controller');
      } else {
        current.child.kill('SIGSTOP');
        await waitFor('a standby leads', async () => (await leader()) !== current, TTL_MS * 10);
        current.child.kill('SIGCONT');
      }
      return current.name;
    }
    case 'host-fail':
    case 'host-partition': {
      // A host that runs protected instances, so that there is a failover to do.
      const copies = await running();
      const candidates: Array<[string, string[]]> = [];
      for (const host of hosts) {
        const names = await reads().hkeys(engineHostKeys(fleetName, host).instances);
        const mine = names.filter((n) => protectedNames.has(n) && (copies.get(n) ?? 0) > 0);
        if (mine.length > 0) candidates.push([host, mine]);
      }
      if (candidates.length === 0) return 'no host runs a protected instance';
      const [host, protectedThere] = pick(candidates);
      vfleet(['host', fault === 'host-fail' ? 'fail' : 'partition', host]);
      await waitFor(
        `${host}'s protected instances running elsewhere`,
        () => failedOver(host, protectedThere),
        CONVERGE_MS,
      );
      vfleet(['host', 'recover', host]);
      return `${host} (${protectedThere.length} protected instances)`;
    }
  }
}

let protectedNames = new Set<string>();

// --- the spec, changed before every fault so that the fault meets work in flight ----------------
interface Group {
  readonly name: string;
  replicas: number;
  readonly failover?: boolean;
}
let groups: Group[] = [];
let writeSpec: () => void = () => undefined;
let spec: unknown;

/** The instances the spec names, less what the latest plan cannot place. */
function refreshPlaced(): void {
  const plan = JSON.parse(vfleet(['plan', '--json'])) as {
    unplaceable: Array<{ instance: string }>;
  };
  const unplaceable = new Set(plan.unplaceable.map((u) => u.instance));
  placed = new Set();
  protectedNames = new Set();
  for (const g of groups) {
    for (let i = 0; i < g.replicas; i++) {
      const name = `${g.name}-${i}`;
      if (unplaceable.has(name)) continue;
      placed.add(name);
      if (g.failover) protectedNames.add(name);
    }
  }
}

/**
 * One group in twenty scaled by one to three replicas, up or down: creates and destroys for the
 * controllers, in flight when the fault lands.
 */
function changeSpec(): string {
  let creates = 0;
  let destroys = 0;
  for (let n = Math.max(1, Math.round(groups.length / 20)); n > 0; n--) {
    const g = pick(groups);
    const before = g.replicas;
    g.replicas = Math.max(1, g.replicas + pick([-3, -2, -1, 1, 2, 3]));
    if (g.replicas > before) creates += g.replicas - before;
    else destroys += before - g.replicas;
  }
  writeSpec();
  refreshPlaced();
  for (const name of hasRun) if (!placed.has(name)) hasRun.delete(name);
  return `+${creates} -${destroys}`;
}

// --- the run --------------------------------------------------------------------------------------
// Stopped from outside: take the processes down with it (each by its pid), keep the logs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const p of procs) p.child.kill('SIGKILL');
    redis?.kill();
    console.log(`stopped by ${signal}; the processes' logs: ${dir}/logs`);
    process.exit(1);
  });
}
let sampling: Promise<void> = Promise.resolve();
let stopSampling = false;
const results: Array<{ fault: Fault; what: string; heldMs: number; convergeMs: number }> = [];
try {
  const generated = {
    hosts: Number(values.hosts),
    instances: Number(values.instances),
    seed: SEED,
  };
  const document = generateFleetDocument(generated);
  spec = document;
  groups = document.spec.instances as unknown as Group[];
  hosts = document.spec.hosts.map((h) => h.name);
  writeSpec = () => writeFileSync(`${dir}/fleet.yaml`, stringify(spec, { lineWidth: 0 }));
  writeSpec();
  await startRedisServer();
  fleetName = document.metadata.name;
  refreshPlaced();
  console.log(
    `chaos: ${placed.size} instances placed (${protectedNames.size} protected) on ${hosts.length} emulated hosts, seed ${SEED}, ${faults.join(', ')} at ${RATE}/min for ${values.minutes} min`,
  );

  const t0 = Date.now();
  for (let i = 0; i < 3; i++) startProc('worker');
  for (let i = 0; i < 2; i++) startProc('controller');
  const firstMs = await converge(t0, 'from empty');
  console.log(`converged from empty in ${(firstMs / 1000).toFixed(1)} s`);
  // From here a look every second, whatever the run is doing (a fault held, a failover awaited).
  sampling = (async () => {
    while (!stopSampling) {
      await check(Date.now());
      await delay(1_000);
    }
  })();

  const end = Date.now() + RUN_MS;
  while (Date.now() < end && faults.length > 0) {
    // The gap before the next fault, exponential around 60/rate s, the checks running meanwhile.
    const gapMs = Math.min(-Math.log(1 - rand()) * (60_000 / RATE), end - Date.now());
    await delay(gapMs);
    if (Date.now() >= end) break;
    const change = changeSpec();
    // The controllers see the new spec within a tick and start applying it; the fault lands
    // somewhere in that.
    await delay(rand() * 1_500);
    const fault = pick(faults);
    const at = Date.now();
    const what = await inject(fault);
    const healed = Date.now();
    const convergeMs = await converge(healed, `${fault} ${what}`);
    results.push({ fault, what, heldMs: healed - at, convergeMs });
    console.log(
      `  ${((at - t0) / 1000).toFixed(0).padStart(5)} s  ${fault.padEnd(15)} ${what} (spec: ${change}): held ${((healed - at) / 1000).toFixed(1)} s, converged ${(convergeMs / 1000).toFixed(1)} s after`,
    );
  }
  await converge(Date.now(), 'at the end');
  const copies = await running();
  const lost = [...placed].filter((name) => (copies.get(name) ?? 0) === 0);

  console.log('\nfault           count  converge median  max');
  for (const fault of faults) {
    const times = results
      .filter((r) => r.fault === fault)
      .map((r) => r.convergeMs)
      .sort((a, b) => a - b);
    if (times.length === 0) continue;
    const median = times[Math.floor((times.length - 1) / 2)] as number;
    console.log(
      `${fault.padEnd(15)} ${String(times.length).padStart(5)}  ${(median / 1000).toFixed(1).padStart(13)} s ${(
        (times.at(-1) as number) / 1000
      )
        .toFixed(1)
        .padStart(5)} s`,
    );
  }
  console.log(`faults injected: ${results.length}`);
  console.log(
    `actions applied (controllers' reconciles): ${actionsApplied}; restarts: ${restarts}`,
  );
  console.log(
    `instances lost: ${lost.length}${lost.length ? ` (${lost.slice(0, 5).join(', ')})` : ''}`,
  );
  console.log(`instances running twice: ${doubled}`);
  console.log(
    `longest time an instance was down: ${(longestDownMs / 1000).toFixed(1)} s${longestDownName ? ` (${longestDownName})` : ''}`,
  );
  process.exitCode = lost.length === 0 && doubled === 0 ? 0 : 1;
} catch (e) {
  keep = true;
  throw e;
} finally {
  stopSampling = true;
  await sampling;
  for (const p of procs) {
    p.child.kill('SIGCONT');
    p.child.kill('SIGTERM');
  }
  await Promise.all(
    procs.map(
      (p) =>
        p.child.exitCode !== null ||
        p.child.signalCode !== null ||
        Promise.race([new Promise((done) => p.child.once('exit', done)), delay(15_000)]),
    ),
  );
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  probe?.disconnect();
  await redis?.stop();
  if (keep || process.exitCode) console.log(`the processes' logs: ${dir}/logs`);
  else rmSync(dir, { recursive: true, force: true });
}
