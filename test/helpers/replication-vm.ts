// What the disk replication test and bench (vm-replication.ts) share: two hosts on this machine
// (a data folder each), a VM of the test images that writes a counter to its disk every second
// (`vfleet.counter`, scripts/build-test-images.sh), its counter read from the serial console,
// the driver context the replication functions take, and dirtying its disk from the outside.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { HostLayout } from '../../src/engines/real/host-layout.js';
import { ImageStager } from '../../src/engines/real/image-staging.js';
import type { DriverContext, InstanceRecord } from '../../src/engines/real/instance-driver.js';
import type { QemuDriverOptions } from '../../src/engines/real/qemu-driver.js';
import { withQmp } from '../../src/engines/real/qmp-client.js';
import { RealEngine, type RealEngineOptions } from '../../src/engines/real/real-engine.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import type { Transport } from '../../src/transport/transport.js';
import type { EngineTestImages } from './engine-test-images.js';
import { realHost, vmRequest } from './real-hosts.js';
import type { TestSshd } from './sshd.js';

export interface ReplicationHost {
  readonly name: string;
  readonly dataDir: string;
  readonly t: Transport;
  readonly layout: HostLayout;
  readonly engine: RealEngine;
}

// KVM may open here and still not work (nested guests): emulation.
const OPTIONS: RealEngineOptions = { qemu: { accel: 'tcg', stopTimeoutMs: 5_000 } };

export function replicationHost(name: string): ReplicationHost {
  const dataDir = mkdtempSync(`${tmpdir()}/vfleet-repl-${name}-`);
  const t = new LocalTransport(name);
  return {
    name,
    dataDir,
    t,
    layout: new HostLayout(name, dataDir),
    engine: new RealEngine(realHost(name, dataDir), t, OPTIONS),
  };
}

/**
 * A host behind a test sshd of this machine (its data folder is local too, for the checks);
 * `qemu` adds to the driver's test options (a live migration's bounds).
 */
export function sshReplicationHost(
  sshd: TestSshd,
  name: string,
  qemu: QemuDriverOptions = {},
): ReplicationHost {
  const host = sshd.host(name);
  const t = new SshTransport(host, { readyTimeoutMs: 2_000 });
  return {
    name,
    dataDir: host.dataDir,
    t,
    layout: new HostLayout(name, host.dataDir),
    engine: new RealEngine(host, t, { ...OPTIONS, qemu: { ...OPTIONS.qemu, ...qemu } }),
  };
}

/** What the engine hands a driver for `instance` on `host`. */
export function driverContext(host: ReplicationHost, instance: string): DriverContext {
  return {
    t: host.t,
    host: host.name,
    instance,
    layout: host.layout,
    stager: new ImageStager(host.t, host.layout),
    dir: host.layout.instanceDir(instance),
  };
}

export function recordOf(host: ReplicationHost, instance: string): InstanceRecord {
  return JSON.parse(readFileSync(host.layout.record(instance), 'utf8')) as InstanceRecord;
}

/**
 * A VM of the test kernel (uncompressed: about 2 s to boot under TCG) whose guest counts on its
 * disk, an overlay on `disk` (a base with data in it, so that a full copy weighs something).
 */
export function counterVm(
  images: EngineTestImages,
  disk: string,
  name: string,
  generation: number,
): InstanceRequest {
  const request = vmRequest(images, name, generation);
  const source = {
    disk,
    kernel: images.vmlinux,
    initrd: images.initrd,
    cmdline: `${images.cmdline} cryptomgr.notests vfleet.counter`,
  };
  return { ...request, image: { ...request.image, name: 'counter-vm', source } };
}

export interface Counter {
  /** The value the guest found on its disk at boot. */
  readonly boot?: number;
  /** The last value it wrote (and then printed). */
  readonly last?: number;
}

export function counterOf(host: ReplicationHost, instance: string): Counter {
  const log = `${host.layout.instanceDir(instance)}/serial.log`;
  const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
  // Whole lines only: the guest may be half-way through writing the last one ("1" of "10").
  const boot = /^VFLEET-COUNTER-BOOT (\d+)\r?\n/m.exec(text)?.[1];
  const all = [...text.matchAll(/^VFLEET-COUNTER (\d+)\r?\n/gm)];
  const last = all.at(-1)?.[1];
  return {
    ...(boot !== undefined ? { boot: Number(boot) } : {}),
    ...(last !== undefined ? { last: Number(last) } : {}),
  };
}

/** The counter in the first sector of a disk (qcow2, not in use), as the guest would read it. */
export function counterOnDisk(disk: string): number | undefined {
  // qemu-io -v dumps 16 bytes a line: "00000000:  56 46 4c …  VFLEET.COUNTER.", hex first.
  const dump = execFileSync('qemu-io', ['-f', 'qcow2', '-r', '-c', 'read -v 0 64', disk]);
  const hex = [...dump.toString().matchAll(/^[0-9a-f]{8}: ((?: [0-9a-f]{2}){16})/gm)].flatMap((m) =>
    (m[1] as string).trim().split(' '),
  );
  const sector = Buffer.from(hex.join(''), 'hex').toString('latin1');
  const value = /^VFLEET-COUNTER (\d+)\n/.exec(sector)?.[1];
  return value === undefined ? undefined : Number(value);
}

/** Polls the serial console until `ready` holds of the counter, or fails after `timeoutMs`. */
export async function waitForCounter(
  host: ReplicationHost,
  instance: string,
  ready: (c: Counter) => boolean,
  timeoutMs = 90_000,
): Promise<Counter> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = counterOf(host, instance);
    if (ready(c)) return c;
    if (Date.now() > deadline) {
      throw new Error(
        `${host.name}: ${instance}'s counter: ${JSON.stringify(c)} after ${timeoutMs} ms`,
      );
    }
    await delay(100);
  }
}

/**
 * Writes `pattern` over [offset, offset + length) of the running VM's disk through its own QEMU
 * (HMP qemu-io on the drive): the dirty bitmap sees it as it sees the guest's writes.
 */
export async function dirty(
  host: ReplicationHost,
  instance: string,
  writes: ReadonlyArray<{ offset: number; length: number; pattern: number }>,
): Promise<void> {
  await withQmp(
    host.t,
    `${host.layout.instanceDir(instance)}/qmp.sock`,
    async (c) => {
      // qemu-io's report goes to QEMU's stdout, not to the answer: the increments' sizes tell.
      for (const w of writes) {
        await c.execute('human-monitor-command', {
          'command-line': `qemu-io virtio0 "write -P ${w.pattern} ${w.offset} ${w.length}"`,
        });
      }
    },
    60_000,
  );
}
