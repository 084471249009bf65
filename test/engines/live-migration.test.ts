// QEMU live migration between real hosts (real-migration.ts, qemu-migration.ts) under TCG: three
// hosts behind real sshd processes on loopback addresses of this file's own and one `local` host,
// one guest that counts on its disk (`vfleet.counter`) shared by the tests, which build on each
// other: moved ssh → ssh while its count is watched on both consoles (never back, never repeated;
// the pause measured); a target killed mid-way and a migration that cannot finish in its bounds,
// each leaving the guest running untouched where it was and nothing on the target; ssh → local →
// ssh; and, stopped at the end, its disk holds what was written before the first move.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { withQmp } from '../../src/engines/real/qmp-client.js';
import { isVfleetError } from '../../src/model/errors.js';
import {
  type CounterWatch,
  countBreaks,
  gapAcross,
  watchCounters,
} from '../helpers/counter-watch.js';
import { type EngineTestImages, engineTestImages } from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing } from '../helpers/real-hosts.js';
import {
  counterOnDisk,
  counterVm,
  dirty,
  type ReplicationHost,
  replicationHost,
  sshReplicationHost,
} from '../helpers/replication-vm.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';

const VM = 'lm-0';
const MiB = 2 ** 20;
const PATTERN = { offset: 16 * MiB, length: 64 * 1024, pattern: 0x5a };

describe('live migration between real hosts (real QEMU, TCG)', () => {
  const suffix = process.pid.toString(36);
  let images: EngineTestImages;
  let base: string;
  let sshds: TestSshd[] = [];
  let a: ReplicationHost;
  let b: ReplicationHost;
  let c: ReplicationHost;
  let local: ReplicationHost;
  const extra: ReplicationHost[] = [];
  let watch: CounterWatch;
  const log = (h: ReplicationHost) => `${h.layout.instanceDir(VM)}/serial.log`;

  before(async () => {
    images = await engineTestImages();
    base = `${mkdtempSync(`${tmpdir()}/vfleet-lm-base-`)}/base.qcow2`;
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
    sshds = await Promise.all(
      ['127.0.0.71', '127.0.0.72', '127.0.0.73'].map((address) => startSshd({ address })),
    );
    [a, b, c] = sshds.map((s, i) => sshReplicationHost(s, `lm-${'abc'[i]}-${suffix}`)) as [
      ReplicationHost,
      ReplicationHost,
      ReplicationHost,
    ];
    local = replicationHost(`lm-l-${suffix}`);
  });

  after(async () => {
    watch?.stop();
    const left: number[] = [];
    for (const h of [a, b, c, local, ...extra]) {
      if (!h) continue;
      await h.t.close().catch(() => undefined);
      left.push(...(await cleanUp(h.dataDir, h.name)).pids);
    }
    for (const sshd of sshds) await sshd.stop();
    if (base) rmSync(dirname(base), { recursive: true, force: true });
    assert.deepEqual(left, [], 'no QEMU left running');
  });

  it('moves a running VM between two ssh hosts: its count never goes back, the pause is short', async (t) => {
    await a.engine.create(counterVm(images, base, VM, 1));
    await countsOn(a, 2);
    // Data only the disk's mirror can carry to the target (checked at the end).
    await dirty(a, VM, [PATTERN]);
    // Replicated to c before it moves: its replication state on a says chain and increment.
    assert.equal((await a.engine.replicate(VM, 1, c.engine)).point.lastKind, 'full');
    watch = watchCounters([log(a), log(b), log(c), log(local)]);
    const moved = await a.engine.migrate(VM, 2, b.engine);
    await countsOn(b, 3);
    const gap = gapAcross(watch.seen, log(a), log(b));
    t.diagnostic(
      `downtime ${moved.downtimeMs} ms (QEMU's ${moved.qemuDowntimeMs} ms), console gap ${gap} ms (the guest prints every 1000 ms), migration ${moved.durationMs} ms`,
    );
    assert.deepEqual(
      countBreaks(watch.seen),
      [],
      'the count only goes up (a line or two unseen at the switch at most)',
    );
    assert.ok(watch.values(log(a)).length > 0 && watch.values(log(b)).length >= 3);
    assert.equal(moved.instance.status, 'running');
    assert.equal(moved.instance.generation, 2);
    assert.ok(moved.downtimeMs >= (moved.qemuDowntimeMs ?? 0));
    // A live migration's pause, not a stop-copy-start's (a boot: tens of seconds under TCG). The
    // figure is reported above; a bound of 1 s is a speed target, for a quiet machine, not a test
    // (1.27 s was seen in CI at load 9-13).
    assert.ok(moved.downtimeMs < 5000, `the guest paused ${moved.downtimeMs} ms`);
    // A bound for a loaded machine (the guest prints every second; 1.22–1.41 s seen here).
    assert.ok(gap < 3000, `the console was silent ${gap} ms`);

    assert.equal((await b.engine.describe(VM))?.status, 'running');
    assert.equal(await a.engine.describe(VM), undefined, 'gone from the source');
    assert.equal((await a.engine.fences()).get(VM), 2);
    assert.equal(existsSync(a.layout.instanceDir(VM)), false);
    assert.deepEqual(processesUsing(a.dataDir), [], 'no QEMU left on the source');
    const info = JSON.parse(
      execFileSync('qemu-img', [
        'info',
        '-U',
        '--output=json',
        `${b.layout.instanceDir(VM)}/disk.qcow2`,
      ]).toString(),
    ) as { 'backing-filename'?: string };
    assert.equal(info['backing-filename'], undefined, 'the disk stands alone');
    assert.equal(existsSync(`${b.layout.instanceDir(VM)}/migration-incoming`), false);
  });

  it("the next sync from the VM's new host is a full one that says why, the one after incremental", async () => {
    const full = await b.engine.replicate(VM, 2, c.engine);
    assert.equal(full.point.lastKind, 'full');
    assert.equal(full.point.from, b.name);
    assert.match(full.fullReason ?? '', new RegExp(`migrated live from ${a.name}`));
    const next = await b.engine.replicate(VM, 2, c.engine);
    assert.equal(next.point.lastKind, 'incremental');
    assert.equal(next.point.seq, full.point.seq + 1);
  });

  it('a migration whose target dies mid-way leaves the VM running where it was, and nothing on the target', async (t) => {
    // The memory goes slowly, so that the target's QEMU is killed while it arrives: once it has
    // both streams (the disk's NBD client and the migration) connected.
    const slow = sshReplicationHost(sshds[1] as TestSshd, b.name, {
      migration: { maxBandwidth: MiB, timeoutMs: 120_000 },
    });
    extra.push(slow);
    const killed = killIncoming(c, 2);
    const before = watch.values(log(b)).length;
    await assert.rejects(
      () => slow.engine.migrate(VM, 3, c.engine),
      (e) => {
        t.diagnostic(String((e as Error).message));
        return isVfleetError(e) && e.code === 'migration-failed';
      },
    );
    assert.ok(await killed, 'the target was killed mid-way');
    await untouched(b, before);
    await targetClean(c);
  });

  it('a migration that cannot finish within its bounds is cancelled: the VM runs on, the target is clean', async (t) => {
    const stuck = sshReplicationHost(sshds[1] as TestSshd, b.name, {
      migration: { maxBandwidth: 256 * 1024, timeoutMs: 1_500 },
    });
    extra.push(stuck);
    const before = watch.values(log(b)).length;
    await assert.rejects(
      () => stuck.engine.migrate(VM, 4, c.engine),
      (e) => {
        t.diagnostic(String((e as Error).message));
        return (
          isVfleetError(e) &&
          e.code === 'migration-failed' &&
          /did not complete within 1500 ms/.test(e.message)
        );
      },
    );
    await untouched(b, before);
    await targetClean(c);
  });

  it('moves between ssh hosts and a local one, both ways', async (t) => {
    const there = await b.engine.migrate(VM, 5, local.engine);
    await countsOn(local, 2);
    const back = await local.engine.migrate(VM, 6, a.engine);
    await countsOn(a, 2, watch.values(log(a)).length);
    t.diagnostic(`ssh → local ${there.downtimeMs} ms, local → ssh ${back.downtimeMs} ms`);
    assert.deepEqual(
      countBreaks(watch.seen),
      [],
      'the count only goes up (a line or two unseen at the switch at most)',
    );
    assert.equal((await a.engine.describe(VM))?.generation, 6);
    assert.equal(await local.engine.describe(VM), undefined);
    assert.equal(await b.engine.describe(VM), undefined);
  });

  it('the disk it ends on holds what was written before the first move, and the last count', async () => {
    await a.engine.stop(VM, 6);
    watch.stop();
    const disk = `${a.layout.instanceDir(VM)}/disk.qcow2`;
    const read = execFileSync('qemu-io', [
      '-f',
      'qcow2',
      '-r',
      '-c',
      `read -P ${PATTERN.pattern} ${PATTERN.offset} ${PATTERN.length}`,
      disk,
    ]).toString();
    assert.doesNotMatch(read, /verification failed/i, read);
    assert.match(read, /read 65536\/65536 bytes/);
    // The guest writes a count to its disk, then prints it: the power button may fall between.
    const last = watch.values().at(-1) as number;
    const onDisk = counterOnDisk(disk);
    assert.ok(onDisk === last || onDisk === last + 1, `${onDisk} on the disk, ${last} printed`);
  });

  /** Waits until `h`'s console shows `n` more counts than `from`. */
  async function countsOn(h: ReplicationHost, n: number, from = 0): Promise<void> {
    const deadline = Date.now() + 90_000;
    const have = () =>
      watch
        ? watch.values(log(h)).length
        : (readText(log(h)).match(/^VFLEET-COUNTER \d/gm) ?? []).length;
    while (have() < from + n) {
      if (Date.now() > deadline) throw new Error(`${h.name}: ${have()} counts, not ${from + n}`);
      await delay(50);
    }
  }

  /** The VM still runs on `h` as before: its count goes on, its QEMU carries nothing of ours. */
  async function untouched(h: ReplicationHost, before: number): Promise<void> {
    await countsOn(h, 2, before);
    assert.deepEqual(
      countBreaks(watch.seen),
      [],
      'the count only goes up (a line or two unseen at the switch at most)',
    );
    const now = await h.engine.describe(VM);
    assert.equal(now?.status, 'running');
    assert.equal(now?.generation, 2);
    await withQmp(h.t, `${h.layout.instanceDir(VM)}/qmp.sock`, async (q) => {
      assert.deepEqual(await q.execute('query-jobs'), []);
      const nodes = (await q.execute('query-named-block-nodes', { flat: true })) as Array<{
        'node-name': string;
      }>;
      assert.ok(!nodes.some((n) => n['node-name'].startsWith('vfleet-migrate')));
      assert.equal(((await q.execute('query-status')) as { status: string }).status, 'running');
    });
  }

  async function targetClean(h: ReplicationHost): Promise<void> {
    assert.deepEqual(processesUsing(h.dataDir), [], `no QEMU left on ${h.name}`);
    assert.equal(existsSync(h.layout.instanceDir(VM)), false, `no folder left on ${h.name}`);
    assert.equal(await h.engine.describe(VM), undefined);
  }
});

/** The file's text, or '' when it is not there (a process's /proc entry can go at any moment). */
function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (
      (e as NodeJS.ErrnoException).code === 'ENOENT' ||
      (e as NodeJS.ErrnoException).code === 'ESRCH'
    )
      return '';
    throw e;
  }
}

/**
 * SIGKILLs the incoming QEMU on `h` once it has `streams` established TCP connections (the
 * mirror's NBD client, then the migration stream); false if that never happened in 60 s.
 */
async function killIncoming(h: ReplicationHost, streams: number): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    for (const pid of processesUsing(h.dataDir)) {
      if (!readText(`/proc/${pid}/cmdline`).includes('-incoming')) continue;
      if (established(pid) >= streams) {
        process.kill(pid, 'SIGKILL');
        return true;
      }
    }
    await delay(10);
  }
  return false;
}

/** How many established TCP connections the process holds (its socket fds in /proc/net/tcp). */
function established(pid: number): number {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' });
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode) inodes.add(inode);
    }
  } catch {
    return 0; // gone
  }
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readText(table).split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // st 01 is ESTABLISHED; the inode is the tenth field.
      if (fields[3] === '01' && inodes.has(fields[9] ?? '')) count++;
    }
  }
  return count;
}
