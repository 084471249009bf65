// Disk replication (src/engines/real/vm-replication.ts) against real QEMU under TCG, on two hosts
// of this machine (a data folder each, the local transport): a guest writes a counter to its disk
// every second, and what the target boots from its replica shows which moment it holds.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  applyIncrement,
  diskFromReplica,
  dropIncrement,
  dropReplica,
  type ReplicaIncrement,
  type ReplicaPoint,
  readReplica,
  readReplicas,
  shipIncrement,
  takeIncrement,
} from '../../src/engines/real/vm-replication.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { ExecOptions, Transport } from '../../src/transport/transport.js';
import { type EngineTestImages, engineTestImages } from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing, SwitchableTransport } from '../helpers/real-hosts.js';
import {
  type Counter,
  counterOf,
  counterOnDisk,
  counterVm,
  dirty,
  driverContext,
  type ReplicationHost,
  recordOf,
  replicationHost,
  sshReplicationHost,
  waitForCounter,
} from '../helpers/replication-vm.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';

const VM = 'rep-0';
const MiB = 1024 ** 2;

describe('VM disk replication (real QEMU, TCG)', () => {
  let images: EngineTestImages;
  let a: ReplicationHost; // the source
  let b: ReplicationHost; // the failover host
  let base: string; // the image's disk: 32 MiB of data, so that a full copy weighs something
  let replicaDir: string;
  let bGeneration = 1;

  const take = (options?: Parameters<typeof takeIncrement>[2]) =>
    takeIncrement(driverContext(a, VM), recordOf(a, VM), options);
  const arriving = (inc: ReplicaIncrement) => ({ ...inc, from: a.name, generation: 1 });
  /** Takes, ships and applies one increment; the counter as printed just before and after. */
  async function sync(options?: Parameters<typeof takeIncrement>[2]) {
    const before = counterOf(a, VM).last ?? 0;
    const inc = await take(options);
    const after = counterOf(a, VM).last ?? 0;
    await shipIncrement(a.t, inc, b.t, replicaDir);
    const point = await applyIncrement(b.t, replicaDir, arriving(inc));
    await dropIncrement(driverContext(a, VM), inc);
    return { inc, point, before, after };
  }
  /** Boots the replica on the failover host: the counter its guest found on the disk. */
  async function bootReplica(): Promise<Counter> {
    await diskFromReplica(b.t, replicaDir, `${b.layout.instanceDir(VM)}/disk.qcow2`);
    const vm = await b.engine.create(counterVm(images, base, VM, ++bGeneration));
    assert.equal(vm.status, 'running');
    const booted = await waitForCounter(b, VM, (c) => c.boot !== undefined);
    await b.engine.destroy(VM, ++bGeneration);
    return booted;
  }
  const waitForCount = async (more: number) => {
    const now = counterOf(a, VM).last ?? 0;
    return waitForCounter(a, VM, (c) => (c.last ?? 0) >= now + more);
  };

  before(async () => {
    images = await engineTestImages();
    a = replicationHost(`repl-a-${process.pid.toString(36)}`);
    b = replicationHost(`repl-b-${process.pid.toString(36)}`);
    replicaDir = b.layout.replicaDir(VM);
    base = `${a.dataDir}/data-base.qcow2`;
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1G']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x6b 1M 32M', base]);
    const vm = await a.engine.create(counterVm(images, base, VM, 1));
    assert.equal(vm.status, 'running');
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= 2);
  });
  after(async () => {
    const left = [];
    for (const h of [a, b]) if (h) left.push(await cleanUp(h.dataDir, h.name));
    assert.deepEqual(left[1]?.pids ?? [], [], 'no QEMU left running on the target');
  });

  it('a full, then an incremental far smaller; the replica boots at its consistency point', async (t) => {
    const full = await sync();
    assert.equal(full.inc.kind, 'full');
    assert.match(full.inc.fullReason ?? '', /first increment/);
    assert.ok(full.inc.bytes > 32 * MiB, `a full carries the data: ${full.inc.bytes}`);
    assert.equal(full.point.seq, full.inc.seq);
    assert.equal(existsSync(full.inc.path), false, 'dropped on the source');

    await waitForCount(2);
    const inc = await sync();
    t.diagnostic(
      `full ${full.inc.bytes} B in ${full.inc.durationMs} ms, incremental ${inc.inc.bytes} B in ${inc.inc.durationMs} ms`,
    );
    assert.equal(inc.inc.kind, 'incremental');
    assert.equal(inc.inc.fullReason, undefined);
    assert.ok(inc.inc.bytes * 20 < full.inc.bytes, `${inc.inc.bytes} vs ${full.inc.bytes}`);
    assert.ok(inc.inc.consistentAt > full.inc.consistentAt);
    assert.deepEqual(
      {
        seq: inc.point.seq,
        lastKind: inc.point.lastKind,
        bytes: inc.point.bytes,
        lastBytes: inc.point.lastBytes,
      },
      {
        seq: full.point.seq + 1,
        lastKind: 'incremental',
        bytes: full.inc.bytes + inc.inc.bytes,
        lastBytes: inc.inc.bytes,
      },
    );
    assert.deepEqual(await readReplica(b.t, replicaDir), inc.point);
    assert.deepEqual(await readReplicas(b.t, b.layout.replicas), new Map([[VM, inc.point]]));

    // Every value printed before the backup started is on the disk it copied; a value written
    // while it ran is printed by the time it returns (the guest prints right after its fsync).
    const booted = await bootReplica();
    t.diagnostic(
      `counter: ${inc.before} before the take, ${inc.after} after, replica ${booted.boot}`,
    );
    assert.ok(
      booted.boot !== undefined && booted.boot >= inc.before && booted.boot <= inc.after + 1,
    );
    assert.ok(booted.boot <= (counterOf(a, VM).last ?? 0), 'not ahead of the source');
    assert.equal(await readReplica(b.t, replicaDir), undefined, 'the replica became the disk');
  });

  it('refuses an increment that does not follow the replica; told of the replica, the source takes a full', async () => {
    const start = await sync({ replica: 'none' });
    assert.match(start.inc.fullReason ?? '', /the target has no replica/);
    const skipped = await take();
    const next = await take();
    await shipIncrement(a.t, next, b.t, replicaDir);
    await assert.rejects(
      applyIncrement(b.t, replicaDir, arriving(next)),
      (e) =>
        isVfleetError(e) && e.code === 'replica-gap' && /a full sync is needed/.test(e.message),
    );
    assert.deepEqual(await readReplica(b.t, replicaDir), start.point);
    await assert.rejects(
      applyIncrement(b.t, replicaDir, { ...arriving(start.inc), generation: 0 }),
      (e) => isVfleetError(e) && e.code === 'stale-generation',
    );
    const point = (await readReplica(b.t, replicaDir)) as ReplicaPoint;
    const again = await sync({ replica: point });
    assert.equal(again.inc.kind, 'full');
    assert.match(again.inc.fullReason ?? '', /at increment \d+, this host's last is \d+/);
    assert.notEqual(again.point.chain, start.point.chain);
    // The old chain's folder went with the full that replaced it.
    assert.deepEqual(
      execFileSync('ls', [replicaDir]).toString().split('\n').filter(Boolean).sort(),
      [again.point.chain, 'incoming', 'replica.json'].sort(),
    );
    for (const inc of [skipped, next]) await dropIncrement(driverContext(a, VM), inc);
  });

  it('an apply killed in its commit leaves the chain reading as its point; the retry finishes it', async () => {
    // A top of 128 MiB, so that committing it into the base takes a while.
    await dirty(a, VM, [{ offset: 64 * MiB, length: 128 * MiB, pattern: 0x3c }]);
    const big = await sync();
    assert.equal(big.inc.kind, 'incremental');
    assert.ok(big.inc.bytes > 128 * MiB, `the dirtied clusters: ${big.inc.bytes}`);
    const record = JSON.parse(readFileSync(`${replicaDir}/replica.json`, 'utf8'));
    const chainDir = `${replicaDir}/${record.chain}`;
    const top = `${chainDir}/${record.top}`;
    const expected = `${b.dataDir}/expected.qcow2`;
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', top, expected]);

    const next = await take();
    await shipIncrement(a.t, next, b.t, replicaDir);
    // The target's transport aborts `qemu-img commit` once the base has grown by 8 MiB.
    const baseSize = () => statSync(`${chainDir}/base.qcow2`).size;
    const grown = baseSize() + 8 * MiB;
    let aborted = false;
    const killing = new CommitKiller(b.t, () => {
      aborted = baseSize() >= grown;
      return aborted;
    });
    await assert.rejects(
      applyIncrement(killing, replicaDir, arriving(next)),
      (e) => isVfleetError(e) && e.code === 'command-aborted',
    );
    assert.ok(aborted, 'the commit was cut short');
    assert.deepEqual(await readReplica(b.t, replicaDir), big.point, 'the point has not moved');
    const compare = (x: string, y: string) =>
      execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'qcow2', x, y]);
    compare(expected, top); // throws (exit 1) when they differ

    const point = await applyIncrement(b.t, replicaDir, arriving(next));
    assert.equal(point.seq, next.seq);
    compare(expected, `${chainDir}/base.qcow2`);
    assert.equal(existsSync(top), false, 'the committed top is gone');
    await dropIncrement(driverContext(a, VM), next);
    rmSync(expected);
  });

  it('refuses a corrupted increment: the point stays, and boots', async (t) => {
    await waitForCount(1);
    const good = await sync();
    await waitForCount(2);
    const bad = await take();
    await shipIncrement(a.t, bad, b.t, replicaDir);
    const arrived = `${replicaDir}/incoming/${bad.sha256}.qcow2`;
    const fd = openSync(arrived, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, Math.floor(statSync(arrived).size / 2));
    await assert.rejects(
      applyIncrement(b.t, replicaDir, arriving(bad)),
      (e) => isVfleetError(e) && e.code === 'replica-corrupt' && e.retryable,
    );
    assert.deepEqual(await readReplica(b.t, replicaDir), good.point);
    assert.equal(existsSync(arrived), false, 'the corrupt file is gone');
    const booted = await bootReplica();
    t.diagnostic(
      `counter: ${good.before}..${good.after} at the point kept, replica ${booted.boot}`,
    );
    assert.ok(
      booted.boot !== undefined && booted.boot >= good.before && booted.boot <= good.after + 1,
    );
    await dropIncrement(driverContext(a, VM), bad);
  });

  it('after kill -9 of QEMU the next increment is full and says why; a clean restart keeps the bitmap', async () => {
    await dropReplica(b.t, replicaDir);

    // Counting again: the guest is up (it takes the power button only then).
    const started = async () => {
      assert.equal((await a.engine.start(VM, 1)).status, 'running');
      await waitForCounter(a, VM, (c) => c.boot !== undefined && c.last !== undefined);
    };
    const killAndRestart = async () => {
      const pid = Number(readFileSync(`${a.layout.instanceDir(VM)}/qemu.pid`, 'utf8'));
      process.kill(pid, 'SIGKILL');
      await waitUntil(() => processesUsing(`${a.layout.instanceDir(VM)}/qemu.pid`).length === 0);
      await started();
    };
    const first = await sync({ forceFull: 'a new target' });
    assert.match(first.inc.fullReason ?? '', /^a new target/);
    // The bitmap made at runtime reaches the qcow2 only when QEMU closes it.
    await killAndRestart();
    const lost = await sync();
    assert.equal(lost.inc.kind, 'full');
    assert.match(lost.inc.fullReason ?? '', /dirty bitmap was lost in an unclean exit of QEMU/);

    assert.equal((await a.engine.stop(VM, 1)).status, 'stopped');
    await started();
    const kept = await sync();
    assert.equal(kept.inc.kind, 'incremental', 'the bitmap survived a clean exit');

    // Loaded from the qcow2, it is marked in use there until QEMU closes it again.
    await killAndRestart();
    const inconsistent = await sync();
    assert.equal(inconsistent.inc.kind, 'full');
    assert.match(inconsistent.inc.fullReason ?? '', /left inconsistent by an unclean exit/);
    assert.equal((await take()).kind, 'incremental', 'and a new bitmap starts with that full');
  });
});

describe('VM disk replication over ssh (two sshd hosts)', () => {
  let images: EngineTestImages;
  let sshds: TestSshd[] = [];
  let a: ReplicationHost;
  let b: ReplicationHost;
  const suffix = process.pid.toString(36);

  before(async () => {
    images = await engineTestImages();
    sshds = [
      await startSshd({ address: '127.0.0.58' }),
      await startSshd({ address: '127.0.0.59' }),
    ];
    a = sshReplicationHost(sshds[0] as TestSshd, `repl-ssh-a-${suffix}`);
    b = sshReplicationHost(sshds[1] as TestSshd, `repl-ssh-b-${suffix}`);
  });
  after(async () => {
    const left: number[] = [];
    for (const h of [a, b]) {
      if (!h) continue;
      await h.t.close().catch(() => undefined);
      left.push(...(await cleanUp(h.dataDir, h.name)).pids);
    }
    for (const sshd of sshds) await sshd.stop();
    assert.deepEqual(left, [], 'no QEMU left running');
  });

  it('takes, ships and applies over ssh; the disk made from the replica holds the counter of its point', async () => {
    await a.engine.create(counterVm(images, images.base, VM, 1));
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= 2);
    const replicaDir = b.layout.replicaDir(VM);
    let kept = { before: 0, after: 0 };
    for (const kind of ['full', 'incremental']) {
      const before = counterOf(a, VM).last ?? 0;
      const inc = await takeIncrement(driverContext(a, VM), recordOf(a, VM));
      kept = { before, after: counterOf(a, VM).last ?? 0 };
      assert.equal(inc.kind, kind);
      await shipIncrement(a.t, inc, b.t, replicaDir);
      const point = await applyIncrement(b.t, replicaDir, { ...inc, from: a.name, generation: 1 });
      assert.equal(point.seq, inc.seq);
      await dropIncrement(driverContext(a, VM), inc);
      await waitForCounter(a, VM, (c) => (c.last ?? 0) > kept.after);
    }
    const disk = `${b.layout.instanceDir(VM)}/disk.qcow2`;
    await diskFromReplica(b.t, replicaDir, disk);
    const value = counterOnDisk(disk) ?? Number.NaN;
    assert.ok(
      value >= kept.before && value <= kept.after + 1,
      `${value} in ${JSON.stringify(kept)}`,
    );
    await a.engine.destroy(VM, 2);
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A transport that aborts `qemu-img commit` as soon as `now()` says so. */
class CommitKiller extends SwitchableTransport {
  constructor(
    inner: Transport,
    private readonly now: () => boolean,
  ) {
    super(inner);
  }
  override exec(argv: readonly string[], options?: ExecOptions) {
    if (argv[0] !== 'qemu-img' || argv[1] !== 'commit') return super.exec(argv, options);
    const abort = new AbortController();
    const timer = setInterval(() => {
      if (this.now()) abort.abort();
    }, 2);
    return super
      .exec(argv, { ...options, signal: abort.signal })
      .finally(() => clearInterval(timer));
  }
}
