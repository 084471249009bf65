// The per-instance lock on a host (src/engines/real/host-lock.ts): a holder whose host went away
// under its critical section stops keeping the lock fresh, so the host, come back, can be
// locked again once the lease runs out — even while that holder is stuck for good (a sync
// whose host was killed mid-way: the returning host's stale copies then waited for ever,
// controller-ssh-cli). On this machine's file system through the local transport, the outage
// as SwitchableTransport's (every call refused while it is down).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { HostLocks } from '../../src/engines/real/host-lock.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { SwitchableTransport } from '../helpers/real-hosts.js';
import { pollUntil } from '../helpers/vfleet-cli.js';

const LEASE_MS = 1_000;

describe('HostLocks', () => {
  it('lets a lock go stale once its holder lost the host, stuck or not', async (t) => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-host-lock-`);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(`${dir}/locks`);
    const pathOf = (name: string) => `${dir}/locks/${name}`;
    const flaky = new SwitchableTransport(new LocalTransport('h'));
    const stuck = new HostLocks(flaky, pathOf, { leaseMs: LEASE_MS });
    // A holder that never finishes (what a sync stuck on a dead stream is).
    void stuck.hold('vm-0', () => new Promise<never>(() => undefined));
    await pollUntil(
      'the lock taken',
      () => (existsSync(`${dir}/locks/vm-0/owner`) ? true : undefined),
      10_000,
      20,
    );
    // The host goes away for longer than a refresh period, then comes back.
    flaky.down = true;
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS / 2));
    flaky.down = false;
    // Another holder (the returning host's cleanup) gets it once the lease has run out.
    const other = new HostLocks(new LocalTransport('h'), pathOf, {
      leaseMs: LEASE_MS,
      acquireTimeoutMs: 30 * LEASE_MS, // a bound for a loaded machine: the old code never let go
    });
    assert.equal(await other.hold('vm-0', async () => 'taken'), 'taken');
  });

  it('keeps a live holder’s lock fresh past the lease', async (t) => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-host-lock-`);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(`${dir}/locks`);
    const pathOf = (name: string) => `${dir}/locks/${name}`;
    const holder = new HostLocks(new LocalTransport('h'), pathOf, { leaseMs: LEASE_MS });
    let release = () => {};
    const held = holder.hold('vm-0', () => new Promise<void>((resolve) => (release = resolve)));
    await pollUntil(
      'the lock taken',
      () => (existsSync(`${dir}/locks/vm-0/owner`) ? true : undefined),
      10_000,
      20,
    );
    const other = new HostLocks(new LocalTransport('h'), pathOf, {
      leaseMs: LEASE_MS,
      acquireTimeoutMs: 3 * LEASE_MS,
    });
    await assert.rejects(
      other.hold('vm-0', async () => 'taken'),
      /stayed locked/,
    );
    release();
    await held;
    assert.equal(await other.hold('vm-0', async () => 'taken'), 'taken');
  });
});
