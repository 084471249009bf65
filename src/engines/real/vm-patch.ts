// Patching a VM on a real host (docs/patching.md, "VMs over SSH"): the steps of apt-patch.ts run
// in the running guest over ssh (qemu-guest.ts), and — with the group's `onFailure: rollback` —
// an internal snapshot of the whole VM (disk and memory: HMP `savevm`, in the disk's qcow2) is
// taken once apt's simulation has shown what will change, right before anything does. When the
// install fails the VM is put back to it (`loadvm`: the guest resumes exactly as it was before
// the patch, its dpkg database and running services included, with no reboot); either way the
// snapshot is dropped after (`delvm`). Without rollback no snapshot is taken (`stop` leaves the
// guest as the failure left it).
//
// Why an internal snapshot with memory rather than a disk-only overlay: putting back only the
// disk under a running guest would need a reboot (its page cache and processes hold the patched
// state), which `loadvm` does not; and one qcow2 file stays one file for copyDisk, migration
// and replication.
import { isVfleetError, VfleetError } from '../../model/errors.js';
import type { GuestAccess, PackageVersions } from '../../model/fleet.js';
import type { SshTransport } from '../../transport/ssh-transport.js';
import { type AptLimits, type AptPatchResult, aptPatch, dpkgInventory } from './apt-patch.js';
import type { DriverContext } from './instance-driver.js';
import { guestRoot, PATCH_SNAPSHOT, reachGuest, snapshotCommand } from './qemu-guest.js';

/** A patch that failed and whose VM was put back to its snapshot (`lastPatch.rolledBack`). */
export class RolledBackError extends VfleetError {
  readonly rolledBack = true;
}

export interface VmPatchLimits extends AptLimits {
  /** How long the guest's sshd may take to answer (a guest still booting). */
  readonly reachMs: number;
  /** How long `savevm`/`loadvm` may take (the guest's memory is written to or read from disk). */
  readonly snapshotMs: number;
}

export async function patchVm(
  ctx: DriverContext,
  guest: GuestAccess,
  packages: PackageVersions,
  rollback: boolean,
  limits: VmPatchLimits,
): Promise<AptPatchResult> {
  let t: SshTransport | undefined = await reachGuest(ctx, guest, limits.reachMs);
  let snapshot = false;
  try {
    return await aptPatch(
      guestRoot(ctx, t, guest),
      packages,
      limits,
      rollback
        ? async () => {
            // A snapshot of that name left by a patch that died is replaced, not restored.
            await snapshotCommand(ctx, `delvm ${PATCH_SNAPSHOT}`, limits.snapshotMs).catch(
              () => undefined,
            );
            await snapshotCommand(ctx, `savevm ${PATCH_SNAPSHOT}`, limits.snapshotMs);
            snapshot = true;
          }
        : undefined,
    );
  } catch (e) {
    if (!snapshot) throw e;
    // The guest's side of this connection is about to go back to before it existed.
    await t.close();
    t = undefined;
    try {
      await snapshotCommand(ctx, `loadvm ${PATCH_SNAPSHOT}`, limits.snapshotMs);
    } catch (undone) {
      snapshot = false; // kept: the operator's to restore by hand
      throw new VfleetError(
        'rollback-failed',
        `${errorLine(e)}; rolling back to its snapshot ${PATCH_SNAPSHOT} failed: ${errorLine(undone)}`,
      );
    }
    throw new RolledBackError(
      isVfleetError(e) ? e.code : 'patch-failed',
      `${errorLine(e)}; rolled back to its snapshot`,
    );
  } finally {
    await t?.close();
    if (snapshot) {
      await snapshotCommand(ctx, `delvm ${PATCH_SNAPSHOT}`, limits.snapshotMs).catch(
        () => undefined,
      );
    }
  }
}

/** The guest's installed packages, read with its own dpkg over ssh. */
export async function guestInventory(
  ctx: DriverContext,
  guest: GuestAccess,
  limits: Pick<VmPatchLimits, 'reachMs' | 'queryMs'>,
): Promise<PackageVersions> {
  const t = await reachGuest(ctx, guest, limits.reachMs);
  try {
    return await dpkgInventory(guestRoot(ctx, t, guest), limits);
  } finally {
    await t.close();
  }
}

function errorLine(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
