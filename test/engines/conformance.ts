// One contract, run against every HostEngine (habit 10, docs/architecture.md: BullMQ's adapter suites): the
// embedded emulator, and the real engine over a transport with its drivers. A fixture brings
// what differs between engines: the request it can boot, the inventory that request reports,
// and whether it can patch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { HostEngine, InstanceRequest } from '../../src/engines/host-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { PackageVersions } from '../../src/model/fleet.js';

export interface EngineFixture {
  /** Two hosts of the same fleet, empty. */
  readonly a: HostEngine;
  readonly b: HostEngine;
  /**
   * Makes a host stop answering, and brings it back (an outage: the engine's own fault injection
   * where it has one, else the fixture breaks the way to the host); absent where it cannot be done.
   */
  readonly fail?: (host: string) => Promise<void>;
  readonly recover?: (host: string) => Promise<void>;
  /** The request the engine can boot; default `request` below (an image with no files). */
  readonly request?: (name: string, generation: number) => InstanceRequest;
  /** What `inventory` reports for an instance of that request; default its image's packages. */
  readonly inventory?: PackageVersions;
  /**
   * `raises` (default): patch raises versions; `refuses`: patch-not-supported, not retryable (the
   * real engines' busybox sandboxes: a rootfs without apt-get; Debian rootfs are patched in
   * test/engines/apt-patch.test.ts).
   */
  readonly patch?: 'raises' | 'refuses';
  close(): Promise<void>;
}

export function defaultRequest(name: string, generation: number): InstanceRequest {
  return {
    name,
    group: name.replace(/-\d+$/, ''),
    generation,
    image: {
      name: 'debian-12',
      kind: 'container',
      os: { family: 'debian', release: '12', arch: 'x86_64' },
      packages: { openssl: '3.0.15-1~deb12u1', bash: '5.2.15-2+b7' },
    },
    resources: { vcpus: 1, memoryMiB: 256, diskGiB: 1 },
  };
}

const rejectsWith = async (promise: Promise<unknown>, code: string) =>
  assert.rejects(promise, (e) => isVfleetError(e) && e.code === code);

export function engineConformance(name: string, make: () => Promise<EngineFixture>): void {
  describe(`HostEngine conformance: ${name}`, () => {
    let f: EngineFixture;
    let request: (name: string, generation: number) => InstanceRequest = defaultRequest;
    before(async () => {
      f = await make();
      request = f.request ?? defaultRequest;
    });
    after(async () => {
      await f?.close();
    });

    it('reports its facts', async () => {
      const facts = await f.a.facts();
      assert.equal(facts.name, f.a.host);
      assert.ok(facts.cpu.sockets >= 1 && facts.memoryMiB > 0);
    });

    it('creates an instance that ends up running, with its image inventory', async () => {
      const created = await f.a.create(request('c1-0', 1));
      assert.equal(created.status, 'running');
      assert.deepEqual(
        (await f.a.list()).map((i) => [i.instance, i.status, i.generation]),
        [['c1-0', 'running', 1]],
      );
      assert.deepEqual(
        await f.a.inventory('c1-0'),
        f.inventory ?? request('c1-0', 1).image.packages,
      );
      await f.a.destroy('c1-0', 2);
    });

    it('is idempotent: the same create twice, or at once, makes one instance', async () => {
      await f.a.create(request('c2-0', 1));
      await f.a.create(request('c2-0', 1));
      await Promise.all([f.a.create(request('c2-1', 1)), f.a.create(request('c2-1', 1))]);
      const names = (await f.a.list()).map((i) => i.instance).filter((n) => n.startsWith('c2-'));
      assert.deepEqual(names, ['c2-0', 'c2-1']);
      await f.a.destroy('c2-0', 2);
      await f.a.destroy('c2-1', 2);
    });

    it('refuses an older generation (fencing), also after a destroy', async () => {
      await f.a.create(request('c3-0', 3));
      await rejectsWith(f.a.stop('c3-0', 2), 'stale-generation');
      assert.equal((await f.a.list()).find((i) => i.instance === 'c3-0')?.status, 'running');
      await f.a.destroy('c3-0', 4);
      await rejectsWith(f.a.create(request('c3-0', 3)), 'stale-generation');
      assert.equal(
        (await f.a.list()).some((i) => i.instance === 'c3-0'),
        false,
      );
      // The tombstone is readable, so a plan made without it can go above it.
      assert.equal((await f.a.fences()).get('c3-0'), 4);
      await f.a.destroy('c3-0', 4); // destroying what is gone is fine
    });

    it('stops and starts', async () => {
      await f.a.create(request('c4-0', 1));
      assert.equal((await f.a.stop('c4-0', 2)).status, 'stopped');
      assert.equal((await f.a.start('c4-0', 3)).status, 'running');
      await rejectsWith(f.a.start('nope-0', 1), 'instance-missing');
      await f.a.destroy('c4-0', 4);
    });

    it('patch raises package versions, or refuses where the engine cannot', async () => {
      await f.a.create(request('c5-0', 1));
      if (f.patch === 'refuses') {
        await assert.rejects(
          f.a.patch('c5-0', 2, { openssl: '3.0.17-1~deb12u2' }),
          (e) =>
            isVfleetError(e) &&
            e.code === 'patch-not-supported' &&
            !e.retryable &&
            e.message.includes(f.a.host) &&
            e.message.includes('c5-0'),
        );
        assert.deepEqual(
          await f.a.inventory('c5-0'),
          f.inventory ?? request('c5-0', 1).image.packages,
        );
        await f.a.destroy('c5-0', 3);
        return;
      }
      const patched = await f.a.patch('c5-0', 2, { openssl: '3.0.17-1~deb12u2' });
      assert.equal(patched.packages.openssl, '3.0.17-1~deb12u2');
      assert.equal((await f.a.inventory('c5-0')).bash, '5.2.15-2+b7');
      await f.a.destroy('c5-0', 3);
    });

    it('moves: copy the disk, start on the target, destroy on the source', async () => {
      await f.a.create(request('c6-0', 1));
      // What is installed travels with the disk (patched here where the engine can patch).
      if (f.patch !== 'refuses') await f.a.patch('c6-0', 1, { openssl: '3.0.17-1~deb12u2' });
      const installed = await f.a.inventory('c6-0');
      await f.a.copyDisk('c6-0', 2, f.b);
      await f.b.create(request('c6-0', 2));
      assert.deepEqual(await f.b.inventory('c6-0'), installed);
      await f.a.destroy('c6-0', 2);
      assert.equal(
        (await f.a.list()).some((i) => i.instance === 'c6-0'),
        false,
      );
      assert.equal((await f.b.list()).find((i) => i.instance === 'c6-0')?.status, 'running');
      await f.b.destroy('c6-0', 3);
    });

    it('receives a disk under its own fence, and never over an instance it has', async () => {
      // The target has seen generation 5 of c8-0 (a tombstone): a copy at 2 is refused there.
      await f.b.create(request('c8-0', 5));
      await f.b.destroy('c8-0', 5);
      await f.a.create(request('c8-0', 1));
      await rejectsWith(f.a.copyDisk('c8-0', 2, f.b), 'stale-generation');
      assert.equal(await f.b.describe('c8-0'), undefined);
      await f.a.destroy('c8-0', 6);
      // The target runs c9-0 already (a copy-disk job run again after the move went on): the
      // copy leaves it as it is.
      await f.a.create(request('c9-0', 1));
      const there = await f.b.create(request('c9-0', 2));
      await f.a.copyDisk('c9-0', 2, f.b);
      const after = await f.b.describe('c9-0');
      assert.equal(after?.status, 'running');
      assert.equal(after?.generation, there.generation);
      assert.deepEqual(after?.packages, there.packages);
      // Not to itself.
      await rejectsWith(f.a.copyDisk('c9-0', 3, f.a), 'engine-mismatch');
      await f.a.destroy('c9-0', 3);
      await f.b.destroy('c9-0', 3);
    });

    it('patches the host itself where its capabilities say so, else refuses in one line', async () => {
      if (!f.a.capabilities.hostPatch) {
        await rejectsWith(f.a.patchHost(0), 'host-patch-not-built');
        return;
      }
      const first = await f.a.patchHost(0);
      const second = await f.a.patchHost(0);
      assert.equal(second.level, first.level + 1, 'each patch raises the level by one');
      assert.ok(second.at >= first.at);
      assert.equal((await f.a.facts()).name, f.a.host, 'it answers after its reboot');
    });

    it('takes injected faults where its capabilities say so, else refuses them', async () => {
      if (!f.a.capabilities.faultInjection) {
        for (const fault of ['fail', 'partition', 'recover'] as const) {
          await rejectsWith(f.a.inject(fault), 'not-embedded');
        }
        assert.equal(await f.a.injectedFault(), undefined);
        assert.equal((await f.a.facts()).name, f.a.host, 'it still answers');
        return;
      }
      await f.a.create(request('c10-0', 1));
      for (const [fault, kind] of [
        ['fail', 'failed'],
        ['partition', 'partitioned'],
      ] as const) {
        await f.a.inject(fault);
        assert.equal(await f.a.injectedFault(), kind);
        await assert.rejects(
          f.a.stop('c10-0', 2),
          (e) => isVfleetError(e) && e.code === 'host-unreachable' && e.retryable,
        );
        await rejectsWith(f.a.facts(), 'host-unreachable');
        await rejectsWith(f.a.describe('c10-0'), 'host-unreachable');
        await f.a.inject('recover');
        assert.equal(await f.a.injectedFault(), undefined);
        // Untouched by the calls it could not answer. A crashed host's instances died with it
        // and are not resumed by themselves (a plan starts them, or they run elsewhere now); a
        // partition healed before the host's watchdog fired leaves them running.
        const kept = await f.a.describe('c10-0');
        assert.equal(kept?.status, fault === 'fail' ? 'stopped' : 'running', fault);
        assert.equal(kept?.generation, 1, fault);
        if (fault === 'fail') await f.a.start('c10-0', 1);
      }
      await f.a.destroy('c10-0', 2);
    });

    it('a failed host does not answer, retryably, and answers again once recovered', async (t) => {
      if (!f.fail || !f.recover) {
        t.skip('this engine has no fault injection');
        return;
      }
      await f.fail(f.a.host);
      await assert.rejects(
        f.a.create(request('c7-0', 1)),
        (e) => isVfleetError(e) && e.code === 'host-unreachable' && e.retryable,
      );
      await assert.rejects(f.a.list(), (e) => isVfleetError(e) && e.code === 'host-unreachable');
      await f.recover(f.a.host);
      assert.equal((await f.a.create(request('c7-0', 1))).status, 'running');
      await f.a.destroy('c7-0', 2);
    });
  });
}
