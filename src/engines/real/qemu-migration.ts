// Live migration of a running VM from one host's QEMU to another's (docs/replication-qemu.md,
// "Live migration"): the disk goes by a mirror onto an NBD export of the target's QEMU, the memory
// and device state by QEMU's own migration, both straight from host to host over TCP; vfleet only
// drives the two QEMUs through QMP. The order is libvirt's for storage that is not shared:
//
//   target  QEMU started with the source's machine and devices, `-incoming defer -S`, on a new
//           qcow2 of the disk's size; NBD server + writable export of that disk; migrate-incoming
//   source  blockdev-add (nbd) + blockdev-mirror sync full, write-blocking → ready
//           migrate → completed (the guest paused on both hosts from here)
//           block-job-cancel on the ready mirror: the target's disk is the guest's disk, final
//   target  nbd-server-stop; the instance recorded there (commit); `cont`: the guest runs there
//   source  its QEMU killed (the engine removes its folder)
//
// Until the target's `cont`, everything is undone on failure — the migration cancelled, the
// mirror abandoned, the target's QEMU killed and its folder removed (`discard`), the source's
// guest resumed if the migration had paused it — and `migration-failed` says why. The target
// never runs the guest before the mirror has ended, so the source's disk and memory stay the
// guest's until then: giving up never loses a write.
import { isVfleetError, VfleetError } from '../../model/errors.js';
import { run } from '../../transport/transport.js';
import { mkdirs } from './host-commands.js';
import type { StagedFile } from './image-staging.js';
import type { DriverContext, InstanceRecord } from './instance-driver.js';
import { findDisk, type Opener } from './qemu-backup.js';
import type { QemuDriver } from './qemu-driver.js';
import {
  awaitMigration,
  awaitMirrorReady,
  clearMigration,
  finishMirror,
  listen,
  type MigrationInfo,
  startMirror,
  uriHost,
} from './qemu-migration-steps.js';
import { withQmp } from './qmp-client.js';

export interface MigrationOptions {
  /** How long the disk mirror may take to be in step. Default 10 min. */
  readonly mirrorTimeoutMs?: number;
  /** How long the memory migration may take once started. Default 5 min. */
  readonly timeoutMs?: number;
  /** Passes over the guest's memory after which it is called non-converging. Default 30. */
  readonly maxPasses?: number;
  /** QEMU's `downtime-limit`: the pause it aims for at the switch, ms. Default 100. */
  readonly downtimeLimitMs?: number;
  /** QEMU's `max-bandwidth` for the memory, bytes/s. Default 1 GiB/s (QEMU's own: 128 MiB/s). */
  readonly maxBandwidth?: number;
  /** QEMU's `auto-converge` (throttles a guest that dirties memory too fast). Default on. */
  readonly autoConverge?: boolean;
  /** How long the switch may take: the mirror's end, the target's commit and `cont`. Default 30 s. */
  readonly switchoverTimeoutMs?: number;
}

/** What the target's engine lends the migration: its folder, where it listens, its record. */
export interface MigrationLanding {
  /** The target's driver context for the instance (its transport, layout, folder). */
  readonly ctx: DriverContext;
  /** Where the target's QEMU listens for the disk and the memory (reachable from the source). */
  readonly address: string;
  /** Records the instance on the target (under its lock and fence): it is there from now on. */
  commit(record: InstanceRecord): Promise<void>;
  /** Kills the target's QEMU and removes the instance's folder there. */
  discard(): Promise<void>;
}

export interface MigrationResult {
  /** The instance's record on the target. */
  readonly record: InstanceRecord;
  /**
   * The pause the guest saw, measured from the outside: from when the source stopped it (QEMU's
   * total time less its downtime, from just before `migrate` was sent) to the target's `cont`
   * answered. Never less than QEMU's own figure; a bound from above.
   */
  readonly downtimeMs: number;
  /** QEMU's `downtime` on the source: its stop to the last byte sent. */
  readonly qemuDowntimeMs: number;
  /** The whole migration, the target's start to the source's end. */
  readonly durationMs: number;
  /** Memory bytes QEMU sent. */
  readonly ramBytes: number;
}

/**
 * Moves the running VM of `source` (its `record`) into `landing` at `generation`. The caller holds
 * the instance's lock and fence on both hosts. The source's QEMU is killed on success (its
 * folder is the caller's); on failure everything is as before and `migration-failed` says why.
 */
export async function migrateVm(
  driver: QemuDriver,
  source: DriverContext,
  record: InstanceRecord,
  generation: number,
  landing: MigrationLanding,
): Promise<MigrationResult> {
  const started = Date.now();
  const o = driver.migration;
  const limits = {
    mirrorTimeoutMs: o.mirrorTimeoutMs ?? 600_000,
    timeoutMs: o.timeoutMs ?? 300_000,
    maxPasses: o.maxPasses ?? 30,
    switchoverTimeoutMs: o.switchoverTimeoutMs ?? 30_000,
  };
  const target = landing.ctx;
  const open = opener(driver, source);
  const openTarget = opener(driver, target);
  const disk = `${source.dir}/disk.qcow2`;
  const where = `${source.host}: ${source.instance}`;
  // The source first: what an earlier attempt that died left, its disk, its machine type.
  const { node, size, machine } = await open(async (c) => {
    await clearMigration(c, limits.switchoverTimeoutMs);
    const found = await findDisk(c, disk, where, 'migration-failed');
    const type = String(await c.execute('qom-get', { path: '/machine', property: 'type' }));
    return { node: found.node, size: found.size, machine: type.replace(/-machine$/, '') };
  });

  let resumed = false;
  try {
    const targetRecord = await prepareTarget(driver, source, record, generation, target, {
      size,
      machine,
    });
    const targetDisk = `${target.dir}/disk.qcow2`;
    const ports = await openTarget(async (c) =>
      listen(
        c,
        landing.address,
        (await findDisk(c, targetDisk, target.host, 'migration-failed')).node,
      ),
    );
    await open((c) => startMirror(c, node, landing.address, ports.nbd));
    await awaitMirrorReady(open, limits.mirrorTimeoutMs);

    // The switch, on one connection to each QEMU (held for the memory migration's time, so that
    // its end is seen at once): the memory, the mirror's end, the target's commit and `cont`.
    const switched = await withQmp(
      source.t,
      `${source.dir}/qmp.sock`,
      (s) =>
        withQmp(
          target.t,
          `${target.dir}/qmp.sock`,
          async (t) => {
            await s.execute('migrate-set-capabilities', {
              capabilities: [
                { capability: 'events', state: true },
                { capability: 'auto-converge', state: o.autoConverge ?? true },
              ],
            });
            await s.execute('migrate-set-parameters', {
              'downtime-limit': o.downtimeLimitMs ?? 100,
              'max-bandwidth': o.maxBandwidth ?? 2 ** 30,
            });
            const sentAt = Date.now();
            await s.execute('migrate', {
              uri: `tcp:${uriHost(landing.address)}:${ports.migration}`,
            });
            const info = await awaitMigration(s, sentAt, { ...limits, intervalMs: 100 });
            await finishMirror(s, limits.switchoverTimeoutMs);
            // Both before the guest runs there: no client may write its disk from outside, and
            // the instance is recorded where it runs. Side by side: the guest is paused now.
            await Promise.all([t.execute('nbd-server-stop'), landing.commit(targetRecord)]);
            await t.execute('cont');
            resumed = true;
            return { info, sentAt, runningAt: Date.now() };
          },
          driver.qmpTimeoutMs,
        ),
      driver.qmpTimeoutMs,
    );
    // The guest runs on the target: the source's QEMU (paused, `postmigrate`) goes.
    await driver.kill(source);
    return result(targetRecord, switched, started);
  } catch (e) {
    if (resumed) throw e; // the guest runs on the target: nothing to undo, the caller retries
    const reason = isMigrationFailure(e) ? e.message : `${(e as Error).message}`;
    const undone = await revert(driver, source, record, landing, limits.switchoverTimeoutMs);
    throw new VfleetError(
      'migration-failed',
      `${where} could not migrate live to ${target.host}: ${reason}${undone}`,
      { cause: e },
    );
  }
}

/** Stages the boot files on the target, makes its empty disk, starts its QEMU waiting. */
async function prepareTarget(
  driver: QemuDriver,
  source: DriverContext,
  record: InstanceRecord,
  generation: number,
  target: DriverContext,
  disk: { readonly size: number; readonly machine: string },
): Promise<InstanceRecord> {
  // The kernel and initrd the guest was started with; no base image: the mirror copies the
  // whole disk into one that stands alone.
  // Side by side: staging copies files host to host (once per host and file: by sha256).
  const staged: Record<string, StagedFile> = {};
  await mkdirs(target.t, target.dir);
  await Promise.all([
    ...(['kernel', 'initrd'] as const).map(async (key) => {
      const file = record.image.staged[key];
      const role = key === 'kernel' ? 'vmlinuz' : 'initrd';
      if (file) staged[key] = await target.stager.stageFrom(source.t, file, role);
    }),
    run(target.t, [
      'qemu-img',
      'create',
      '-q',
      '-f',
      'qcow2',
      `${target.dir}/disk.qcow2`,
      String(disk.size),
    ]),
  ]);
  const targetRecord: InstanceRecord = {
    ...record,
    generation,
    image: { ...record.image, staged },
    driver: { ...record.driver, accel: await driver.accelOn(target) },
  };
  await driver.startIncoming(target, targetRecord, disk.machine);
  return targetRecord;
}

/**
 * Undoes an attempt: the source's migration and mirror cleared (its guest resumed if the
 * migration had paused it, once the target can no longer run it), the target discarded. Returns
 * what could not be undone, as the tail of the error's message.
 */
async function revert(
  driver: QemuDriver,
  source: DriverContext,
  record: InstanceRecord,
  landing: MigrationLanding,
  timeoutMs: number,
): Promise<string> {
  const problems: string[] = [];
  const open = opener(driver, source);
  await open((c) => clearMigration(c, timeoutMs)).catch((e) =>
    problems.push(`the source's migration was not cleared (${(e as Error).message})`),
  );
  const discarded = await landing.discard().then(
    () => true,
    (e) => {
      problems.push(`the target was not cleaned (${(e as Error).message})`);
      return false;
    },
  );
  // A migration that completed left the source paused (`postmigrate`); it runs again only once
  // the target's copy is gone, so the guest never runs twice.
  const status = await driver.status(source, record);
  if (!status.running && status.runtime.pid !== undefined && discarded) {
    await open((c) => c.execute('cont')).catch(() => undefined);
  }
  if (!(await driver.status(source, record)).running) {
    problems.push(`the VM is ${String(status.runtime.state ?? 'not running')} on ${source.host}`);
  }
  return problems.length === 0 ? '' : `; ${problems.join('; ')}`;
}

function result(
  record: InstanceRecord,
  switched: { info: MigrationInfo; sentAt: number; runningAt: number },
  started: number,
): MigrationResult {
  const { info, sentAt, runningAt } = switched;
  const qemuDowntimeMs = info.downtime ?? 0;
  // QEMU counts total-time from the `migrate` command (not before it was sent): the source
  // stopped the guest no earlier than sentAt + total − downtime, so this is an upper bound.
  const stoppedAt = sentAt + (info['total-time'] ?? 0) - qemuDowntimeMs;
  return {
    record,
    downtimeMs: Math.max(qemuDowntimeMs, runningAt - stoppedAt),
    qemuDowntimeMs,
    durationMs: Date.now() - started,
    ramBytes: info.ram?.transferred ?? 0,
  };
}

function opener(driver: QemuDriver, ctx: DriverContext): Opener {
  return (use) => withQmp(ctx.t, `${ctx.dir}/qmp.sock`, use, driver.qmpTimeoutMs);
}

function isMigrationFailure(e: unknown): e is VfleetError {
  return isVfleetError(e) && e.code === 'migration-failed';
}
