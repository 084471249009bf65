// RealEngine's live migration (docs/replication.md, "Live migration"; the QEMU mechanism:
// qemu-migration.ts, docs/replication-qemu.md): the HostEngine operation over two real hosts.
// The source holds the instance's lock and fence at the move's generation and checks that its
// VM runs; the target takes its own lock and fence at the same generation (refusing a name it
// has already), clears what a dead attempt left, and lends the source its folder, the address
// it listens on and the commit of its record. The instance is recorded on the target only in
// the pause of the switch, before the guest runs there; the source's copy is removed after.
//
// A target folder that holds `migration-incoming` and no record is a migration that died
// (its worker did): create, receiveDisk and restoreReplica clear it before they use the folder.

import { VfleetError } from '../../model/errors.js';
import type { EngineKind } from '../../model/fleet.js';
import type { Transport } from '../../transport/transport.js';
import type { EngineInstance, MigrationOutcome } from '../host-engine.js';
import { exists, mkdirs } from './host-commands.js';
import type { DriverContext, InstanceRecord } from './instance-driver.js';
import type { QemuDriver } from './qemu-driver.js';
import { type MigrationLanding, type MigrationResult, migrateVm } from './qemu-migration.js';
import { migratedState, placeMigratedState } from './vm-increments.js';

/** The marker of a folder an incoming migration is using (it has no record until the switch). */
const INCOMING = 'migration-incoming';

/** What the engine lends its live migration, on either side. */
export interface MigratingHost {
  readonly host: string;
  readonly engine: EngineKind;
  readonly transport: Transport;
  readonly qemu: QemuDriver;
  /** Where this host listens for an incoming migration: its ssh address (undefined: local). */
  readonly address: string | undefined;
  /** Runs `act` under the lock and the fence at `generation` (RealEngine.mutate). */
  fenced<T>(name: string, generation: number, op: string, act: () => Promise<T>): Promise<T>;
  context(name: string): DriverContext;
  readRecord(name: string): Promise<InstanceRecord | undefined>;
  writeRecord(record: InstanceRecord): Promise<void>;
  instanceOf(record: InstanceRecord): Promise<EngineInstance>;
  /** Kills what the drivers started for the name and removes its folder (no fence: the caller's). */
  clearFolder(name: string): Promise<void>;
}

/** The source's side of a live migration, as the target receives it. */
export interface IncomingMigration {
  readonly name: string;
  readonly generation: number;
  readonly from: string;
  readonly fromEngine: EngineKind;
  /** The source's replication state for the target's folder (vm-increments.ts migratedState). */
  readonly replication: string | undefined;
  /** The address the source host sees this machine at (its ssh session's client), if any. */
  clientAddress(): Promise<string | undefined>;
  /** The migration itself, into the target's landing (qemu-migration.ts migrateVm). */
  run(landing: MigrationLanding): Promise<MigrationResult>;
}

/** A real host a VM can migrate to: RealEngine.receiveMigration. */
export interface MigrationTarget {
  readonly host: string;
  receiveMigration(
    incoming: IncomingMigration,
  ): Promise<{ readonly result: MigrationResult; readonly instance: EngineInstance }>;
}

export async function migrateReal(
  self: MigratingHost,
  name: string,
  generation: number,
  target: MigrationTarget,
): Promise<MigrationOutcome> {
  return self.fenced(name, generation, 'migrate', async () => {
    const record = await self.readRecord(name);
    if (!record) {
      throw new VfleetError('instance-missing', `${name} does not exist on ${self.host}`);
    }
    if (record.kind !== 'vm') {
      throw new VfleetError(
        'migration-failed',
        `${name} on ${self.host} is a ${record.kind}: only VMs migrate live`,
      );
    }
    const ctx = self.context(name);
    const now = await self.qemu.status(ctx, record);
    if (!now.running) {
      throw new VfleetError(
        'migration-failed',
        `${name} is ${String(now.runtime.state ?? 'stopped')} on ${self.host}: only a running VM migrates live`,
      );
    }
    const { result, instance } = await target.receiveMigration({
      name,
      generation,
      from: self.host,
      fromEngine: self.engine,
      replication: await migratedState(ctx, self.host),
      clientAddress: () => sessionClient(self),
      run: (landing) => migrateVm(self.qemu, ctx, record, generation, landing),
    });
    // The guest runs on the target (the source's QEMU is gone already): its folder goes.
    await self.clearFolder(name);
    return {
      instance,
      downtimeMs: result.downtimeMs,
      qemuDowntimeMs: result.qemuDowntimeMs,
      durationMs: result.durationMs,
    };
  });
}

export async function receiveMigrationReal(
  self: MigratingHost,
  incoming: IncomingMigration,
): Promise<{ readonly result: MigrationResult; readonly instance: EngineInstance }> {
  const { name, generation } = incoming;
  return self.fenced(name, generation, 'receive-migration', async () => {
    if (await self.readRecord(name)) {
      throw new VfleetError('migration-failed', `${self.host} has ${name} already`);
    }
    const address = await listenAddress(self, incoming);
    // Without a record, nothing in the folder is the instance (a dead attempt, a copied disk
    // whose move went another way): it goes, and the migration brings the disk.
    await self.clearFolder(name);
    const ctx = self.context(name);
    await mkdirs(self.transport, ctx.dir);
    await self.transport.writeFile(`${ctx.dir}/${INCOMING}`, `${incoming.from}\n`, 0o644);
    if (incoming.replication) await placeMigratedState(ctx, incoming.replication);
    const result = await incoming.run({
      ctx,
      address,
      commit: (record) => self.writeRecord(record),
      discard: () => self.clearFolder(name),
    });
    await self.transport.exec(['rm', '-f', '--', `${ctx.dir}/${INCOMING}`]);
    return { result, instance: await self.instanceOf(result.record) };
  });
}

/** Clears the folder a dead incoming migration left (its marker and no record); else nothing. */
export async function clearDeadIncoming(self: MigratingHost, name: string): Promise<void> {
  if (await exists(self.transport, `${self.context(name).dir}/${INCOMING}`)) {
    await self.clearFolder(name);
  }
}

/**
 * Where the target's QEMU listens: an ssh host at its address in the spec (the hosts reach each
 * other where vfleet reaches them); this machine (`local`) at 127.0.0.1 for a local source, else
 * at the address the source's ssh session came from.
 */
async function listenAddress(self: MigratingHost, incoming: IncomingMigration): Promise<string> {
  const address =
    self.address ??
    (incoming.fromEngine === 'local' ? '127.0.0.1' : await incoming.clientAddress());
  if (address === undefined || !ADDRESS.test(address)) {
    throw new VfleetError(
      'migration-failed',
      `${self.host} has no address ${incoming.from} can reach it at${address === undefined ? '' : ` (${JSON.stringify(address.slice(0, 80))} is not one)`}`,
    );
  }
  return address;
}

/** A DNS name, IPv4 or IPv6 address (the spec's pattern for `address`): never an option. */
const ADDRESS =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})$/;

/** The client address of the source's ssh session (sshd's SSH_CONNECTION), for a local target. */
async function sessionClient(self: MigratingHost): Promise<string | undefined> {
  if (self.engine !== 'ssh') return undefined;
  const result = await self.transport.exec(['printenv', 'SSH_CONNECTION']);
  if (result.code !== 0) return undefined;
  return result.stdout.toString('utf8').trim().split(/\s+/)[0] || undefined;
}
