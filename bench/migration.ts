// npm run bench:migration — live migration of a running VM under TCG (issue 15's benchmark;
// src/engines/real/real-migration.ts, qemu-migration.ts; docs/replication-qemu.md). One VM of
// the test images whose guest counts on its disk every second (`vfleet.counter`, 128 MiB of
// memory, its disk an overlay on a 64 MiB base as in the live-migration test) is moved back and
// forth MIGRATIONS times between two hosts with RealEngine.migrate, at a new generation each time.
// The hosts are two data folders of this machine (the local transport; QEMU's streams go over
// 127.0.0.1), or with BENCH_HOSTS=ssh two test sshd processes on 127.0.0.81 and .82 (the ssh
// transport, the streams between the two addresses). Either way one machine: no network between.
//
// Printed per migration: vfleet's downtimeMs (the guest's pause measured from the outside: the
// source's stop to the target's `cont` answered), QEMU's own downtime, the whole migration's
// time, and the console gap (the last count seen on the source's console to the first on the
// target's: the guest prints once a second, so a pause of d ms shows as up to 1000 + d ms); then
// the median and the worst against the 1 s target.
//
// The baseline, in the same run, on the same VM: BASELINE moves by stop, copy, start — what the
// fleet falls back to when a live migration fails (action-handler.ts, `moved-stop-copy-start`):
// stop on the source, copyDisk, create on the target, destroy on the source, its downtime as the
// event records it (the stop's start to the create's end, a guest still booting), and its console
// gap, and the time from its stop to the first count of the guest booted on the target (the
// guest's real outage: its boot included). Then the ratios live / baseline.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { countBreaks, gapAcross, watchCounters } from '../test/helpers/counter-watch.js';
import { engineTestImages } from '../test/helpers/engine-test-images.js';
import { cleanUp } from '../test/helpers/real-hosts.js';
import {
  counterOf,
  counterVm,
  type ReplicationHost,
  replicationHost,
  sshReplicationHost,
  waitForCounter,
} from '../test/helpers/replication-vm.js';
import { startSshd, type TestSshd } from '../test/helpers/sshd.js';

const MIGRATIONS = Number(process.env.BENCH_MIGRATIONS ?? 6);
const BASELINE = Number(process.env.BENCH_BASELINE ?? 2);
const HOSTS = process.env.BENCH_HOSTS ?? 'local';
if (HOSTS !== 'local' && HOSTS !== 'ssh') throw new Error(`BENCH_HOSTS=${HOSTS}: local or ssh`);
const TARGET_MS = 1_000;
const VM = 'mig-0';

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};
const ms = (n: number | undefined) =>
  n === undefined || Number.isNaN(n) ? '–' : `${Math.round(n).toLocaleString('en-US')} ms`;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

interface Move {
  readonly downtimeMs: number;
  readonly qemuDowntimeMs?: number;
  readonly durationMs: number;
  readonly gapMs: number;
  /** A stop-copy-start's: from its stop to the first count of the guest booted on the target. */
  readonly backMs?: number;
  readonly startedAt?: number;
}

const log = (h: ReplicationHost) => `${h.layout.instanceDir(VM)}/serial.log`;

/** Waits until `h`'s console shows `n` counts (whole lines) of the guest. */
async function counting(h: ReplicationHost, lines: () => number, n: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (lines() < n) {
    if (Date.now() > deadline) throw new Error(`${h.name}: ${lines()} counts, not ${n}`);
    await delay(20);
  }
}

/** Runs `move` from `from` to `to` with the two consoles watched; its console gap measured. */
async function watched(
  from: ReplicationHost,
  to: ReplicationHost,
  move: () => Promise<Omit<Move, 'gapMs' | 'backMs'>>,
): Promise<Move> {
  const watch = watchCounters([log(from), log(to)]);
  try {
    // The move starts right after a count seen as it appeared (the lines already there are all
    // seen at once, when the watch starts: the last of them would date the gap wrong).
    const had = watch.values(log(from)).length;
    await counting(from, () => watch.values(log(from)).length, had + 1);
    const moved = await move();
    await counting(to, () => watch.values(log(to)).length, 2);
    watch.stop();
    const breaks = countBreaks(watch.seen);
    if (breaks.length > 0) throw new Error(`the count broke across the move: ${breaks.join(', ')}`);
    const first = watch.seen.find((l) => l.log === log(to));
    return {
      ...moved,
      gapMs: gapAcross(watch.seen, log(from), log(to)),
      ...(moved.startedAt === undefined || !first ? {} : { backMs: first.at - moved.startedAt }),
    };
  } finally {
    watch.stop();
  }
}

async function main(): Promise<void> {
  const images = await engineTestImages();
  const base = `${mkdtempSync(`${tmpdir()}/vfleet-bench-mig-base-`)}/base.qcow2`;
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  const sshds: TestSshd[] = [];
  const hosts: ReplicationHost[] = [];
  const stop = async () => {
    for (const h of hosts) {
      await h.t.close().catch(() => undefined);
      await cleanUp(h.dataDir, h.name);
    }
    for (const s of sshds) await s.stop();
    rmSync(dirname(base), { recursive: true, force: true });
  };
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  try {
    if (HOSTS === 'ssh') {
      for (const address of ['127.0.0.81', '127.0.0.82']) sshds.push(await startSshd({ address }));
      hosts.push(...sshds.map((s, i) => sshReplicationHost(s, `bench-mig-${'ab'[i]}`)));
    } else {
      hosts.push(replicationHost('bench-mig-a'), replicationHost('bench-mig-b'));
    }
    const [a, b] = hosts as [ReplicationHost, ReplicationHost];
    console.log(
      `load average ${load()}; ${MIGRATIONS} live migrations and ${BASELINE} stop-copy-start moves of a TCG VM (128 MiB) between two ${HOSTS === 'ssh' ? 'ssh hosts (test sshd on 127.0.0.81, .82)' : 'local hosts (data folders of this machine)'}`,
    );
    let generation = 1;
    await a.engine.create(counterVm(images, base, VM, generation));
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= 3);

    let here = a;
    let there = b;
    const liveMoves: Move[] = [];
    for (let i = 1; i <= MIGRATIONS; i++) {
      generation++;
      const [from, to] = [here, there];
      const m = await watched(from, to, async () => {
        const moved = await from.engine.migrate(VM, generation, to.engine);
        return {
          downtimeMs: moved.downtimeMs,
          ...(moved.qemuDowntimeMs === undefined ? {} : { qemuDowntimeMs: moved.qemuDowntimeMs }),
          durationMs: moved.durationMs ?? Number.NaN,
        };
      });
      liveMoves.push(m);
      console.log(
        `live ${i} ${from.name} → ${to.name}: downtime ${ms(m.downtimeMs)} (QEMU's ${ms(m.qemuDowntimeMs)}), migration ${ms(m.durationMs)}, console gap ${ms(m.gapMs)}`,
      );
      [here, there] = [to, from];
    }

    const cold: Move[] = [];
    for (let i = 1; i <= BASELINE; i++) {
      generation++;
      const g = generation;
      const [from, to] = [here, there];
      const before = counterOf(from, VM).last ?? 0;
      const m = await watched(from, to, async () => {
        const started = Date.now();
        await from.engine.stop(VM, g);
        await from.engine.copyDisk(VM, g, to.engine);
        await to.engine.create(counterVm(images, base, VM, g));
        const downtimeMs = Date.now() - started;
        await from.engine.destroy(VM, g);
        return { downtimeMs, durationMs: Date.now() - started, startedAt: started };
      });
      // The guest booted on the target from the copied disk: its count goes on from there.
      const booted = counterOf(to, VM).boot ?? -1;
      if (booted < before) throw new Error(`booted at ${booted} on ${to.name}, counted ${before}`);
      cold.push(m);
      console.log(
        `stop-copy-start ${i} ${from.name} → ${to.name}: downtime ${ms(m.downtimeMs)} (the stop to the create's end), ${ms(m.backMs)} to the first count on the target, move ${ms(m.durationMs)}, console gap ${ms(m.gapMs)} (the guest booted at count ${booted})`,
      );
      [here, there] = [to, from];
    }
    await here.engine.stop(VM, generation);

    const field = (xs: readonly Move[], f: (m: Move) => number | undefined) =>
      xs.map(f).filter((x): x is number => x !== undefined && !Number.isNaN(x));
    const summary = (label: string, xs: readonly number[]) =>
      `${label.padEnd(28)} median ${ms(median(xs)).padStart(9)}, worst ${ms(Math.max(...xs)).padStart(9)}`;
    const downtimes = field(liveMoves, (m) => m.downtimeMs);
    const lines = [
      '',
      `live migration (${liveMoves.length}):`,
      `${summary('  downtime (vfleet)', downtimes)}  (target ≤ ${ms(TARGET_MS)}: ${downtimes.filter((d) => d <= TARGET_MS).length} of ${downtimes.length} within)`,
      summary(
        "  downtime (QEMU's)",
        field(liveMoves, (m) => m.qemuDowntimeMs),
      ),
      summary(
        '  migration',
        field(liveMoves, (m) => m.durationMs),
      ),
      summary(
        '  console gap',
        field(liveMoves, (m) => m.gapMs),
      ),
    ];
    if (cold.length > 0) {
      const ratio = (x: number, y: number) => `${(x / y).toFixed(3)} (1 : ${(y / x).toFixed(1)})`;
      const live = (f: (m: Move) => number | undefined) => median(field(liveMoves, f));
      const base = (f: (m: Move) => number | undefined) => median(field(cold, f));
      lines.push(
        `stop-copy-start (${cold.length}):`,
        summary(
          '  downtime (to the create)',
          field(cold, (m) => m.downtimeMs),
        ),
        summary(
          '  stop to the first count',
          field(cold, (m) => m.backMs),
        ),
        summary(
          '  console gap',
          field(cold, (m) => m.gapMs),
        ),
        `live / stop-copy-start (medians): downtime as vfleet records each ${ratio(
          live((m) => m.downtimeMs),
          base((m) => m.downtimeMs),
        )}; the live pause against the stop to the first count ${ratio(
          live((m) => m.downtimeMs),
          base((m) => m.backMs),
        )}; console gap ${ratio(
          live((m) => m.gapMs),
          base((m) => m.gapMs),
        )}`,
      );
    }
    for (const l of lines) console.log(l);
    console.log(`load average at the end ${load()}`);
  } finally {
    await stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
