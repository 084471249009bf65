// RealEngine's `patch` (docs/patching.md): under the instance's lock and fence, the instance's
// driver raises its packages with the instance's own package manager (apt-patch.ts: in a
// sandbox's rootfs, in a VM's guest over ssh), and the record then holds what dpkg says is
// installed and the patch's outcome — also when it failed, so the next plan and the audit see
// the instance as dpkg left it; or, for a VM put back to its snapshot (`rollback`: vm-patch.ts),
// as it was before, with `rolledBack`, as the embedded engine records it. Also what the engine
// reads for the patch path: an instance's inventory as its package manager has it now; and the
// refusal of a host's own patch, not built for real hosts.
import { isVfleetError, VfleetError } from '../../model/errors.js';
import type { InstanceKind, PackageVersions } from '../../model/fleet.js';
import type { PatchRecord } from '../../model/instances.js';
import type { EngineInstance } from '../host-engine.js';
import { changes, checkPatchPackages } from './apt-patch.js';
import type { DriverContext, InstanceDriver, InstanceRecord } from './instance-driver.js';
import { instanceMissing } from './real-records.js';
import { RolledBackError } from './vm-patch.js';

/** What patching borrows of RealEngine. */
export interface PatchingHost {
  readonly host: string;
  readonly engine: string;
  fenced<T>(name: string, generation: number, op: string, act: () => Promise<T>): Promise<T>;
  readRecord(name: string): Promise<InstanceRecord | undefined>;
  writeRecord(record: InstanceRecord): Promise<void>;
  context(name: string): DriverContext;
  driverOf(kind: InstanceKind): InstanceDriver;
  instanceOf(record: InstanceRecord): Promise<EngineInstance>;
}

export async function patchReal(
  h: PatchingHost,
  name: string,
  generation: number,
  packages: PackageVersions,
  rollback: boolean,
): Promise<EngineInstance> {
  checkPatchPackages(`${h.host}: ${name}`, packages);
  return h.fenced(name, generation, 'patch', async () => {
    const found = await h.readRecord(name);
    if (!found) throw instanceMissing(h.host, name);
    const driver = h.driverOf(found.kind);
    if (!driver.patch) {
      throw new VfleetError(
        'patch-not-supported',
        `host ${h.host} (${h.engine}) cannot patch ${name}: its driver patches no ${found.kind}`,
      );
    }
    let record: InstanceRecord = { ...found, generation };
    await h.writeRecord(record);
    const ctx = h.context(name);
    try {
      const result = await driver.patch(ctx, record, packages, { rollback });
      const lastPatch: PatchRecord = {
        generation,
        outcome: result.outcome,
        changed: result.changed,
        rebootRequired: result.rebootRequired,
      };
      record = { ...record, packages: result.packages, lastPatch };
      await h.writeRecord(record);
      return h.instanceOf(record);
    } catch (e) {
      // What dpkg has now (a package left unconfigured by its failed postinst is not installed),
      // and the failure, into the record; then the job fails with the same one line.
      const now = await driver.inventory(ctx, record).catch(() => record.packages);
      const error = isVfleetError(e)
        ? `${e.code}: ${e.message}`
        : e instanceof Error
          ? e.message
          : String(e);
      const rolledBack = e instanceof RolledBackError;
      const lastPatch: PatchRecord = {
        generation,
        outcome: 'failed',
        changed: rolledBack ? [] : changes(record.packages, now),
        // Put back: as it was, a reboot the patch before asked for included.
        rebootRequired: rolledBack ? found.lastPatch?.rebootRequired === true : false,
        error,
        ...(rolledBack ? { rolledBack: true } : {}),
      };
      await h.writeRecord({ ...record, packages: now, lastPatch }).catch(() => undefined);
      throw e;
    }
  });
}

/** RealEngine's `inventory`: what the instance's package manager says is installed now. */
export async function inventoryReal(h: PatchingHost, name: string): Promise<PackageVersions> {
  const record = await h.readRecord(name);
  if (!record) throw instanceMissing(h.host, name);
  return h.driverOf(record.kind).inventory(h.context(name), record);
}

/** RealEngine's `patchHost`: refused, a real host's own apt and reboot are not built. */
export function hostPatchNotBuilt(h: Pick<PatchingHost, 'host' | 'engine'>): VfleetError {
  return new VfleetError(
    'host-patch-not-built',
    `patching a ${h.engine} host (${h.host}) is not built: vfleet does not yet run the host's own apt and reboot over its transport (docs/patching.md, "Hosts")`,
  );
}
