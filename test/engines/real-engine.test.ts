// The real engine on this machine: the shared conformance suite over the local transport on two
// "hosts" (two data folders), with sandboxes of the busybox test image; then what is particular
// to real hosts: the lock across two engine objects (two workers), a stale lock, the fence file
// after a destroy, refusals, and facts from the host itself.
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import {
  type EngineTestImages,
  engineTestImages,
  rootfsInventory,
} from '../helpers/engine-test-images.js';
import {
  cleanUp,
  processesUsing,
  realHost,
  SwitchableTransport,
  sandboxRequest,
} from '../helpers/real-hosts.js';
import { engineConformance } from './conformance.js';

const options = { sandbox: { stopTimeoutMs: 2_000 }, qemu: { accel: 'tcg', stopTimeoutMs: 2_000 } };
const suffix = process.pid.toString(36);

engineConformance('real (local transport, sandbox driver)', async () => {
  const images = await engineTestImages();
  const hosts = ['a', 'b'].map((n) => {
    const name = `conf-${n}-${suffix}`;
    const dataDir = mkdtempSync(`${tmpdir()}/vfleet-real-${n}-`);
    const transport = new SwitchableTransport(new LocalTransport(name));
    return {
      name,
      dataDir,
      transport,
      engine: new RealEngine(realHost(name, dataDir), transport, options),
    };
  });
  const [a, b] = hosts as [(typeof hosts)[0], (typeof hosts)[0]];
  const byName = (name: string) => hosts.find((h) => h.name === name) as (typeof hosts)[0];
  return {
    a: a.engine,
    b: b.engine,
    request: (name, generation) => sandboxRequest(images, name, generation),
    // The rootfs' own dpkg database, not the spec's inventory.
    inventory: rootfsInventory(),
    patch: 'refuses',
    fail: async (name) => {
      byName(name).transport.down = true;
    },
    recover: async (name) => {
      byName(name).transport.down = false;
    },
    close: async () => {
      for (const h of hosts) {
        const left = await cleanUp(h.dataDir, h.name);
        assert.deepEqual(left.pids, [], `${h.name}: no process outlives the suite`);
      }
    },
  };
});

describe('real engine on this machine', () => {
  let images: EngineTestImages;
  const name = `eng-${suffix}`;
  let dataDir: string;
  let engine: RealEngine;

  before(async () => {
    images = await engineTestImages();
    dataDir = mkdtempSync(`${tmpdir()}/vfleet-real-e-`);
    engine = new RealEngine(realHost(name, dataDir), new LocalTransport(name), options);
  });
  after(async () => {
    const left = await cleanUp(dataDir, name);
    assert.deepEqual(left.pids, []);
  });

  it('reports facts read from the host', async () => {
    const facts = await engine.facts();
    assert.equal(facts.engine, 'local');
    const meminfo = readFileSync('/proc/meminfo', 'utf8');
    const kib = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1]);
    assert.equal(facts.memoryMiB, Math.floor(kib / 1024));
    assert.equal(facts.os.kernel, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    assert.equal(facts.os.arch, 'x86_64');
    assert.ok(facts.cpu.sockets * facts.cpu.coresPerSocket * facts.cpu.threadsPerCore >= 1);
    assert.match(facts.qemu ?? '', /^QEMU emulator version/);
    assert.ok(facts.runs.includes('container') && facts.runs.includes('vm'));
    assert.equal(typeof facts.kvm, 'boolean');
    // Limits are claimed only where the controllers exist.
    const controllers = facts.cgroups?.controllers ?? [];
    assert.equal(facts.sandboxLimits?.memory, controllers.includes('memory'));
  });

  it('two workers creating the same instance at once make one (host lock, not process memory)', async () => {
    const other = new RealEngine(realHost(name, dataDir), new LocalTransport(name), options);
    const [x, y] = await Promise.all([
      engine.create(sandboxRequest(images, 'twin-0', 1)),
      other.create(sandboxRequest(images, 'twin-0', 1)),
    ]);
    assert.equal(x.runtime?.pid, y.runtime?.pid, 'one sandbox, seen by both');
    // unshare is the one process that names the rootfs; its PID 1 runs the image's command
    assert.deepEqual(processesUsing(`${dataDir}/instances/twin-0/rootfs`), [x.runtime?.pid]);
    assert.equal(existsSync(`${dataDir}/locks/twin-0`), false, 'the lock is released');
    await other.destroy('twin-0', 2);
    assert.deepEqual(processesUsing(`${dataDir}/instances/twin-0`), []);
  });

  it('breaks a lock whose holder died (untouched past its lease), and only then', async () => {
    // A lease far longer than the test (a loaded machine once took over a second between the
    // mkdir below and the engine's first look: a 1 s lease had expired, and the lock was broken);
    // a short wait for the held lock, a long one once it is stale (breaking it took over 500 ms).
    const engineWaiting = (acquireTimeoutMs: number) =>
      new RealEngine(realHost(name, dataDir), new LocalTransport(name), {
        ...options,
        lock: { leaseMs: 60_000, acquireTimeoutMs },
      });
    mkdirSync(`${dataDir}/locks/held-0`, { recursive: true });
    await assert.rejects(
      engineWaiting(500).create(sandboxRequest(images, 'held-0', 1)),
      (e) => isVfleetError(e) && e.code === 'host-busy' && e.retryable,
    );
    const old = new Date(Date.now() - 120_000);
    utimesSync(`${dataDir}/locks/held-0`, old, old);
    const patient = engineWaiting(30_000);
    assert.equal((await patient.create(sandboxRequest(images, 'held-0', 1))).status, 'running');
    await patient.destroy('held-0', 2);
  });

  it('keeps the fence after a destroy, as a file on the host', async () => {
    await engine.create(sandboxRequest(images, 'fenced-0', 5));
    await engine.destroy('fenced-0', 6);
    assert.equal(existsSync(`${dataDir}/instances/fenced-0`), false);
    assert.equal(readFileSync(`${dataDir}/fence/fenced-0`, 'utf8').trim(), '6');
    // A fresh engine object (another worker, a restart) knows it too.
    const fresh = new RealEngine(realHost(name, dataDir), new LocalTransport(name), options);
    await assert.rejects(
      fresh.create(sandboxRequest(images, 'fenced-0', 5)),
      (e) => isVfleetError(e) && e.code === 'stale-generation' && !e.retryable,
    );
  });

  it('writes a record with what the instance is', async () => {
    await engine.create(sandboxRequest(images, 'rec-0', 1));
    const record = JSON.parse(readFileSync(`${dataDir}/instances/rec-0/record.json`, 'utf8'));
    assert.equal(record.formatVersion, 2);
    assert.equal(record.instance, 'rec-0');
    assert.equal(record.group, 'rec');
    assert.equal(record.generation, 1);
    assert.equal(record.kind, 'container');
    assert.equal(record.image.name, 'busybox');
    assert.deepEqual(record.resources, { vcpus: 1, memoryMiB: 64, diskGiB: 1 });
    assert.deepEqual(record.packages, rootfsInventory());
    assert.match(record.image.staged.rootfs.path, new RegExp(`^${dataDir}/images/[0-9a-f]{64}/`));
    // A record an older vfleet wrote (format 1) named the instance `name`: it still reads, and
    // the next change writes it as format 2.
    const { instance, ...rest } = record;
    const file = `${dataDir}/instances/rec-0/record.json`;
    writeFileSync(file, JSON.stringify({ ...rest, formatVersion: 1, name: instance }));
    assert.equal((await engine.describe('rec-0'))?.instance, 'rec-0');
    assert.ok((await engine.list()).some((i) => i.instance === 'rec-0'));
    await engine.stop('rec-0', 2);
    const rewritten = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(
      [rewritten.formatVersion, rewritten.instance, rewritten.name],
      [2, 'rec-0', undefined],
    );
    await engine.destroy('rec-0', 3);
  });

  it('refuses names that are not DNS labels before touching the host', async () => {
    for (const bad of ['../etc', 'a;b', 'A', '-x', '', 'x'.repeat(64)]) {
      await assert.rejects(
        engine.create(sandboxRequest(images, bad, 1)),
        (e) => isVfleetError(e) && e.code === 'invalid-name',
        bad,
      );
      await assert.rejects(
        engine.describe(bad),
        (e) => isVfleetError(e) && e.code === 'invalid-name',
      );
    }
  });

  it('copyDisk only between real hosts', async () => {
    await engine.create(sandboxRequest(images, 'cross-0', 1));
    await assert.rejects(
      engine.copyDisk('cross-0', 1, engine),
      (e) => isVfleetError(e) && e.code === 'engine-mismatch',
    );
    await engine.destroy('cross-0', 2);
  });
});
