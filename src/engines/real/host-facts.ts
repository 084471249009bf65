// What a real host is, asked of the host itself: CPU topology (lscpu), memory (/proc/meminfo),
// the data folder's disk (df), kernel and architecture (uname), OS (/etc/os-release), QEMU,
// KVM and cgroup v2. The parsers are pure and tested on their own; `hostFacts` runs the commands.
import type { Arch, OsFamily } from '../../model/fleet.js';
import type { Transport } from '../../transport/transport.js';
import type { HostFacts } from '../host-engine.js';
import { findCgroup2 } from './cgroups.js';
import { readText } from './host-commands.js';

const FAMILIES: readonly OsFamily[] = [
  'debian',
  'ubuntu',
  'rhel',
  'centos',
  'rocky',
  'almalinux',
  'fedora',
  'sles',
  'opensuse',
  'alpine',
  'arch',
  'windows',
  'freebsd',
];

/** `lscpu -J` → the topology; a field lscpu leaves out counts as 1. */
export function parseLscpu(json: string): HostFacts['cpu'] {
  const fields = new Map<string, string>();
  const walk = (entries: Array<{ field: string; data: string; children?: unknown }>) => {
    for (const e of entries) {
      fields.set(e.field.replace(/:$/, ''), e.data);
      if (Array.isArray(e.children)) walk(e.children as typeof entries);
    }
  };
  walk((JSON.parse(json) as { lscpu: Array<{ field: string; data: string }> }).lscpu);
  const count = (name: string) => {
    const n = Number(fields.get(name));
    return Number.isInteger(n) && n > 0 ? n : 1;
  };
  return {
    sockets: count('Socket(s)'),
    coresPerSocket: count('Core(s) per socket'),
    threadsPerCore: count('Thread(s) per core'),
  };
}

export function parseMeminfo(text: string): number {
  const kib = Number(/^MemTotal:\s+(\d+)\s+kB/m.exec(text)?.[1]);
  return Number.isFinite(kib) ? Math.floor(kib / 1024) : 0;
}

/** `df -P -k PATH` → the filesystem's size in GiB (whole GiB, rounded down). */
export function parseDf(text: string): number {
  const line = text.trim().split('\n')[1] ?? '';
  const kib = Number(line.trim().split(/\s+/)[1]);
  return Number.isFinite(kib) ? Math.floor(kib / 1024 / 1024) : 0;
}

/** /etc/os-release → family (ID, else the first known ID_LIKE) and release (VERSION_ID). */
export function parseOsRelease(text: string): { family: OsFamily; release: string } {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) values.set(m[1] as string, (m[2] as string).replace(/^(["'])(.*)\1$/, '$2'));
  }
  const candidates = [values.get('ID') ?? '', ...(values.get('ID_LIKE') ?? '').split(/\s+/)];
  const known = candidates.find((c) => (FAMILIES as readonly string[]).includes(c));
  // An unknown family is reported as os-release names it, for the reader to see.
  const family = (known ?? values.get('ID') ?? 'unknown') as OsFamily;
  return { family, release: values.get('VERSION_ID') ?? '' };
}

/** uname -m; one the schema does not know is reported as the kernel names it, for the reader. */
export function archOf(unameM: string): Arch {
  return unameM.trim() as Arch;
}

async function out(t: Transport, argv: string[]): Promise<string | undefined> {
  const r = await t.exec(argv).catch(() => undefined);
  return r && r.code === 0 ? r.stdout.toString('utf8') : undefined;
}

/** The facts that do not change while the host runs (asked once per engine). */
export async function staticFacts(t: Transport) {
  const [lscpu, kernel, machine, osRelease, qemu, kvm, cgroups, unshare] = await Promise.all([
    out(t, ['env', 'LC_ALL=C', 'lscpu', '-J']),
    out(t, ['uname', '-r']),
    out(t, ['uname', '-m']),
    readText(t, '/etc/os-release'),
    out(t, ['qemu-system-x86_64', '--version']),
    kvmUsable(t),
    findCgroup2(t),
    out(t, ['unshare', '--version']),
  ]);
  const os = parseOsRelease(osRelease ?? '');
  return {
    cpu: lscpu ? parseLscpu(lscpu) : { sockets: 1, coresPerSocket: 1, threadsPerCore: 1 },
    os: { ...os, kernel: (kernel ?? '').trim(), arch: archOf(machine ?? '') },
    qemu: qemu ? (qemu.split('\n')[0] ?? '').trim() : null,
    kvm,
    cgroups,
    sandbox: unshare !== undefined,
  };
}

/** The facts that do: memory and the data folder's disk. */
export async function liveFacts(t: Transport, dataDir: string) {
  const [meminfo, df] = await Promise.all([
    readText(t, '/proc/meminfo'),
    out(t, ['df', '-P', '-k', '--', dataDir]),
  ]);
  if (meminfo === undefined) {
    throw new Error(`${t.host}: cannot read /proc/meminfo`);
  }
  return { memoryMiB: parseMeminfo(meminfo), diskGiB: df ? parseDf(df) : 0 };
}

/**
 * Whether KVM can run a stock guest: /dev/kvm readable and writable, and not PVM's KVM
 * (kvm_pvm: nested virtualization that only runs guest kernels built for it; a stock Debian
 * kernel stops after decompressing, and QEMU's accel=kvm:tcg picks KVM and hangs there).
 */
export async function kvmUsable(t: Transport): Promise<boolean> {
  const open = await t.exec(['test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm']).then(
    (r) => r.code === 0,
    () => false,
  );
  if (!open) return false;
  return t.exec(['test', '-d', '/sys/module/kvm_pvm']).then(
    (r) => r.code !== 0,
    () => false,
  );
}
