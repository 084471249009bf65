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
// (targets: bytes ≤ 2% of the full, time ≤ 10%), and the RPO achieved: the longest the replica
// lagged the source, from an increment's consistency point to the moment the next one was
// applied on the target.
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { mulberry32 } from '../examples/generate.js';
import {
  applyIncrement,
  dropIncrement,
  type ReplicaIncrement,
  shipIncrement,
  takeIncrement,
} from '../src/engines/real/vm-replication.js';
import { engineTestImages } from '../test/helpers/engine-test-images.js';
import { cleanUp } from '../test/helpers/real-hosts.js';
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

async function main(): Promise<void> {
  const images = await engineTestImages();
  const a = replicationHost('bench-repl-a');
  const b = replicationHost('bench-repl-b');
  const stop = async () => {
    for (const h of [a, b]) await cleanUp(h.dataDir, h.name);
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

    const full = await sync(a, b);
    console.log(line('full', full));
    const next = mulberry32(1); // the same blocks in every run
    const rounds: Sync[] = [];
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
      rounds.push(s);
      lags.push(lag);
      point = s;
    }
    const incBytes = median(rounds.map((r) => r.inc.bytes));
    const incMs = median(rounds.map((r) => r.totalMs));
    console.log('');
    console.log(
      `full sync:          ${bytes(full.inc.bytes)} in ${ms(full.totalMs)} (1 GiB written)`,
    );
    console.log(`incremental (med.): ${bytes(incBytes)} in ${ms(incMs)}`);
    console.log(
      `ratios:             bytes ${percent(incBytes / full.inc.bytes)} of the full (target ≤ 2%), time ${percent(incMs / full.totalMs)} (target ≤ 10%)`,
    );
    // The first lag is the full's own: it started (its consistency point) long before it was
    // applied. From the second on, the replica follows at the interval's pace.
    const steady = lags.slice(1);
    console.log(
      `RPO at an interval of ${ms(INTERVAL_MS)}: p50 ${ms(percentile(steady, 50))}, p99 ${ms(percentile(steady, 99))}, worst ${ms(Math.max(...steady))} over intervals 2..${ROUNDS} (${steady.length} samples, nearest rank: with fewer than 100 the p99 is the worst; from a consistency point to the next one applied); ${ms(lags[0] ?? Number.NaN)} right after the full`,
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
