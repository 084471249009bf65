// Builders and checks for tests of the real engine on this machine: hosts with their own data
// folder, requests for the test images, a transport that can be made to stop answering, and
// the leftovers check (processes, folders, cgroups) with its cleanup.
import { readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Duplex, Readable, Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { VfleetError } from '../../src/model/errors.js';
import type { Host, Resources } from '../../src/model/fleet.js';
import type { ExecOptions, ExecResult, Transport } from '../../src/transport/transport.js';
import type { EngineTestImages } from './engine-test-images.js';
import { aModelHost } from './hosts.js';

export function realHost(name: string, dataDir: string): Host {
  return aModelHost({ name, engine: 'local', dataDir, memoryMiB: 2048, diskGiB: 10 });
}

/** PID 1 of the test sandboxes: exits on SIGTERM (PID 1 of a namespace must handle it itself). */
export const SANDBOX_COMMAND = [
  '/bin/sh',
  '-c',
  'trap "exit 0" TERM; echo sandbox up; while :; do sleep 1 & wait; done',
];

const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;

export function sandboxRequest(
  images: EngineTestImages,
  name: string,
  generation: number,
  command: readonly string[] = SANDBOX_COMMAND,
): InstanceRequest {
  return {
    name,
    group: name.replace(/-\d+$/, ''),
    generation,
    image: {
      name: 'busybox',
      kind: 'container',
      os: OS,
      packages: { 'busybox-static': 'from-the-spec' },
      source: { rootfs: images.rootfs },
      command,
    },
    resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 },
  };
}

export function vmRequest(
  images: Pick<EngineTestImages, 'base' | 'vmlinuz' | 'initrd' | 'cmdline'>,
  name: string,
  generation: number,
  resources: Resources = { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
): InstanceRequest {
  return {
    name,
    group: name.replace(/-\d+$/, ''),
    generation,
    image: {
      name: 'tiny-vm',
      kind: 'vm',
      os: OS,
      packages: { 'linux-image-amd64': 'test' },
      source: {
        disk: images.base,
        kernel: images.vmlinuz,
        initrd: images.initrd,
        cmdline: images.cmdline,
      },
    },
    resources,
  };
}

/** A transport that stops answering on demand, as a host that went away does. */
export class SwitchableTransport implements Transport {
  down = false;
  constructor(private readonly inner: Transport) {}
  get host(): string {
    return this.inner.host;
  }
  private check(): void {
    if (this.down) {
      throw new VfleetError('host-unreachable', `host ${this.inner.host} does not answer`, {
        retryable: true,
      });
    }
  }
  async exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    this.check();
    return this.inner.exec(argv, options);
  }
  async readFile(path: string): Promise<Buffer> {
    this.check();
    return this.inner.readFile(path);
  }
  async writeFile(path: string, data: string | Buffer, mode?: number): Promise<void> {
    this.check();
    return this.inner.writeFile(path, data, mode);
  }
  async createReadStream(path: string): Promise<Readable> {
    this.check();
    return this.inner.createReadStream(path);
  }
  async createWriteStream(path: string, mode?: number): Promise<Writable> {
    this.check();
    return this.inner.createWriteStream(path, mode);
  }
  async connectUnixSocket(path: string): Promise<Duplex> {
    this.check();
    return this.inner.connectUnixSocket(path);
  }
  async connectLoopbackPort(port: number): Promise<Duplex> {
    this.check();
    return this.inner.connectLoopbackPort(port);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Pids of this machine's processes whose command line mentions `path` (a test's data folder). */
/** Alive and not a zombie (this machine's init may reap a daemon's exit a moment later). */
export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function processesUsing(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(path)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The cgroup v2 mount point, as the engine finds it. */
export function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
  }
  return undefined;
}

export function hostCgroup(host: string): string | undefined {
  const mount = cgroup2Mount();
  return mount ? `${mount}/vfleet/${host}` : undefined;
}

/** Kills every process in a cgroup v2 (cgroup.kill where the kernel has it). */
function killCgroup(cgroup: string): void {
  try {
    writeFileSync(`${cgroup}/cgroup.kill`, '1');
    return;
  } catch {
    // an older kernel: one pid at a time
  }
  let procs: string[] = [];
  try {
    procs = readFileSync(`${cgroup}/cgroup.procs`, 'utf8').split('\n').filter(Boolean);
  } catch {
    return;
  }
  for (const pid of procs) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/**
 * After a test: kills what it started (found by its data folder in their command lines, one
 * pid at a time) and removes its cgroups and folder. Returns what it had to clean, so a test
 * can assert there was nothing.
 */
export async function cleanUp(
  dataDir: string,
  host: string,
): Promise<{ pids: number[]; cgroups: string[] }> {
  const pids = processesUsing(dataDir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 50 && processesUsing(dataDir).length > 0; i++) await delay(20);
  const cgroups: string[] = [];
  const parent = hostCgroup(host);
  if (parent) {
    let children: string[] = [];
    try {
      children = readdirSync(parent, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      // no such cgroup
    }
    for (const child of children) {
      const cgroup = `${parent}/${child}`;
      cgroups.push(cgroup);
      // A sandbox's PID 1 does not name the data folder: it dies with `unshare`, a moment
      // later, or here with everything else its cgroup still holds.
      killCgroup(cgroup);
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(cgroup);
          break;
        } catch {
          await delay(20); // still busy: its last processes are exiting
        }
      }
    }
    try {
      rmdirSync(parent);
    } catch {
      // busy or gone
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
  return { pids, cgroups };
}
