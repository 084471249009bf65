// VMs with QEMU. The instance's folder holds its disk and QEMU's runtime files:
//
//   <dir>/disk.qcow2   an overlay on the image's staged base disk (`source.disk`), or a fresh
//                      qcow2 of resources.diskGiB when the image boots `source.kernel`
//   <dir>/qemu.pid     QEMU's pidfile (-daemonize -pidfile)
//   <dir>/qmp.sock     the QMP socket: status, power button, pause for a disk copy, quit
//   <dir>/serial.log   the guest's serial console
//
// A VM whose image gives `guest` has a network (qemu-guest.ts) and is inventoried and patched
// from inside, over ssh (vm-patch.ts); its start waits for its sshd and reads its dpkg.
//
// "running" is QEMU's run state (QMP query-status), not the guest's readiness: a guest that
// is still booting is running.
import { VfleetError } from '../../model/errors.js';
import type { PackageVersions } from '../../model/fleet.js';
import { run, type Transport } from '../../transport/transport.js';
import { type AptPatchResult, DEFAULT_APT_LIMITS } from './apt-patch.js';
import {
  copyChecked,
  exists,
  mkdirs,
  processAlive,
  readPid,
  signal,
  waitFor,
} from './host-commands.js';
import { kvmUsable } from './host-facts.js';
import type { StagedFile } from './image-staging.js';
import type {
  DriverContext,
  DriverStatus,
  InstanceDriver,
  InstanceRecord,
  Provisioned,
  ProvisionRequest,
} from './instance-driver.js';
import { guestOf, installGuestfwdHelper, networkArgs } from './qemu-guest.js';
import type { MigrationOptions } from './qemu-migration.js';
import { qmp } from './qmp-client.js';
import { guestInventory, patchVm, type VmPatchLimits } from './vm-patch.js';

export interface QemuDriverOptions {
  /**
   * QEMU's -machine accel=…; default: `kvm:tcg` where the host's KVM can run a stock guest
   * (host-facts.ts kvmUsable), else `tcg` (emulation).
   */
  readonly accel?: string;
  /** How long the guest has to power off after the ACPI power button before `quit`. Default 30 s. */
  readonly stopTimeoutMs?: number;
  /** How long a QMP connection or command may take. Default 5 s. */
  readonly qmpTimeoutMs?: number;
  readonly binary?: string;
  /** Live migration's bounds and QEMU settings (qemu-migration.ts). */
  readonly migration?: MigrationOptions;
  /**
   * A guest's patch (vm-patch.ts): apt's time limits, how long its sshd may take to answer
   * (a boot included: 5 min by default, for TCG on a loaded host), and the snapshot's.
   */
  readonly patch?: Partial<VmPatchLimits>;
}

const GiB = 1024 ** 3;
/** sun_path is 108 bytes with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

export class QemuDriver implements InstanceDriver {
  readonly kind = 'vm' as const;
  private readonly accel: string | undefined;
  private readonly accelOf = new Map<string, Promise<string>>();
  private readonly stopTimeoutMs: number;
  readonly qmpTimeoutMs: number;
  private readonly binary: string;
  readonly migration: MigrationOptions;
  private readonly patchLimits: VmPatchLimits;

  constructor(options: QemuDriverOptions = {}) {
    this.accel = options.accel;
    this.patchLimits = {
      ...DEFAULT_APT_LIMITS,
      reachMs: 300_000,
      snapshotMs: 300_000,
      ...options.patch,
    };
    this.migration = options.migration ?? {};
    this.stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
    this.qmpTimeoutMs = options.qmpTimeoutMs ?? 5_000;
    this.binary = options.binary ?? 'qemu-system-x86_64';
  }

  async provision(ctx: DriverContext, request: ProvisionRequest): Promise<Provisioned> {
    const source = request.image.source ?? {};
    if (!source.disk && !source.kernel) {
      throw new VfleetError(
        'image-missing',
        `image ${request.image.name} has neither source.disk nor source.kernel for VM ${request.name} on ${ctx.host}`,
      );
    }
    const socket = `${ctx.dir}/qmp.sock`;
    if (socket.length > MAX_SOCKET_PATH) {
      throw new VfleetError(
        'path-too-long',
        `${ctx.host}: ${socket} is longer than a unix socket path may be (${MAX_SOCKET_PATH}); choose a shorter dataDir`,
      );
    }
    const staged: Record<string, StagedFile> = {};
    if (source.disk) staged.disk = await ctx.stager.stageLocal(source.disk, 'disk.qcow2');
    if (source.kernel) staged.kernel = await ctx.stager.stageLocal(source.kernel, 'vmlinuz');
    if (source.initrd) staged.initrd = await ctx.stager.stageLocal(source.initrd, 'initrd');
    const disk = `${ctx.dir}/disk.qcow2`;
    // A disk copied here by a move, or made by an earlier run of this create, is kept.
    if (!(await exists(ctx.t, disk))) {
      const partial = `${disk}.partial`;
      const wanted = request.resources.diskGiB * GiB;
      if (staged.disk) {
        const base = staged.disk.path;
        const info = JSON.parse(
          (await run(ctx.t, ['qemu-img', 'info', '--output=json', '-f', 'qcow2', base])).toString(),
        ) as { 'virtual-size'?: number };
        // An overlay is as large as its base unless asked for more; it cannot be smaller.
        const size = wanted > (info['virtual-size'] ?? 0) ? [String(wanted)] : [];
        await run(ctx.t, [
          'qemu-img',
          'create',
          '-q',
          '-f',
          'qcow2',
          '-b',
          base,
          '-F',
          'qcow2',
          partial,
          ...size,
        ]);
      } else {
        await run(ctx.t, ['qemu-img', 'create', '-q', '-f', 'qcow2', partial, String(wanted)]);
      }
      await run(ctx.t, ['mv', '-T', '--', partial, disk]);
    }
    return {
      staged,
      packages: { ...request.image.packages },
      driver: {
        accel: await this.accelFor(ctx),
        ...(request.image.guest ? { guest: request.image.guest } : {}),
      },
    };
  }

  private accelFor(ctx: DriverContext): Promise<string> {
    if (this.accel !== undefined) return Promise.resolve(this.accel);
    let known = this.accelOf.get(ctx.t.host);
    if (!known) {
      known = kvmUsable(ctx.t).then((kvm) => (kvm ? 'kvm:tcg' : 'tcg'));
      this.accelOf.set(ctx.t.host, known);
    }
    return known;
  }

  /** Boots it; a VM with guest access: also waits for its sshd, and returns its dpkg's inventory. */
  async start(ctx: DriverContext, record: InstanceRecord): Promise<PackageVersions | undefined> {
    await this.boot(ctx, record);
    const guest = guestOf(record);
    return guest ? guestInventory(ctx, guest, this.patchLimits) : undefined;
  }

  private async boot(ctx: DriverContext, record: InstanceRecord): Promise<void> {
    const now = await this.status(ctx, record);
    if (now.running) return;
    if (now.runtime.pid !== undefined) {
      // QEMU is there but not running the guest (paused by a copy that died, or shut down).
      await this.command(ctx, 'cont').catch(() => undefined);
      if ((await this.status(ctx, record)).running) return;
      await this.kill(ctx);
    }
    await ctx.t.exec(['rm', '-f', '--', `${ctx.dir}/qemu.pid`, `${ctx.dir}/qmp.sock`]);
    await installGuestfwdHelper(ctx, record);
    const argv = this.commandLine(ctx, record, await this.accelFor(ctx));
    // -daemonize returns once QEMU is set up (or failed, with its reason on stderr).
    await run(ctx.t, argv, { timeoutMs: 60_000 });
    const up = await waitFor(async () => (await this.status(ctx, record)).running, 30_000);
    if (!up) {
      await this.kill(ctx);
      throw new VfleetError(
        'start-failed',
        `${ctx.host}: VM ${ctx.instance} did not reach running`,
      );
    }
  }

  /**
   * QEMU's argument vector for the instance in `ctx`'s folder: the same devices on every host,
   * which a live migration needs (a target started with the source's machine type).
   */
  commandLine(
    ctx: DriverContext,
    record: InstanceRecord,
    accel: string,
    machine?: string,
  ): string[] {
    const dir = ctx.dir;
    const kernel = record.image.staged.kernel?.path;
    const initrd = record.image.staged.initrd?.path;
    return [
      this.binary,
      '-name',
      record.instance,
      '-machine',
      `${machine ? `${qemuOption(machine)},` : ''}accel=${accel}`,
      '-nodefaults',
      '-no-user-config',
      '-smp',
      String(record.resources.vcpus),
      '-m',
      String(record.resources.memoryMiB),
      '-drive',
      `file=${qemuOption(`${dir}/disk.qcow2`)},if=virtio,format=qcow2`,
      '-display',
      'none',
      ...networkArgs(ctx, guestOf(record)),
      '-serial',
      `file:${dir}/serial.log`,
      '-qmp',
      `unix:${qemuOption(`${dir}/qmp.sock`)},server=on,wait=off`,
      '-pidfile',
      `${dir}/qemu.pid`,
      '-daemonize',
      ...(kernel ? ['-kernel', kernel] : []),
      ...(kernel && initrd ? ['-initrd', initrd] : []),
      ...(kernel && record.image.cmdline ? ['-append', record.image.cmdline] : []),
    ];
  }

  /**
   * The target of a live migration (qemu-migration.ts): QEMU with the instance's devices, waiting
   * for a migration stream (`-incoming defer`) and paused once it has arrived (`-S`), so the
   * guest runs there only when vfleet says `cont`. Returns once its QMP answers `inmigrate`.
   */
  async startIncoming(ctx: DriverContext, record: InstanceRecord, machine: string): Promise<void> {
    await ctx.t.exec(['rm', '-f', '--', `${ctx.dir}/qemu.pid`, `${ctx.dir}/qmp.sock`]);
    await installGuestfwdHelper(ctx, record);
    const argv = this.commandLine(ctx, record, await this.accelFor(ctx), machine);
    await run(ctx.t, [...argv, '-incoming', 'defer', '-S'], { timeoutMs: 60_000 });
    const waiting = await waitFor(
      async () => (await this.status(ctx, record)).runtime.state === 'inmigrate',
      30_000,
    );
    if (!waiting) {
      throw new VfleetError(
        'start-failed',
        `${ctx.host}: the incoming QEMU of ${ctx.instance} did not reach inmigrate`,
      );
    }
  }

  /** The accelerator this driver gives QEMU on the host of `ctx`. */
  accelOn(ctx: DriverContext): Promise<string> {
    return this.accelFor(ctx);
  }

  async stop(ctx: DriverContext, _record: InstanceRecord): Promise<void> {
    const pid = await this.pid(ctx);
    if (pid === undefined) return;
    const gone = () => this.gone(ctx, pid);
    // The ACPI power button: a guest that listens shuts down cleanly.
    await this.command(ctx, 'system_powerdown').catch(() => undefined);
    if (await waitFor(gone, this.stopTimeoutMs)) return;
    await this.command(ctx, 'quit').catch(() => undefined);
    if (await waitFor(gone, 5_000)) return;
    await this.kill(ctx);
  }

  async status(ctx: DriverContext, _record: InstanceRecord): Promise<DriverStatus> {
    const log = `${ctx.dir}/serial.log`;
    const pid = await this.pid(ctx);
    if (pid === undefined) return { running: false, runtime: { log } };
    try {
      const s = (await this.command(ctx, 'query-status')) as { status?: string; running?: boolean };
      return {
        running: s.running === true,
        runtime: { pid, state: s.status ?? 'unknown', log },
      };
    } catch (e) {
      // QEMU serves one QMP client at a time: a busy socket is not a dead VM.
      return {
        running: true,
        runtime: { pid, state: `unknown (${(e as Error).message})`, log },
      };
    }
  }

  async remove(ctx: DriverContext, _record: InstanceRecord | undefined): Promise<void> {
    await this.kill(ctx);
  }

  async inventory(ctx: DriverContext, record: InstanceRecord): Promise<PackageVersions> {
    // A guest vfleet can reach reports its dpkg's; otherwise (no way in, or not running) the
    // record's: the image's, or what the guest's dpkg said last.
    const guest = guestOf(record);
    if (guest && (await this.status(ctx, record)).running) {
      return guestInventory(ctx, guest, this.patchLimits);
    }
    return { ...record.packages };
  }

  /** apt-get in the guest over ssh, with a snapshot to roll back to if asked (vm-patch.ts). */
  async patch(
    ctx: DriverContext,
    record: InstanceRecord,
    packages: PackageVersions,
    options: { readonly rollback?: boolean } = {},
  ): Promise<AptPatchResult> {
    const guest = guestOf(record);
    if (!guest) {
      throw new VfleetError(
        'patch-not-supported',
        `host ${ctx.host} cannot patch ${ctx.instance}: its image ${record.image.name} gives no guest access (image.guest), and a VM is patched from inside`,
      );
    }
    if (!(await this.status(ctx, record)).running) {
      throw new VfleetError(
        'patch-failed',
        `${ctx.host}: ${ctx.instance}: the VM is not running, and a VM is patched from inside its guest`,
      );
    }
    return patchVm(ctx, guest, packages, options.rollback === true, this.patchLimits);
  }

  async copyOut(ctx: DriverContext, record: InstanceRecord, target: DriverContext): Promise<void> {
    // The target needs the base the overlay sits on; it gets it from this host, not from the
    // machine vfleet runs on, which may not hold the image any more.
    const base = record.image.staged.disk;
    const targetBase = base ? await target.stager.stageFrom(ctx.t, base, 'disk.qcow2') : undefined;
    for (const [key, role] of [
      ['kernel', 'vmlinuz'],
      ['initrd', 'initrd'],
    ] as const) {
      const file = record.image.staged[key];
      if (file) await target.stager.stageFrom(ctx.t, file, role);
    }
    await mkdirs(target.t, target.dir);
    const disk = `${ctx.dir}/disk.qcow2`;
    const incoming = `${target.dir}/disk.qcow2.incoming`;
    // Paused while copied: QEMU drains and flushes its I/O when it stops the guest, so the copy
    // is crash-consistent (what the disk would hold after a power cut at that moment).
    const paused = (await this.status(ctx, record)).running;
    try {
      if (paused) await this.command(ctx, 'stop');
      await copyChecked(ctx.t, disk, target.t, incoming, {
        code: 'copy-corrupt',
        what: `${ctx.instance}: the disk`,
      });
    } finally {
      if (paused) await this.command(ctx, 'cont').catch(() => undefined);
    }
    // A disk made from a replica (vm-replication.ts) stands alone: it has no backing to point
    // at the target's copy of the image.
    if (targetBase && (await backingOf(target.t, incoming)) !== undefined) {
      // Same bytes, another path: rewrite the overlay's header only (-u).
      await run(target.t, [
        'qemu-img',
        'rebase',
        '-u',
        '-f',
        'qcow2',
        '-b',
        targetBase.path,
        '-F',
        'qcow2',
        incoming,
      ]);
    }
    await run(target.t, ['mv', '-T', '--', incoming, `${target.dir}/disk.qcow2`]);
  }

  private command(ctx: DriverContext, command: string): Promise<unknown> {
    return qmp(ctx.t, `${ctx.dir}/qmp.sock`, command, undefined, this.qmpTimeoutMs);
  }

  private async pid(ctx: DriverContext): Promise<number | undefined> {
    const pidfile = `${ctx.dir}/qemu.pid`;
    const pid = await readPid(ctx.t, pidfile);
    return pid !== undefined && (await processAlive(ctx.t, pid, pidfile)) ? pid : undefined;
  }

  private async gone(ctx: DriverContext, pid: number): Promise<boolean> {
    return !(await processAlive(ctx.t, pid, `${ctx.dir}/qemu.pid`));
  }

  /** SIGKILLs the instance's QEMU, if it runs, and waits (bounded) for it to be gone. */
  async kill(ctx: DriverContext): Promise<void> {
    const pid = await this.pid(ctx);
    if (pid === undefined) return;
    await signal(ctx.t, pid, 'KILL');
    await waitFor(() => this.gone(ctx, pid), 5_000);
  }
}

/** The backing file a qcow2 names, or undefined when it stands alone. */
async function backingOf(t: Transport, path: string): Promise<string | undefined> {
  const info = JSON.parse(
    (await run(t, ['qemu-img', 'info', '--output=json', '-f', 'qcow2', path])).toString(),
  ) as { 'backing-filename'?: string };
  return info['backing-filename'];
}

/** QEMU's option syntax splits on ',': a literal comma is written twice. */
function qemuOption(value: string): string {
  return value.replaceAll(',', ',,');
}
