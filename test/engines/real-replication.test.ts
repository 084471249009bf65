// RealEngine's replication operations (real-replication.ts) against real QEMU under TCG, on two
// hosts of this machine: replicate (a full, then an increment) to the failover host, what it
// keeps (`replicas`), a refusal at a stale generation, and the failover: the source's QEMU
// killed, the replica made the disk of a create on the target — whose guest resumes its counter
// from the replica's point, not from zero and not from after it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { type EngineTestImages, engineTestImages } from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing } from '../helpers/real-hosts.js';
import {
  counterOf,
  counterVm,
  type ReplicationHost,
  replicationHost,
  waitForCounter,
} from '../helpers/replication-vm.js';

const VM = 'rr-0';

describe('RealEngine replication (real QEMU, TCG)', () => {
  let images: EngineTestImages;
  let a: ReplicationHost;
  let b: ReplicationHost;
  let base: string;
  before(async () => {
    images = await engineTestImages();
    a = replicationHost('rra');
    b = replicationHost('rrb');
    base = `${mkdtempSync(`${tmpdir()}/vfleet-rr-base-`)}/base.qcow2`;
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  });
  after(async () => {
    for (const h of [a, b]) if (h) await cleanUp(h.dataDir, h.name);
  });

  it('replicates a running VM to its failover host and restarts it there from the replica', async () => {
    await a.engine.create(counterVm(images, base, VM, 1));
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= 2);

    const full = await a.engine.replicate(VM, 1, b.engine);
    assert.equal(full.point.lastKind, 'full');
    assert.match(full.fullReason ?? '', /first increment|no replica/);
    const afterFull = counterOf(a, VM).last ?? 0;
    await waitForCounter(a, VM, (c) => (c.last ?? 0) >= afterFull + 2);

    const before = counterOf(a, VM).last ?? 0;
    const syncStarted = Date.now();
    const inc = await a.engine.replicate(VM, 1, b.engine);
    const syncMs = Date.now() - syncStarted;
    // The whole sync (take, ship, commit), not the take alone: what status shows as its duration.
    // (The take alone is about a third of it, bench:replication; the increment dropped after is not counted.)
    assert.ok(
      inc.durationMs >= 0.6 * syncMs && inc.durationMs <= syncMs,
      `${inc.durationMs} of ${syncMs} ms`,
    );
    const afterTake = counterOf(a, VM).last ?? 0;
    assert.equal(inc.point.lastKind, 'incremental');
    assert.equal(inc.fullReason, undefined);
    assert.equal(inc.point.seq, full.point.seq + 1);
    assert.ok(
      inc.point.lastBytes < full.point.lastBytes,
      `${inc.point.lastBytes} < ${full.point.lastBytes}`,
    );
    assert.ok(inc.point.consistentAt >= full.point.consistentAt);

    const kept = (await b.engine.replicas()).get(VM);
    assert.equal(kept?.from, a.name);
    assert.equal(kept?.consistentAt, inc.point.consistentAt);

    // A job of an older placement is refused.
    await assert.rejects(
      () => a.engine.replicate(VM, 0, b.engine),
      (e) => isVfleetError(e) && e.code === 'stale-generation',
    );

    // The source host dies with its VM: the failover host boots the replica.
    for (const pid of processesUsing(a.dataDir)) process.kill(pid, 'SIGKILL');
    const restored = await b.engine.restoreReplica(VM, 2);
    assert.equal(restored.consistentAt, inc.point.consistentAt);
    await b.engine.create(counterVm(images, base, VM, 2));
    const resumed = await waitForCounter(b, VM, (c) => c.boot !== undefined);
    assert.ok(
      (resumed.boot as number) >= before && (resumed.boot as number) <= afterTake + 1,
      `booted at ${resumed.boot}: the replica was taken between ${before} and ${afterTake}`,
    );
    assert.equal((await b.engine.replicas()).get(VM), undefined, 'the replica became the disk');
    await assert.rejects(
      () => b.engine.restoreReplica(VM, 3),
      (e) => isVfleetError(e) && (e.code === 'instance-exists' || e.code === 'replica-missing'),
    );
  });
});
