// npm run bench:replication — disk replication of a running VM (issue 15's benchmark;
// src/engines/real/vm-replication.ts). One TCG VM of the test images on a "source" host with a
// 1 GiB qcow2 disk written full of data (so that a full copy carries 1 GiB), its guest writing a
// counter to that disk every second; a "target" host keeps the replica. Both hosts are data
// folders of this machine (the local transport); the bytes still go through vfleet's streams
// and sha256 checks as they would between two machines.
//
// First a full sync (take + ship + apply), then ROUNDS intervals of INTERVAL_MS: in each, 1% of
// the disk's blocks is dirtied, then an incremental sync runs. A "block" is 64 KiB by default —
// the qcow2 cluster and the dirty bitmap's granularity, the unit an increment copies;
// BENCH_BLOCK_KIB=4 dirties 1% of the 4 KiB blocks instead, each in a cluster of its own mostly,
// and shows what scattered small writes cost (a whole cluster each). The blocks are dirtied through
// the VM's own QEMU (HMP qemu-io on the drive, seeded positions), not by the guest: a busybox
// guest under TCG cannot write a chosen 1% of its disk at random places fast and on time, and
// for the dirty bitmap a write through the drive is a write like the guest's.
//
// Printed: the full sync's bytes and time, the incrementals' median bytes and time, as ratios
// (targets: bytes ≤ 2% of the full, time ≤ 10%), and the RPO achieved — how long the replica
// lagged the source, from an increment's consistency point to the moment the next one was
// applied on the target — as its p50, p99 (nearest rank) and worst over the steady intervals.
//
// BENCH_PATH=scheduler takes the fleet's own path for the syncs instead of the direct loop: a
// redis-server of this machine, the `replication` queue with the Job Scheduler the leader keeps
// per replicated VM (syncReplicationSchedules, every INTERVAL_MS) and the replication worker
// (replicationWorker → replicateInstance → RealEngine.replicate), its state in memory. The first
// job's sync is the full one; the 1% is dirtied after each sync, as in the direct loop.
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { mulberry32 } from '../examples/generate.js';
import type { HostEngine } from '../src/engines/host-engine.js';
import {
  applyIncrement,
  dropIncrement,
  type ReplicaIncrement,
  shipIncrement,
  takeIncrement,
} from '../src/engines/real/vm-replication.js';
import type { Fleet } from '../src/model/fleet.js';
import type { RecordedInstance } from '../src/model/instances.js';
import type { ReplicationStatus } from '../src/model/replication.js';
import type { ReplicationOutcome } from '../src/queue/replication-job.js';
import {
  REPLICATION_QUEUE,
  replicationWorker,
  syncReplicationSchedules,
} from '../src/queue/replication-queue.js';
import { engineTestImages } from '../test/helpers/engine-test-images.js';
import { cleanUp } from '../test/helpers/real-hosts.js';
import { startRedisServer } from '../test/helpers/redis.js';
import {
  counterVm,
  dirty,
  driverContext,
  type ReplicationHost,
  recordOf,
  replicationHost,
  waitForCounter,
} from '../test/helpers/replication-vm.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 12);
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 5_000);
const GiB = 1024 ** 3;
const BLOCK = Number(process.env.BENCH_BLOCK_KIB ?? 64) * 1024;
const DISK_BLOCKS = GiB / BLOCK;
const DIRTY_BLOCKS = Math.ceil(DISK_BLOCKS / 100);
const VM = 'bench-0';
const PATH = process.env.BENCH_PATH ?? 'direct';
if (PATH !== 'direct' && PATH !== 'scheduler')
  throw new Error(`BENCH_PATH=${PATH}: direct or scheduler`);

interface Sync {
  readonly inc: ReplicaIncrement;
  readonly takeMs: number;
  readonly shipMs: number;
  readonly applyMs: number;
  readonly totalMs: number;
  readonly appliedAt: number;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};
/** The nearest-rank percentile: the smallest sample with at least p% of them at or below it. */
const percentile = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0
    ? Number.NaN
    : (s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] as number);
};
const ms = (n: number) => `${Math.round(n).toLocaleString('en-US')} ms`;
const bytes = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const percent = (x: number) => `${(100 * x).toFixed(2)}%`;

/** 1% of the disk's blocks, distinct, at seeded places, each written whole. */
function onePercent(next: () => number, round: number) {
  const blocks = new Set<number>();
  while (blocks.size < DIRTY_BLOCKS) blocks.add(Math.floor(next() * DISK_BLOCKS));
  return [...blocks].map((b) => ({ offset: b * BLOCK, length: BLOCK, pattern: round % 256 }));
}

async function sync(a: ReplicationHost, b: ReplicationHost): Promise<Sync> {
  const started = Date.now();
  const inc = await takeIncrement(driverContext(a, VM), recordOf(a, VM));
  const taken = Date.now();
  const replicaDir = b.layout.replicaDir(VM);
  await shipIncrement(a.t, inc, b.t, replicaDir);
  const shipped = Date.now();
  await applyIncrement(b.t, replicaDir, { ...inc, from: a.name, generation: 1 });
  const appliedAt = Date.now();
  await dropIncrement(driverContext(a, VM), inc);
  return {
    inc,
    takeMs: taken - started,
    shipMs: shipped - taken,
    applyMs: appliedAt - shipped,
    totalMs: appliedAt - started,
    appliedAt,
  };
}

const line = (label: string, s: Sync) =>
  `${label.padEnd(14)} ${bytes(s.inc.bytes).padStart(10)} ${ms(s.totalMs).padStart(10)}  (take ${ms(s.takeMs)}, ship ${ms(s.shipMs)}, apply ${ms(s.applyMs)})`;

/** What SIGTERM must stop besides the hosts' processes (the scheduler path's redis-server). */
const onStop: Array<() => Promise<void>> = [];

/** A sync as both paths see it: its bytes and its time, take to apply. */
interface Sample {
  readonly bytes: number;
  readonly totalMs: number;
}

interface Run {
  readonly full: Sample;
  readonly rounds: readonly Sample[];
  /** Per incremental: from the previous sync's consistency point to this one applied. */
  readonly lags: readonly number[];
}

/** The syncs driven by this loop: take, ship, apply, INTERVAL_MS after the last consistency point. */
async function direct(a: ReplicationHost, b: ReplicationHost): Promise<Run> {
  const full = await sync(a, b);
  console.log(line('full', full));
  const next = mulberry32(1); // the same blocks in every run
  const rounds: Sample[] = [];
  const lags: number[] = [];
  let point = full;
  for (let round = 1; round <= ROUNDS; round++) {
    await dirty(a, VM, onePercent(next, round));
    // The next take INTERVAL_MS after the last one's consistency point.
    const wait = point.inc.consistentAt + INTERVAL_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const s = await sync(a, b);
    if (s.inc.kind !== 'incremental') throw new Error(`round ${round}: ${s.inc.fullReason}`);
    const lag = s.appliedAt - point.inc.consistentAt;
    console.log(`${line(`incremental ${round}`, s)}  lag before it ${ms(lag)}`);
    rounds.push({ bytes: s.inc.bytes, totalMs: s.totalMs });
    lags.push(lag);
    point = s;
  }
  return { full: { bytes: full.inc.bytes, totalMs: full.totalMs }, rounds, lags };
}

/**
 * The syncs driven by the fleet's own machinery: the Job Scheduler `replicate:<vm>` every
 * INTERVAL_MS on the `replication` queue of a real redis-server, run by the replication worker
 * (replicateInstance, RealEngine.replicate). The fleet's state is in memory: the VM recorded on
 * `a` with `b` its failover host, its replication status, its sync lock.
 */
async function viaScheduler(a: ReplicationHost, b: ReplicationHost): Promise<Run> {
  const redis = await startRedisServer();
  onStop.push(() => redis.stop());
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis({ path: redis.socket, maxRetriesPerRequest: null });
    clients.push(c);
    return c;
  };
  const prefix = 'bench';
  const fleet = { groups: [{ name: 'bench', replication: { interval: INTERVAL_MS } }] };
  const record = {
    instance: VM,
    group: 'bench',
    host: a.name,
    failoverHost: b.name,
    generation: 1,
  };
  const statuses = new Map<string, ReplicationStatus>();
  const locks = new Map<string, string>();
  const engines = new Map<string, HostEngine>([
    [a.name, a.engine],
    [b.name, b.engine],
  ]);
  const queue = new Queue(REPLICATION_QUEUE, { connection: client(), prefix });
  const worker = replicationWorker(
    () => ({
      fleet: fleet as unknown as Fleet,
      engine: (host) => engines.get(host) as HostEngine,
      instance: async (name) => (name === VM ? (record as unknown as RecordedInstance) : undefined),
      replication: {
        get: async (name) => statuses.get(name),
        put: async (status) => void statuses.set(status.instance, status),
        forget: async (names) => {
          for (const n of names) statuses.delete(n);
        },
        lock: async (name, token) => {
          if (locks.has(name)) return false;
          locks.set(name, token);
          return true;
        },
        release: async (name, token) => {
          if (locks.get(name) === token) locks.delete(name);
        },
      },
      appendEvent: async () => undefined,
      clock: Date.now,
    }),
    { connection: client(), prefix, concurrency: 1 },
  );
  const next = mulberry32(1); // the same blocks as the direct loop's
  const samples: Sample[] = [];
  const lags: number[] = [];
  let previous: ReplicationStatus | undefined;
  let chain = Promise.resolve();
  const done = new Promise<void>((resolve, reject) => {
    worker.on('completed', (job, outcome: ReplicationOutcome) => {
      chain = chain.then(async () => {
        if (samples.length > ROUNDS) return;
        if (outcome.outcome !== 'synced') {
          return reject(new Error(`job ${job.id}: ${JSON.stringify(outcome)}`));
        }
        const { status } = outcome;
        const round = samples.length;
        // The job's sync, from its start to the increment applied (status.lastDurationMs is the
        // take's alone).
        const sample = {
          bytes: status.lastBytes,
          totalMs: status.lastSyncAt - (job.processedOn ?? 0),
        };
        // A scheduler's job is `repeat:<scheduler>:<the time it is due>`.
        const due = Number(job.id?.split(':').at(-1));
        const started = `started ${ms((job.processedOn ?? 0) - due)} after it was due`;
        if (round === 0) {
          console.log(
            `full           ${bytes(sample.bytes).padStart(10)} ${ms(sample.totalMs).padStart(10)}  (${started})`,
          );
        } else {
          if (status.lastKind !== 'incremental') {
            return reject(
              new Error(`round ${round}: ${status.lastKind} ${status.fullReason ?? ''}`),
            );
          }
          const lag = status.lastSyncAt - (previous?.consistentAt ?? Number.NaN);
          lags.push(lag);
          console.log(
            `${`incremental ${round}`.padEnd(14)} ${bytes(sample.bytes).padStart(10)} ${ms(sample.totalMs).padStart(10)}  (${started})  lag before it ${ms(lag)}`,
          );
        }
        samples.push(sample);
        previous = status;
        if (samples.length > ROUNDS) return resolve();
        await dirty(a, VM, onePercent(next, round + 1));
      });
      chain.catch(reject);
    });
    worker.on('failed', (job, e) => reject(new Error(`job ${job?.id} failed: ${e.message}`)));
  });
  try {
    await syncReplicationSchedules(queue, new Map([[VM, INTERVAL_MS]]));
    await done;
  } finally {
    await queue.removeJobScheduler(`replicate:${VM}`).catch(() => undefined);
    await worker.close();
    await queue.close();
    for (const c of clients) c.disconnect();
    await redis.stop();
  }
  const [full, ...rounds] = samples as [Sample, ...Sample[]];
  return { full, rounds, lags };
}

async function main(): Promise<void> {
  const images = await engineTestImages();
  const a = replicationHost(PATH === 'scheduler' ? 'bench-sched-a' : 'bench-repl-a');
  const b = replicationHost(PATH === 'scheduler' ? 'bench-sched-b' : 'bench-repl-b');
  const stop = async () => {
    for (const h of [a, b]) await cleanUp(h.dataDir, h.name);
    for (const f of onStop.splice(0)) await f().catch(() => undefined);
  };
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  try {
    console.log(
      `load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(
          ' ',
        )}; ${ROUNDS} intervals of ${ms(INTERVAL_MS)}, ${DIRTY_BLOCKS} of ${DISK_BLOCKS} blocks of ${BLOCK / 1024} KiB dirtied in each`,
    );
    // The disk written full before the guest boots, so that every cluster holds data.
    await a.engine.create(counterVm(images, images.base, VM, 1));
    await a.engine.stop(VM, 1);
    const disk = `${a.layout.instanceDir(VM)}/disk.qcow2`;
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1G', disk]);
    await a.engine.start(VM, 1);
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= 1);

    const { full, rounds, lags } =
      PATH === 'scheduler' ? await viaScheduler(a, b) : await direct(a, b);
    const incBytes = median(rounds.map((r) => r.bytes));
    const incMs = median(rounds.map((r) => r.totalMs));
    console.log('');
    console.log(`full sync:          ${bytes(full.bytes)} in ${ms(full.totalMs)} (1 GiB written)`);
    console.log(`incremental (med.): ${bytes(incBytes)} in ${ms(incMs)}`);
    console.log(
      `ratios:             bytes ${percent(incBytes / full.bytes)} of the full (target ≤ 2%), time ${percent(incMs / full.totalMs)} (target ≤ 10%)`,
    );
    // The first lag is the full's own: it started (its consistency point) long before it was
    // applied. From the second on, the replica follows at the interval's pace.
    const steady = lags.slice(1);
    console.log(
      `RPO at an interval of ${ms(INTERVAL_MS)} (${PATH === 'scheduler' ? 'the Job Scheduler and replication worker' : 'the direct loop'}): p50 ${ms(percentile(steady, 50))}, p99 ${ms(percentile(steady, 99))}, worst ${ms(Math.max(...steady))} over intervals 2..${ROUNDS} (${steady.length} samples, nearest rank: with fewer than 100 the p99 is the worst; from a consistency point to the next one applied); ${ms(lags[0] ?? Number.NaN)} right after the full`,
    );
    console.log(
      `load average at the end ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
