// RealEngine's disk replication (docs/replication.md, docs/replication-qemu.md): the HostEngine
// operations over the QEMU primitives of vm-replication.ts. The source takes an increment of the
// running VM under the instance's lock (its record at the job's generation), hands it to the
// target, which ships it into its replica folder and commits it under its own lock for the name;
// the source's increment file is removed after. A restart from the replica makes the replica the
// instance's disk under the target's fence, as a copied disk is before a move's create.
import { VfleetError } from '../../model/errors.js';
import type { Transport } from '../../transport/transport.js';
import {
  checkReplicaTarget,
  type HostEngine,
  type ReplicaIncoming,
  type ReplicaPoint,
  type ReplicationResult,
} from '../host-engine.js';
import { mkdirs } from './host-commands.js';
import { HostLayout } from './host-layout.js';
import type { DriverContext, InstanceRecord } from './instance-driver.js';
import {
  applyIncrement,
  type ReplicaPoint as ChainPoint,
  diskFromReplica,
  dropIncrement,
  dropReplica,
  readReplica,
  readReplicas,
  shipIncrement,
  takeIncrement,
} from './vm-replication.js';

/** What the engine lends its replication: its host, transport, layout, lock and fence. */
export interface ReplicatingHost {
  readonly host: string;
  readonly transport: Transport;
  readonly layout: HostLayout;
  /** Runs `act` under this host's lock for the name. */
  hold<T>(name: string, act: () => Promise<T>): Promise<T>;
  /** Runs `act` under the lock and the fence at `generation` (RealEngine.mutate). */
  fenced<T>(name: string, generation: number, op: string, act: () => Promise<T>): Promise<T>;
  context(name: string): DriverContext;
  readRecord(name: string): Promise<InstanceRecord | undefined>;
  /** Clears what an incoming live migration that died left in the name's folder (no record). */
  clearDeadIncoming(name: string): Promise<void>;
}

/** The engine-level point of a chain's point (the chain id kept for the source's next take). */
function pointOf(p: ChainPoint): ReplicaPoint & { readonly chain: string } {
  return {
    instance: p.instance,
    from: p.from,
    generation: p.generation,
    seq: p.seq,
    consistentAt: p.consistentAt,
    lastBytes: p.lastBytes,
    lastKind: p.lastKind,
    chain: p.chain,
  };
}

export async function replicateReal(
  engine: HostEngine,
  self: ReplicatingHost,
  name: string,
  generation: number,
  to: HostEngine,
  options: { readonly full?: string },
): Promise<ReplicationResult> {
  checkReplicaTarget(engine, name, to);
  const started = Date.now();
  const held = (await to.replicas()).get(name) as (ReplicaPoint & { chain?: string }) | undefined;
  return self.hold(name, async () => {
    const record = await self.readRecord(name);
    if (!record)
      throw new VfleetError('instance-missing', `${name} does not exist on ${self.host}`);
    if (record.generation !== generation) {
      throw new VfleetError(
        'stale-generation',
        `${self.host} has ${name} at generation ${record.generation}, not ${generation}`,
      );
    }
    const ctx = self.context(name);
    const usable = held !== undefined && held.from === self.host && held.chain !== undefined;
    const inc = await takeIncrement(ctx, record, {
      ...(options.full ? { forceFull: options.full } : {}),
      replica: usable ? ({ ...held, chain: held.chain } as unknown as ChainPoint) : 'none',
    });
    try {
      const point = await to.receiveReplica({
        name,
        from: self.host,
        generation,
        kind: inc.kind,
        bytes: inc.bytes,
        consistentAt: inc.consistentAt,
        after: inc.seq - 1,
        packages: record.packages,
        file: {
          chain: inc.chain,
          seq: inc.seq,
          sha256: inc.sha256,
          path: inc.path,
          durationMs: inc.durationMs,
          ...(inc.fullReason ? { fullReason: inc.fullReason } : {}),
        },
        writeFiles: (landing) =>
          shipIncrement(
            self.transport,
            inc,
            landing.transport,
            new HostLayout(landing.host, landing.dataDir).replicaDir(name),
          ),
      });
      return {
        point,
        ...(inc.fullReason ? { fullReason: inc.fullReason } : {}),
        // The take alone is the increment's own durationMs: status shows the whole sync.
        durationMs: Date.now() - started,
      };
    } finally {
      await dropIncrement(ctx, inc).catch(() => undefined);
    }
  });
}

export async function receiveReplicaReal(
  self: ReplicatingHost,
  incoming: ReplicaIncoming,
): Promise<ReplicaPoint> {
  const { name, file, writeFiles } = incoming;
  if (!file || !writeFiles) {
    throw new VfleetError(
      'engine-mismatch',
      `${self.host} cannot take ${name}'s replica from ${incoming.from}: the increment comes without its file`,
    );
  }
  // The bytes arrive outside the lock (into `incoming/`, a partial file renamed when its
  // checksum holds): a source that stops answering mid-ship must not hold up a restart from the
  // replica (restoreReplica takes the lock). Only committing the increment holds it.
  const dir = self.layout.replicaDir(name);
  await mkdirs(self.transport, dir);
  await writeFiles({ host: self.host, transport: self.transport, dataDir: self.layout.dataDir });
  return self.hold(name, async () => {
    const point = await applyIncrement(self.transport, dir, {
      instance: name,
      chain: file.chain,
      kind: incoming.kind,
      ...(file.fullReason ? { fullReason: file.fullReason } : {}),
      path: file.path,
      bytes: incoming.bytes,
      sha256: file.sha256,
      seq: file.seq,
      consistentAt: incoming.consistentAt,
      durationMs: file.durationMs,
      from: incoming.from,
      generation: incoming.generation,
    });
    return pointOf(point);
  });
}

export async function replicasReal(
  self: ReplicatingHost,
): Promise<ReadonlyMap<string, ReplicaPoint>> {
  const points = await readReplicas(self.transport, self.layout.replicas);
  return new Map([...points].map(([name, p]) => [name, pointOf(p)]));
}

export async function restoreReplicaReal(
  self: ReplicatingHost,
  name: string,
  generation: number,
): Promise<ReplicaPoint> {
  return self.fenced(name, generation, 'restore-replica', async () => {
    if (await self.readRecord(name)) {
      throw new VfleetError(
        'instance-exists',
        `${self.host} has ${name} already: its replica is not made its disk`,
      );
    }
    const dir = self.layout.replicaDir(name);
    const point = await readReplica(self.transport, dir);
    if (!point)
      throw new VfleetError('replica-missing', `${self.host} keeps no replica of ${name}`);
    await self.clearDeadIncoming(name);
    const instanceDir = self.layout.instanceDir(name);
    await mkdirs(self.transport, instanceDir);
    await diskFromReplica(self.transport, dir, `${instanceDir}/disk.qcow2`);
    return pointOf(point);
  });
}

export async function dropReplicaReal(self: ReplicatingHost, name: string): Promise<void> {
  await self.hold(name, () => dropReplica(self.transport, self.layout.replicaDir(name)));
}
