// Containers as sandboxes of the chroot family: the image's root filesystem unpacked into the
// instance's folder, its command run under `unshare` (own pid, mount, uts, ipc and, by default,
// network namespaces; /proc of the new pid namespace mounted inside the rootfs) and `chroot`,
// detached with a pidfile and a log by vfleet's launch helper, inside a cgroup v2 that carries
// its memory and cpu limits where the host has those controllers.
//
//   <dir>/rootfs/        the unpacked image (rootfs.partial/ while unpacking)
//   <dir>/sandbox.pid    the `unshare` process; its one child is the sandbox's PID 1
//   <dir>/console.log    what the command writes
//
// A patch runs the rootfs' own apt-get chrooted into it, in namespaces of its own
// (sandbox-patch.ts, apt-patch.ts).
import { stat } from 'node:fs/promises';
import { VfleetError } from '../../model/errors.js';
import type { PackageVersions } from '../../model/fleet.js';
import { copyFile, run, type Transport } from '../../transport/transport.js';
import {
  type AptLimits,
  type AptPatchResult,
  aptPatch,
  DEFAULT_APT_LIMITS,
  inventoryOf,
} from './apt-patch.js';
import { type Cgroup2, findCgroup2, makeSandboxCgroup, removeCgroup } from './cgroups.js';
import {
  exists,
  mkdirs,
  processAlive,
  readPid,
  readText,
  removeTree,
  signal,
  waitFor,
  writeInPlace,
} from './host-commands.js';
import { installLaunchHelper } from './host-helper.js';
import type { StagedFile } from './image-staging.js';
import type {
  DriverContext,
  DriverStatus,
  InstanceDriver,
  InstanceRecord,
  Provisioned,
  ProvisionRequest,
} from './instance-driver.js';
import { installChrootHelper, sandboxRoot } from './sandbox-patch.js';

export { inventoryOf };

export interface SandboxDriverOptions {
  /** How long PID 1 has to exit after SIGTERM before everything is killed. Default 10 s. */
  readonly stopTimeoutMs?: number;
  /** How long the sandbox may take to appear after the launch. Default 10 s. */
  readonly startTimeoutMs?: number;
  /** `none` (default): a network namespace of its own, with only a loopback that is down. */
  readonly network?: 'none' | 'host';
  /** Time limits of a patch's steps (apt-patch.ts); VFLEET_PATCH_TIMEOUT_MS sets `installMs`. */
  readonly patch?: Partial<AptLimits>;
}

const DEFAULT_COMMAND = ['/sbin/init'];
const SANDBOX_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class SandboxDriver implements InstanceDriver {
  readonly kind = 'container' as const;
  private readonly stopTimeoutMs: number;
  private readonly startTimeoutMs: number;
  private readonly network: 'none' | 'host';
  private readonly aptLimits: AptLimits;
  private readonly helpers = new WeakMap<Transport, Promise<string>>();
  private readonly chrootHelpers = new WeakMap<Transport, Promise<string>>();
  private readonly cgroups = new WeakMap<Transport, Promise<Cgroup2 | null>>();

  constructor(options: SandboxDriverOptions = {}) {
    this.stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.startTimeoutMs = options.startTimeoutMs ?? 10_000;
    this.network = options.network ?? 'none';
    this.aptLimits = { ...DEFAULT_APT_LIMITS, ...options.patch };
  }

  async provision(ctx: DriverContext, request: ProvisionRequest): Promise<Provisioned> {
    const rootfs = `${ctx.dir}/rootfs`;
    const staged: Record<string, StagedFile> = {};
    // A rootfs copied here by a move is already in place: keep it.
    if (!(await exists(ctx.t, rootfs))) {
      const source = request.image.source?.rootfs;
      if (!source) {
        throw new VfleetError(
          'image-missing',
          `image ${request.image.name} has no source.rootfs for container ${request.name} on ${ctx.host}`,
        );
      }
      const isFolder = await stat(source).then(
        (s) => s.isDirectory(),
        () => false,
      );
      const tar = isFolder
        ? await ctx.stager.stageFolder(source)
        : await ctx.stager.stageLocal(source, 'rootfs.tar');
      staged.rootfs = tar;
      await unpack(ctx.t, tar.path, ctx.dir, 'rootfs');
    }
    await makeDevices(ctx.t, rootfs);
    const cgroup = await makeSandboxCgroup(
      ctx.t,
      await this.cgroup2(ctx.t),
      ctx.host,
      ctx.instance,
      request.resources,
    ).catch(() => undefined);
    return {
      staged,
      packages: (await this.dpkgInventory(ctx)) ?? { ...request.image.packages },
      driver: { cgroup: cgroup?.path ?? null },
    };
  }

  async start(ctx: DriverContext, record: InstanceRecord): Promise<void> {
    if ((await this.status(ctx, record)).running) return;
    const rootfs = `${ctx.dir}/rootfs`;
    const pidfile = `${ctx.dir}/sandbox.pid`;
    await mkdirs(ctx.t, `${rootfs}/proc`);
    await ctx.t.exec(['rm', '-f', '--', pidfile]);
    const cgroup = await makeSandboxCgroup(
      ctx.t,
      await this.cgroup2(ctx.t),
      ctx.host,
      ctx.instance,
      record.resources,
    );
    const command = record.image.command?.length ? record.image.command : DEFAULT_COMMAND;
    const helper = await this.helper(ctx);
    await run(ctx.t, [
      'setsid',
      '--fork',
      '/bin/sh',
      helper,
      pidfile,
      `${ctx.dir}/console.log`,
      cgroup?.path ?? '-',
      '--',
      'env',
      '-i',
      SANDBOX_PATH,
      'HOME=/',
      'TERM=linux',
      'container=vfleet',
      'unshare',
      '--pid',
      '--fork',
      '--kill-child',
      '--mount',
      '--uts',
      '--ipc',
      ...(this.network === 'none' ? ['--net'] : []),
      `--mount-proc=${rootfs}/proc`,
      'chroot',
      rootfs,
      ...command,
    ]);
    const up = await waitFor(async () => {
      const s = await this.status(ctx, record);
      return s.running && s.runtime.initPid !== undefined;
    }, this.startTimeoutMs);
    if (!up) {
      const log = (await readText(ctx.t, `${ctx.dir}/console.log`)) ?? '';
      await this.kill(ctx);
      throw new VfleetError(
        'start-failed',
        `${ctx.host}: sandbox ${ctx.instance} did not come up (${command.join(' ')}): ${log.trim().split('\n').slice(-3).join(' | ') || 'no output'}`,
      );
    }
  }

  async stop(ctx: DriverContext, record: InstanceRecord): Promise<void> {
    const { pid, initPid } = await this.processes(ctx);
    if (pid !== undefined) {
      // PID 1 of a pid namespace only gets the signals it handles; SIGKILL after the timeout
      // takes the whole namespace with it.
      if (initPid !== undefined) await signal(ctx.t, initPid, 'TERM');
      else await signal(ctx.t, pid, 'TERM');
      const rootfs = `${ctx.dir}/rootfs`;
      const gone = await waitFor(
        async () => !(await processAlive(ctx.t, pid, rootfs)),
        this.stopTimeoutMs,
      );
      if (!gone) await this.kill(ctx);
    }
    const cgroup = record.driver.cgroup;
    if (typeof cgroup === 'string' && (await exists(ctx.t, `${cgroup}/cgroup.kill`))) {
      // Anything that escaped PID 1's exit (it cannot escape the cgroup) goes too.
      await writeInPlace(ctx.t, `${cgroup}/cgroup.kill`, '1').catch(() => undefined);
    }
  }

  async status(ctx: DriverContext, record: InstanceRecord): Promise<DriverStatus> {
    const { pid, initPid } = await this.processes(ctx);
    const cgroup = typeof record.driver.cgroup === 'string' ? record.driver.cgroup : undefined;
    const limits = await this.limits(ctx, cgroup);
    return {
      running: pid !== undefined,
      runtime: {
        ...(pid === undefined ? {} : { pid }),
        ...(initPid === undefined ? {} : { initPid }),
        limits,
        log: `${ctx.dir}/console.log`,
      },
    };
  }

  async remove(ctx: DriverContext, record: InstanceRecord | undefined): Promise<void> {
    await this.kill(ctx);
    const cg = await this.cgroup2(ctx.t);
    const paths = new Set<string>();
    if (typeof record?.driver.cgroup === 'string') paths.add(record.driver.cgroup);
    if (cg) paths.add(`${cg.mount}/vfleet/${ctx.host}/${ctx.instance}`);
    for (const path of paths) await removeCgroup(ctx.t, path);
  }

  async inventory(ctx: DriverContext, record: InstanceRecord): Promise<PackageVersions> {
    return (await this.dpkgInventory(ctx)) ?? { ...record.image.packages };
  }

  /** apt-get in the rootfs, chrooted in namespaces of its own (sandbox-patch.ts). */
  async patch(
    ctx: DriverContext,
    _record: InstanceRecord,
    packages: PackageVersions,
  ): Promise<AptPatchResult> {
    const rootfs = `${ctx.dir}/rootfs`;
    if (!(await exists(ctx.t, `${rootfs}/var/lib/dpkg/status`))) {
      throw new VfleetError(
        'patch-not-supported',
        `host ${ctx.host} cannot patch ${ctx.instance}: its rootfs has no dpkg database (/var/lib/dpkg/status)`,
      );
    }
    // Only the rootfs' own programs run: a rootfs without apt-get is not patched with the host's.
    const apt = await ctx.t.exec(['test', '-x', `${rootfs}/usr/bin/apt-get`]);
    if (apt.code !== 0) {
      throw new VfleetError(
        'patch-not-supported',
        `host ${ctx.host} cannot patch ${ctx.instance}: its rootfs has no /usr/bin/apt-get`,
      );
    }
    // What the chroot helper mounts on, and the devices every program expects.
    await mkdirs(ctx.t, `${rootfs}/proc`);
    await makeDevices(ctx.t, rootfs);
    const helper = await this.chrootHelper(ctx);
    return aptPatch(
      sandboxRoot(ctx.t, ctx.host, ctx.instance, rootfs, helper),
      packages,
      this.aptLimits,
    );
  }

  async copyOut(ctx: DriverContext, record: InstanceRecord, target: DriverContext): Promise<void> {
    const exported = `${ctx.dir}/rootfs.export.tar`;
    const incoming = `${target.dir}/rootfs.incoming.tar`;
    const cgroup = typeof record.driver.cgroup === 'string' ? record.driver.cgroup : undefined;
    const freezer =
      cgroup && (await exists(ctx.t, `${cgroup}/cgroup.freeze`))
        ? `${cgroup}/cgroup.freeze`
        : undefined;
    try {
      // Frozen while it is read (cgroup v2 freezer, where there is a cgroup), so the copy is
      // one moment of the filesystem as far as the sandbox's own processes go.
      if (freezer) await writeInPlace(ctx.t, freezer, '1');
      await run(ctx.t, [
        'tar',
        '--numeric-owner',
        '--one-file-system',
        '-cf',
        exported,
        '-C',
        `${ctx.dir}/rootfs`,
        '.',
      ]);
    } finally {
      if (freezer) await writeInPlace(ctx.t, freezer, '0').catch(() => undefined);
    }
    try {
      await mkdirs(target.t, target.dir);
      await copyFile(ctx.t, exported, target.t, incoming, 0o600);
      await removeTree(target.t, `${target.dir}/rootfs`);
      await unpack(target.t, incoming, target.dir, 'rootfs');
    } finally {
      await ctx.t.exec(['rm', '-f', '--', exported]);
      await target.t.exec(['rm', '-f', '--', incoming]);
    }
  }

  /** The unshare process if it is ours and alive, and the sandbox's PID 1 (its one child). */
  private async processes(ctx: DriverContext): Promise<{ pid?: number; initPid?: number }> {
    const pid = await readPid(ctx.t, `${ctx.dir}/sandbox.pid`);
    if (pid === undefined || !(await processAlive(ctx.t, pid, `${ctx.dir}/rootfs`))) return {};
    const children = await readText(ctx.t, `/proc/${pid}/task/${pid}/children`);
    const initPid = Number(children?.trim().split(/\s+/)[0]);
    return Number.isInteger(initPid) && initPid > 1 ? { pid, initPid } : { pid };
  }

  private async kill(ctx: DriverContext): Promise<void> {
    const { pid, initPid } = await this.processes(ctx);
    if (initPid !== undefined) await signal(ctx.t, initPid, 'KILL');
    if (pid === undefined) return;
    await signal(ctx.t, pid, 'KILL');
    await waitFor(async () => !(await processAlive(ctx.t, pid, `${ctx.dir}/rootfs`)), 5_000);
  }

  private async limits(
    ctx: DriverContext,
    cgroup: string | undefined,
  ): Promise<{ memory: boolean; cpu: boolean; note?: string }> {
    if (!cgroup) return { memory: false, cpu: false, note: 'no writable cgroup v2 on the host' };
    const [memory, cpu] = await Promise.all([
      readText(ctx.t, `${cgroup}/memory.max`),
      readText(ctx.t, `${cgroup}/cpu.max`),
    ]);
    const has = { memory: memory !== undefined, cpu: cpu !== undefined };
    if (has.memory && has.cpu) return has;
    const cg = await this.cgroup2(ctx.t);
    return {
      ...has,
      note: `not enforced: ${[has.memory ? '' : 'memory', has.cpu ? '' : 'cpu'].filter(Boolean).join(', ')} (cgroup v2 at ${cg?.mount ?? '?'} offers ${cg?.controllers.join(' ') || 'no controllers'})`,
    };
  }

  /** The rootfs' installed packages from its dpkg database, when it has one. */
  private async dpkgInventory(ctx: DriverContext): Promise<PackageVersions | undefined> {
    const admindir = `${ctx.dir}/rootfs/var/lib/dpkg`;
    if (!(await exists(ctx.t, `${admindir}/status`))) return undefined;
    const result = await ctx.t
      .exec([
        'dpkg-query',
        `--admindir=${admindir}`,
        '-W',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
        '-f=${db:Status-Status}\\t${binary:Package}\\t${Version}\\n',
      ])
      .catch(() => undefined);
    if (result?.code !== 0) return undefined; // no dpkg-query on this host
    return inventoryOf(result.stdout.toString('utf8'), `${ctx.host}:${admindir}`);
  }

  private helper(ctx: DriverContext): Promise<string> {
    let known = this.helpers.get(ctx.t);
    if (!known) {
      known = installLaunchHelper(ctx.t, ctx.layout.bin);
      known.catch(() => this.helpers.delete(ctx.t));
      this.helpers.set(ctx.t, known);
    }
    return known;
  }

  private chrootHelper(ctx: DriverContext): Promise<string> {
    let known = this.chrootHelpers.get(ctx.t);
    if (!known) {
      known = installChrootHelper(ctx.t, ctx.layout.bin);
      known.catch(() => this.chrootHelpers.delete(ctx.t));
      this.chrootHelpers.set(ctx.t, known);
    }
    return known;
  }

  private cgroup2(t: Transport): Promise<Cgroup2 | null> {
    let known = this.cgroups.get(t);
    if (!known) {
      known = findCgroup2(t);
      known.catch(() => this.cgroups.delete(t));
      this.cgroups.set(t, known);
    }
    return known;
  }
}

/** The character devices every program expects, as container runtimes make them. */
const DEVICES: ReadonlyArray<[string, number, number]> = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];

/** Gives the rootfs a /dev with the usual devices, where the image left them out. */
async function makeDevices(t: Transport, rootfs: string): Promise<void> {
  await mkdirs(t, `${rootfs}/dev`);
  const present = await t.exec(['ls', '-1', '--', `${rootfs}/dev`]);
  const have = new Set(present.stdout.toString('utf8').split('\n'));
  for (const [name, major, minor] of DEVICES) {
    if (have.has(name)) continue;
    await run(t, [
      'mknod',
      '-m',
      '666',
      `${rootfs}/dev/${name}`,
      'c',
      String(major),
      String(minor),
    ]);
  }
}

/** Unpacks a tar into `<dir>/<name>`, through `<name>.partial` so a half-unpacked tree never counts. */
async function unpack(t: Transport, tar: string, dir: string, name: string): Promise<void> {
  const partial = `${dir}/${name}.partial`;
  await removeTree(t, partial);
  await mkdirs(t, partial);
  // GNU tar recognizes gzip (or none) by itself; --numeric-owner keeps the image's ids.
  await run(t, ['tar', '--numeric-owner', '-xpf', tar, '-C', partial]);
  await run(t, ['mv', '-T', '--', partial, `${dir}/${name}`]);
}
