// The HostEngine of real hosts (`engine: local | ssh`): everything it does on the host goes
// through a Transport (local child processes, or ssh), with argument vectors only, and the same
// semantics as the embedded engine (docs/architecture.md):
//
// - Fencing: `<dataDir>/fence/<name>` holds the newest generation the host has seen for the
//   name and outlives the instance (a tombstone), so a mutating call with an older generation
//   is refused (`stale-generation`, not retryable), also after a destroy, and repeating the
//   newest is harmless.
// - One at a time: every mutating call runs under the instance's host lock (host-lock.ts), and
//   the fence is checked and raised inside it, so two identical creates at once make one
//   instance and the fence and the change it guards cannot interleave with another worker's.
// - Idempotence: each step looks at what the host has (record, disk, rootfs, live process)
//   and does only the rest, so a job that died halfway is finished by its retry.
//
// The record (`<dataDir>/instances/<name>/record.json`) says what the instance is (and what its
// last patch did); its status is always read live from the host (QEMU's QMP, the sandbox's
// process), never remembered.
import { ENGINE_CAPABILITIES, type EngineCapabilities } from '../../model/engine-capabilities.js';
import { VfleetError } from '../../model/errors.js';
import type { Host, InstanceKind, PackageVersions } from '../../model/fleet.js';
import { run, type Transport } from '../../transport/transport.js';
import {
  checkCopyTarget,
  type DiskTransfer,
  type EngineInstance,
  type HostEngine,
  type HostFacts,
  type InjectedFault,
  type InstanceRequest,
  type MigrationOutcome,
  noFaultInjection,
  type PatchOptions,
  type ReplicaIncoming,
  type ReplicaPoint,
  type ReplicationResult,
} from '../host-engine.js';
import { HostAgent } from './host-agent.js';
import { mkdirs, readText, removeTree } from './host-commands.js';
import { liveFacts, staticFacts } from './host-facts.js';
import { checkInstanceName, HostLayout } from './host-layout.js';
import { type HostLockOptions, HostLocks } from './host-lock.js';
import { ImageStager } from './image-staging.js';
import type { DriverContext, InstanceDriver, InstanceRecord, Started } from './instance-driver.js';
import { QemuDriver, type QemuDriverOptions } from './qemu-driver.js';
import type { MigrationResult } from './qemu-migration.js';
import {
  clearDeadIncoming,
  type IncomingMigration,
  type MigratingHost,
  migrateReal,
  receiveMigrationReal,
} from './real-migration.js';
import { hostPatchNotBuilt, inventoryReal, type PatchingHost, patchReal } from './real-patch.js';
import { instanceMissing, newRecord, readFences, readRecord, writeRecord } from './real-records.js';
import {
  dropReplicaReal,
  type ReplicatingHost,
  receiveReplicaReal,
  replicasReal,
  replicateReal,
  restoreReplicaReal,
} from './real-replication.js';
import { checkRequest, landingContext } from './real-requests.js';
import { SandboxDriver, type SandboxDriverOptions } from './sandbox-driver.js';

export interface RealEngineOptions {
  readonly qemu?: QemuDriverOptions;
  readonly sandbox?: SandboxDriverOptions;
  readonly lock?: HostLockOptions;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LIST_CONCURRENCY = 4;

export class RealEngine implements HostEngine {
  readonly host: string;
  readonly engine: 'local' | 'ssh';
  readonly capabilities: EngineCapabilities;
  readonly layout: HostLayout;
  /** The vfleet agent on this host (host-agent.ts), driven by the controller. */
  readonly agent: HostAgent;
  private readonly locks: HostLocks;
  private readonly stager: ImageStager;
  private readonly drivers: Readonly<Record<InstanceKind, InstanceDriver>>;
  private prepared: Promise<void> | undefined;
  private fixedFacts: ReturnType<typeof staticFacts> | undefined;

  constructor(
    private readonly spec: Host,
    readonly transport: Transport,
    options: RealEngineOptions = {},
  ) {
    if (spec.engine === 'embedded') {
      throw new VfleetError('engine-mismatch', `host ${spec.name} is embedded, not a real host`);
    }
    checkInstanceName(spec.name, spec.name); // the host's name is part of the cgroup path
    this.host = spec.name;
    this.engine = spec.engine;
    this.capabilities = ENGINE_CAPABILITIES[spec.engine];
    this.layout = new HostLayout(spec.name, spec.dataDir);
    this.agent = new HostAgent(transport, this.layout.dataDir);
    this.locks = new HostLocks(transport, (name) => this.layout.lock(name), options.lock);
    this.stager = new ImageStager(transport, this.layout);
    this.drivers = {
      vm: new QemuDriver(options.qemu),
      container: new SandboxDriver(options.sandbox),
    };
  }

  async facts(): Promise<HostFacts> {
    await this.prepare();
    this.fixedFacts ??= staticFacts(this.transport);
    const fixed = await this.fixedFacts.catch((e) => {
      this.fixedFacts = undefined;
      throw e;
    });
    const live = await liveFacts(this.transport, this.layout.dataDir);
    const controllers = fixed.cgroups?.controllers ?? [];
    return {
      name: this.host,
      engine: this.spec.engine,
      cpu: fixed.cpu,
      ...live,
      os: fixed.os,
      runs: [
        ...(fixed.qemu ? (['vm'] as const) : []),
        ...(fixed.sandbox ? (['container'] as const) : []),
      ],
      qemu: fixed.qemu,
      kvm: fixed.kvm,
      cgroups: fixed.cgroups,
      sandboxLimits: { memory: controllers.includes('memory'), cpu: controllers.includes('cpu') },
    };
  }

  async list(): Promise<EngineInstance[]> {
    await this.prepare();
    const listing = await this.transport.exec(['ls', '-1', '--', this.layout.instances]);
    const names = listing.stdout
      .toString('utf8')
      .split('\n')
      .filter((n) => NAME.test(n))
      .sort();
    // A few at a time: each is several commands, and an ssh server caps sessions per connection.
    const found: Array<EngineInstance | undefined> = [];
    for (let i = 0; i < names.length; i += LIST_CONCURRENCY) {
      const batch = names.slice(i, i + LIST_CONCURRENCY);
      found.push(...(await Promise.all(batch.map((n) => this.describe(n)))));
    }
    return found.filter((i): i is EngineInstance => i !== undefined);
  }

  async describe(name: string): Promise<EngineInstance | undefined> {
    checkInstanceName(this.host, name);
    await this.prepare();
    const record = await this.readRecord(name);
    if (!record) return undefined;
    return this.instanceOf(record);
  }

  async inventory(name: string): Promise<PackageVersions> {
    checkInstanceName(this.host, name);
    await this.prepare();
    return inventoryReal(this.borrowed(), name);
  }

  async create(request: InstanceRequest): Promise<EngineInstance> {
    checkRequest(this.host, request);
    return this.mutate(request.name, request.generation, 'create', async () => {
      const driver = this.driverOf(request.image.kind);
      const ctx = this.context(request.name);
      let record = await this.readRecord(request.name);
      if (!record) {
        await clearDeadIncoming(this.migrating(), request.name);
        await mkdirs(this.transport, ctx.dir);
        record = newRecord(request, await driver.provision(ctx, request));
      } else {
        record = { ...record, generation: request.generation };
      }
      await this.writeRecord(record);
      // Exists already (a repeated create, or a disk moved here): make sure it runs.
      return this.started(record, await this.driverOf(record.kind).start(ctx, record));
    });
  }

  start(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'start', (driver, ctx, record) =>
      driver.start(ctx, record),
    );
  }

  stop(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'stop', (driver, ctx, record) =>
      driver.stop(ctx, record),
    );
  }

  async destroy(name: string, generation: number): Promise<void> {
    checkInstanceName(this.host, name);
    // Without a record (a create that died early) either driver may have left something.
    await this.mutate(name, generation, 'destroy', () => this.clearFolder(name));
  }

  /** apt-get in the instance's own root: a sandbox's rootfs, a VM's guest (real-patch.ts). */
  async patch(
    name: string,
    generation: number,
    packages: PackageVersions,
    options: PatchOptions = {},
  ): Promise<EngineInstance> {
    checkInstanceName(this.host, name);
    return patchReal(this.borrowed(), name, generation, packages, options.rollback === true);
  }

  async copyDisk(name: string, generation: number, to: HostEngine): Promise<void> {
    checkInstanceName(this.host, name);
    checkCopyTarget(this, name, to);
    await this.mutate(name, generation, 'copy-disk', async () => {
      const record = await this.readRecord(name);
      if (!record) throw instanceMissing(this.host, name);
      const source = this.context(name);
      await to.receiveDisk({
        name,
        generation,
        from: this.host,
        packages: record.packages,
        writeFiles: async (landing) => {
          await this.driverOf(record.kind).copyOut(source, record, landingContext(landing, name));
        },
      });
    });
  }

  /** The target's half of copyDisk: under its own lock and fence, into its instance folder. */
  async receiveDisk(transfer: DiskTransfer): Promise<void> {
    const { name, generation, writeFiles } = transfer;
    checkInstanceName(this.host, name);
    if (!writeFiles) {
      throw new VfleetError(
        'engine-mismatch',
        `${this.host} cannot receive ${name} from ${transfer.from}: the disk comes without its files`,
      );
    }
    await this.mutate(name, generation, 'receive-disk', async () => {
      // Already here (a copy-disk job run again after the move went on): never overwrite the
      // disk of an instance this host has.
      if (await this.readRecord(name)) return;
      await clearDeadIncoming(this.migrating(), name);
      await writeFiles({
        host: this.host,
        transport: this.transport,
        dataDir: this.layout.dataDir,
      });
    });
  }

  // Disk replication (real-replication.ts over vm-replication.ts: QMP dirty bitmaps,
  // blockdev-backup increments shipped over the transport into a crash-safe chain).
  async replicate(
    name: string,
    generation: number,
    to: HostEngine,
    options: { readonly full?: string } = {},
  ): Promise<ReplicationResult> {
    checkInstanceName(this.host, name);
    await this.prepare();
    return replicateReal(this, this.borrowed(), name, generation, to, options);
  }

  async receiveReplica(incoming: ReplicaIncoming): Promise<ReplicaPoint> {
    checkInstanceName(this.host, incoming.name);
    await this.prepare();
    return receiveReplicaReal(this.borrowed(), incoming);
  }

  async replicas(): Promise<ReadonlyMap<string, ReplicaPoint>> {
    await this.prepare();
    return replicasReal(this.borrowed());
  }

  async restoreReplica(name: string, generation: number): Promise<ReplicaPoint> {
    checkInstanceName(this.host, name);
    return restoreReplicaReal(this.borrowed(), name, generation);
  }

  async dropReplica(name: string): Promise<void> {
    checkInstanceName(this.host, name);
    await this.prepare();
    await dropReplicaReal(this.borrowed(), name);
  }

  /** What replication and patching borrow of this engine (real-replication.ts, real-patch.ts). */
  private borrowed(): ReplicatingHost & PatchingHost {
    return {
      host: this.host,
      engine: this.engine,
      transport: this.transport,
      layout: this.layout,
      hold: (name, act) => this.locks.hold(name, act),
      fenced: (name, generation, op, act) => this.mutate(name, generation, op, act),
      context: (name) => this.context(name),
      readRecord: (name) => this.readRecord(name),
      clearDeadIncoming: (name) => clearDeadIncoming(this.migrating(), name),
      writeRecord: (record) => this.writeRecord(record),
      driverOf: (kind) => this.driverOf(kind),
      instanceOf: (record) => this.instanceOf(record),
    };
  }

  // Live migration (real-migration.ts over qemu-migration.ts: the disk mirrored to an NBD export
  // of the target's QEMU, the memory by QEMU's migration, host to host).
  async migrate(name: string, generation: number, to: HostEngine): Promise<MigrationOutcome> {
    checkInstanceName(this.host, name);
    if (
      !(to instanceof RealEngine) ||
      !this.capabilities.migratesTo.includes(to.engine) ||
      to.host === this.host
    ) {
      throw new VfleetError(
        'migration-failed',
        `${name} cannot migrate live from ${this.engine} host ${this.host} to ${to.engine} host ${to.host}`,
      );
    }
    return migrateReal(this.migrating(), name, generation, to);
  }

  /** A live migration's target half: between real hosts only, so not on HostEngine. */
  receiveMigration(
    incoming: IncomingMigration,
  ): Promise<{ readonly result: MigrationResult; readonly instance: EngineInstance }> {
    checkInstanceName(this.host, incoming.name);
    return receiveMigrationReal(this.migrating(), incoming);
  }

  /** What live migration borrows of this engine (real-migration.ts). */
  private migrating(): MigratingHost {
    return {
      host: this.host,
      engine: this.engine,
      transport: this.transport,
      qemu: this.drivers.vm as QemuDriver,
      address: this.spec.ssh?.address,
      fenced: (name, generation, op, act) => this.mutate(name, generation, op, act),
      context: (name) => this.context(name),
      readRecord: (name) => this.readRecord(name),
      writeRecord: (record) => this.writeRecord(record),
      instanceOf: (record) => this.instanceOf(record),
      clearFolder: (name) => this.clearFolder(name),
    };
  }

  /** What destroy does under its fence: every driver's processes killed, the folder removed. */
  private async clearFolder(name: string): Promise<void> {
    const record = await this.readRecord(name);
    const ctx = this.context(name);
    const drivers = record ? [this.driverOf(record.kind)] : Object.values(this.drivers);
    for (const driver of drivers) await driver.remove(ctx, record);
    await removeTree(this.transport, ctx.dir);
  }

  async inject(): Promise<never> {
    throw noFaultInjection(this);
  }

  async injectedFault(): Promise<InjectedFault | undefined> {
    return undefined;
  }

  async patchHost(): Promise<never> {
    throw hostPatchNotBuilt(this);
  }

  private async transition(
    name: string,
    generation: number,
    op: string,
    act: (driver: InstanceDriver, ctx: DriverContext, record: InstanceRecord) => Promise<Started>,
  ): Promise<EngineInstance> {
    checkInstanceName(this.host, name);
    return this.mutate(name, generation, op, async () => {
      const found = await this.readRecord(name);
      if (!found) throw instanceMissing(this.host, name);
      const record = { ...found, generation };
      await this.writeRecord(record);
      const read = await act(this.driverOf(record.kind), this.context(name), record);
      return this.started(record, read);
    });
  }

  /** The instance after a start: the record takes the inventory the driver read, if it did. */
  private async started(record: InstanceRecord, packages: Started): Promise<EngineInstance> {
    if (!packages) return this.instanceOf(record);
    const now = { ...record, packages };
    await this.writeRecord(now);
    return this.instanceOf(now);
  }

  async fences(): Promise<ReadonlyMap<string, number>> {
    await this.prepare();
    return readFences(this.transport, this.layout, this.host);
  }

  /** Lock, fence, act: the one path of every mutating call. */
  private async mutate<T>(
    name: string,
    generation: number,
    op: string,
    act: () => Promise<T>,
  ): Promise<T> {
    if (!Number.isSafeInteger(generation) || generation < 0) {
      throw new VfleetError(
        'invalid-generation',
        `${this.host}: generation ${generation} for ${name}`,
      );
    }
    await this.prepare();
    return this.locks.hold(name, async () => {
      const fencePath = this.layout.fence(name);
      const fence = Number((await readText(this.transport, fencePath))?.trim() ?? 0) || 0;
      if (generation < fence) {
        throw new VfleetError(
          'stale-generation',
          `${this.host} refuses ${op} of ${name} at generation ${generation}: it has seen generation ${fence}`,
        );
      }
      if (generation > fence) await this.transport.writeFile(fencePath, `${generation}\n`, 0o644);
      return act();
    });
  }

  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      const l = this.layout;
      await run(this.transport, [
        'mkdir',
        '-p',
        '--',
        l.instances,
        l.fences,
        l.locks,
        l.images,
        l.bin,
      ]);
    })().catch((e) => {
      this.prepared = undefined;
      throw e;
    });
    return this.prepared;
  }

  private context(name: string): DriverContext {
    return {
      t: this.transport,
      host: this.host,
      instance: name,
      layout: this.layout,
      stager: this.stager,
      dir: this.layout.instanceDir(name),
    };
  }

  private driverOf(kind: InstanceKind): InstanceDriver {
    const driver = this.drivers[kind];
    if (!driver) throw new VfleetError('invalid-request', `${this.host}: no driver for ${kind}`);
    return driver;
  }

  private readRecord(name: string): Promise<InstanceRecord | undefined> {
    return readRecord(this.transport, this.layout, this.host, name);
  }

  private writeRecord(record: InstanceRecord): Promise<void> {
    return writeRecord(this.transport, this.layout, record);
  }

  private async instanceOf(record: InstanceRecord): Promise<EngineInstance> {
    const live = await this.driverOf(record.kind).status(this.context(record.instance), record);
    return {
      instance: record.instance,
      group: record.group,
      generation: record.generation,
      status: live.running ? 'running' : 'stopped',
      image: record.image.name,
      resources: record.resources,
      packages: record.packages,
      runtime: live.runtime,
      ...(record.lastPatch ? { lastPatch: record.lastPatch } : {}),
    };
  }
}
