// cgroup v2 for sandboxes: each sandbox gets `<cgroup2 mount>/vfleet/<host>/<name>` (the host's
// spec name keeps two vfleet hosts on one machine apart). The cgroup is used even where the
// memory and cpu controllers are not available to it (a host still on cgroup v1 for them, as
// in many containers): it holds every process of the sandbox, so stop and destroy can kill them
// all (`cgroup.kill`) and prove nothing is left (`cgroup.procs` empty). Limits are written only
// where the controllers exist, and the record and facts say which were enforced.
import type { Transport } from '../../transport/transport.js';
import { exists, mkdirs, readText, waitFor, writeInPlace } from './host-commands.js';

export interface Cgroup2 {
  readonly mount: string;
  /** Controllers available at the mount's root (`cgroup.controllers`). */
  readonly controllers: readonly string[];
}

/** The cgroup2 mount point in a /proc/self/mountinfo text, if there is one. */
export function cgroup2MountOf(mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    if (right.split(' ')[0] !== 'cgroup2') continue;
    const mountPoint = left.split(' ')[4];
    // mountinfo escapes spaces and the like as \ooo octal
    if (mountPoint)
      return mountPoint.replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      );
  }
  return undefined;
}

export async function findCgroup2(t: Transport): Promise<Cgroup2 | null> {
  const mountinfo = await readText(t, '/proc/self/mountinfo');
  const mount = mountinfo === undefined ? undefined : cgroup2MountOf(mountinfo);
  if (!mount) return null;
  const controllers = await readText(t, `${mount}/cgroup.controllers`);
  if (controllers === undefined) return null;
  return { mount, controllers: controllers.trim().split(/\s+/).filter(Boolean) };
}

export interface SandboxCgroup {
  readonly path: string;
  readonly memory: boolean;
  readonly cpu: boolean;
  readonly note?: string;
}

const LIMITED = ['memory', 'cpu'] as const;

/**
 * Makes the sandbox's cgroup and writes its limits where it can. Undefined when the host has no
 * writable cgroup v2 at all: the sandbox then runs without one (and says so).
 */
export async function makeSandboxCgroup(
  t: Transport,
  cg: Cgroup2 | null,
  host: string,
  name: string,
  limits: { memoryMiB: number; vcpus: number },
): Promise<SandboxCgroup | undefined> {
  if (!cg) return undefined;
  const parents = [cg.mount, `${cg.mount}/vfleet`, `${cg.mount}/vfleet/${host}`];
  const path = `${parents[2]}/${name}`;
  try {
    await mkdirs(t, path);
  } catch {
    return undefined;
  }
  const wanted = LIMITED.filter((c) => cg.controllers.includes(c));
  const missing = LIMITED.filter((c) => !cg.controllers.includes(c));
  // A controller reaches a child only when every ancestor enables it for its children.
  for (const parent of parents) {
    for (const controller of wanted) {
      await writeInPlace(t, `${parent}/cgroup.subtree_control`, `+${controller}`).catch(
        () => undefined,
      );
    }
  }
  let memory = false;
  let cpu = false;
  if (await exists(t, `${path}/memory.max`)) {
    await writeInPlace(t, `${path}/memory.max`, String(limits.memoryMiB * 1024 * 1024));
    memory = true;
  }
  if (await exists(t, `${path}/cpu.max`)) {
    await writeInPlace(t, `${path}/cpu.max`, `${limits.vcpus * 100_000} 100000`);
    cpu = true;
  }
  const note =
    memory && cpu
      ? undefined
      : `cgroup v2 at ${cg.mount} offers ${cg.controllers.join(' ') || 'no controllers'}; not enforced: ${[
          ...(memory ? [] : ['memory']),
          ...(cpu ? [] : ['cpu']),
        ].join(
          ', ',
        )}${missing.length > 0 ? ' (the host keeps those controllers elsewhere, e.g. cgroup v1)' : ''}`;
  return { path, memory, cpu, ...(note ? { note } : {}) };
}

/** Pids in a cgroup (empty when it is gone). */
export async function cgroupPids(t: Transport, path: string): Promise<number[]> {
  const text = await readText(t, `${path}/cgroup.procs`);
  return (text ?? '').split('\n').filter(Boolean).map(Number);
}

/** Kills everything in the cgroup and removes it; gone already is fine. */
export async function removeCgroup(t: Transport, path: string): Promise<void> {
  if (!(await exists(t, path))) return;
  if (await exists(t, `${path}/cgroup.kill`)) {
    await writeInPlace(t, `${path}/cgroup.kill`, '1').catch(() => undefined);
  } else {
    for (const pid of await cgroupPids(t, path)) await t.exec(['kill', '-s', 'KILL', String(pid)]);
  }
  await waitFor(async () => (await cgroupPids(t, path)).length === 0, 5_000);
  await t.exec(['rmdir', '--', path]);
}
