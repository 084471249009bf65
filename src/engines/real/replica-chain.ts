// The target half of disk replication (docs/replication-qemu.md): the replica of a VM's disk on its
// failover host, as a chain of qcow2 files in one folder, and the point it is consistent at.
//
//   <replicaDir>/replica.json              the point: chain, increment, consistentAt, … and the top
//   <replicaDir>/incoming/<sha256>.qcow2   an increment shipped and checked, not applied yet
//   <replicaDir>/<chain>/base.qcow2        the chain's full, every increment but the newest in it
//   <replicaDir>/<chain>/inc-<seq>.qcow2   the newest increment (backing: base.qcow2, relative)
//
// Crash safety: at every moment replica.json names files that read as the disk at its point.
// - An incremental first commits the previous top into base (`qemu-img commit -d`). Interrupted,
//   base holds a subset of the top's clusters — some old, some new, one perhaps torn — and the
//   top still overlays every one of them, so base←top reads exactly as before. The point drops the
//   top only after the commit succeeded, and the file goes only then. The new increment gets its
//   name in the chain only after its sha256 matched, and the point names it only after that.
// - A full goes into a new chain folder; the point moves to it in one rename (writeFile), and only
//   then is the old chain removed.
// - Files are flushed (`sync`) before the point names them, so a power cut cannot leave the point
//   naming bytes that never reached the disk.
//
// The caller holds the instance's lock on this host: two applies at once would share the chain.
import { VfleetError } from '../../model/errors.js';
import { run, type Transport } from '../../transport/transport.js';
import { exists, mkdirs, readText, removeTree, sha256Of } from './host-commands.js';
import { checkInstanceName, cleanFolder, isInstanceName } from './host-layout.js';
import type { ReplicaIncrement } from './vm-increments.js';

/** The consistent point a replica is at. */
export interface ReplicaPoint {
  readonly instance: string;
  /** The source host, as the caller named it. */
  readonly from: string;
  readonly chain: string;
  /** The instance's generation whose placement replicated it; an older one is refused. */
  readonly generation: number;
  readonly seq: number;
  /** The disk as of this moment (ms since the epoch, the source's clock) is the replica. */
  readonly consistentAt: number;
  /** Bytes shipped into this chain, its full included. */
  readonly bytes: number;
  /** Of the last increment applied. */
  readonly lastBytes: number;
  readonly lastKind: ReplicaIncrement['kind'];
  /** Of the last increment applied. */
  readonly sha256: string;
  readonly appliedAt: number;
}

/** An increment on its way into a replica: who sent it, for which placement. */
export type ArrivingIncrement = ReplicaIncrement & {
  readonly from: string;
  readonly generation: number;
};

export interface ReplicaOptions {
  /** How long one command (a sha256sum, a commit, a move) may take. Default 10 min. */
  readonly timeoutMs?: number;
}

/** replica.json: the point and the file on top of the chain's base. */
interface ReplicaRecord extends ReplicaPoint {
  readonly formatVersion: 1;
  readonly top?: string;
}

const CHAIN = /^[0-9a-f]{16}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const DEFAULT_TIMEOUT_MS = 600_000;

/** Where a shipped increment waits to be applied. */
export function arrivalPath(replicaDir: string, inc: ReplicaIncrement): string {
  return `${replicaDir}/incoming/${inc.sha256}.qcow2`;
}

/** Target side: commits the increment into the replica's chain; returns the new point. */
export async function applyIncrement(
  t: Transport,
  replicaDir: string,
  inc: ArrivingIncrement,
  options: ReplicaOptions = {},
): Promise<ReplicaPoint> {
  const dir = checkReplica(t, replicaDir, inc);
  const limits = { timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  const where = `${t.host}: the replica of ${inc.instance}`;
  let record = await readRecord(t, dir);
  if (record && record.instance !== inc.instance) {
    throw new VfleetError(
      'invalid-request',
      `${where}: ${dir} holds the replica of ${record.instance}`,
    );
  }
  if (record && inc.generation < record.generation) {
    throw new VfleetError(
      'stale-generation',
      `${where} refuses increment ${inc.seq} of generation ${inc.generation}: it has generation ${record.generation}`,
    );
  }
  if (record?.chain === inc.chain && inc.seq <= record.seq) {
    return pointOf(record); // in the replica already: a repeat, or a late one
  }
  if (inc.kind === 'incremental' && !follows(record, inc)) {
    const at = record
      ? `is at increment ${record.seq} of chain ${record.chain} from ${record.from}`
      : 'is missing';
    throw new VfleetError(
      'replica-gap',
      `${where} ${at}: increment ${inc.seq} of chain ${inc.chain} from ${inc.from} does not follow it; a full sync is needed`,
    );
  }
  const chainDir = `${dir}/${inc.chain}`;
  const name = inc.kind === 'full' ? 'base.qcow2' : `inc-${inc.seq}.qcow2`;
  const placed = `${chainDir}/${name}`;
  const arrived = arrivalPath(dir, inc);
  // Placed already, and the point not written: a retry after a crash. A file gets its name in
  // the chain only once checked, and nothing writes an increment's file before it is the top.
  const file = (await exists(t, arrived))
    ? arrived
    : (await exists(t, placed))
      ? placed
      : undefined;
  if (!file) {
    throw new VfleetError(
      'replica-increment-missing',
      `${where}: increment ${inc.seq} (${inc.sha256.slice(0, 12)}) has not arrived in ${dir}/incoming`,
    );
  }
  const got = await sha256Of(t, file, limits.timeoutMs);
  if (got !== inc.sha256) {
    if (file === arrived) await t.exec(['rm', '-f', '--', arrived]);
    throw new VfleetError(
      'replica-corrupt',
      `${where}: increment ${inc.seq} from ${inc.from} has sha256 ${got ?? 'unreadable'}, not ${inc.sha256}; the replica stays at increment ${record?.seq ?? 'none'}`,
      { retryable: true },
    );
  }
  if (inc.kind === 'incremental' && record?.top) {
    record = await commitTop(t, dir, record, limits.timeoutMs);
  }
  await mkdirs(t, chainDir);
  if (file === arrived) await run(t, ['mv', '-T', '--', arrived, placed], limits);
  await run(t, ['sync', '--', placed, chainDir], limits);
  const next: ReplicaRecord = {
    formatVersion: 1,
    instance: inc.instance,
    from: inc.from,
    chain: inc.chain,
    generation: inc.generation,
    seq: inc.seq,
    consistentAt: inc.consistentAt,
    bytes: inc.kind === 'full' ? inc.bytes : (record?.bytes ?? 0) + inc.bytes,
    lastBytes: inc.bytes,
    lastKind: inc.kind,
    sha256: inc.sha256,
    appliedAt: Date.now(),
    ...(inc.kind === 'incremental' ? { top: name } : {}),
  };
  await writeRecord(t, dir, next);
  if (inc.kind === 'full') await removeOtherChains(t, dir, inc.chain);
  return pointOf(next);
}

/** The point a replica is at; undefined where there is none. */
export async function readReplica(
  t: Transport,
  replicaDir: string,
): Promise<ReplicaPoint | undefined> {
  const record = await readRecord(t, checkFolder(t.host, replicaDir));
  return record && pointOf(record);
}

/** The replicas in `replicasDir` (HostLayout.replicas), by the folder's name (the instance). */
export async function readReplicas(
  t: Transport,
  replicasDir: string,
): Promise<ReadonlyMap<string, ReplicaPoint>> {
  const dir = checkFolder(t.host, replicasDir);
  const listing = await t.exec(['ls', '-1', '--', dir]);
  const found = new Map<string, ReplicaPoint>();
  if (listing.code !== 0) return found; // no folder: no replica yet
  for (const name of listing.stdout.toString('utf8').split('\n')) {
    if (!isInstanceName(name)) continue;
    const point = await readReplica(t, `${dir}/${name}`);
    if (point) found.set(name, point);
  }
  return found;
}

/**
 * The disk a restart on this host boots from, made of the replica itself: the newest increment
 * is committed into the chain's base and the base is moved to `instanceDisk`, a qcow2 that stands
 * alone. It takes one commit of the last increment (not a copy of the whole disk, as a flattened
 * copy would), and the disk depends on no file of the replica (as an overlay on the chain would:
 * a later apply commits into that base, and dropReplica removes it). The replica is used up:
 * after it, readReplica finds none, and protecting the restarted VM starts with a full.
 */
export async function diskFromReplica(
  t: Transport,
  replicaDir: string,
  instanceDisk: string,
  options: ReplicaOptions = {},
): Promise<void> {
  const dir = checkFolder(t.host, replicaDir);
  const disk = cleanFolder(instanceDisk);
  if (disk === undefined) {
    throw new VfleetError('invalid-request', `${t.host}: ${instanceDisk} is not a disk's path`);
  }
  const limits = { timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  let record = await readRecord(t, dir);
  if (!record) {
    throw new VfleetError('replica-missing', `${t.host}: there is no replica in ${dir}`);
  }
  const base = `${dir}/${record.chain}/base.qcow2`;
  const moving = `${disk}.from-replica`;
  const [hasDisk, hasBase, hasMoving] = await Promise.all(
    [disk, base, moving].map((p) => exists(t, p)),
  );
  if (hasDisk && hasBase) {
    throw new VfleetError(
      'disk-exists',
      `${t.host}: ${record.instance} has a disk already (${disk}); a replica never overwrites one`,
    );
  }
  if (!hasDisk) {
    await mkdirs(t, disk.slice(0, disk.lastIndexOf('/')));
    if (hasBase) {
      if (record.top) record = await commitTop(t, dir, record, limits.timeoutMs);
      // Under a name of its own first: across filesystems mv copies, and a copy cut short must
      // never be taken for the disk.
      await run(t, ['mv', '-T', '--', base, moving], limits);
    } else if (!hasMoving) {
      throw new VfleetError(
        'replica-corrupt',
        `${t.host}: the replica of ${record.instance} names chain ${record.chain}, which has no base`,
      );
    }
    await run(t, ['sync', '--', moving], limits);
    await run(t, ['mv', '-T', '--', moving, disk], limits);
  }
  await t.exec(['rm', '-f', '--', `${dir}/replica.json`]);
  await removeTree(t, dir);
}

/** Removes a replica and everything on its way into it. */
export async function dropReplica(t: Transport, replicaDir: string): Promise<void> {
  await removeTree(t, checkFolder(t.host, replicaDir));
}

function follows(record: ReplicaRecord | undefined, inc: ArrivingIncrement): boolean {
  return (
    record !== undefined &&
    record.chain === inc.chain &&
    record.from === inc.from &&
    inc.seq === record.seq + 1
  );
}

/**
 * Commits the top into the base, then writes the point without it, then removes its file: at
 * every step the files the point names read as the point (the header says why).
 */
async function commitTop(
  t: Transport,
  dir: string,
  record: ReplicaRecord,
  timeoutMs: number,
): Promise<ReplicaRecord> {
  const chainDir = `${dir}/${record.chain}`;
  const top = `${chainDir}/${record.top}`;
  // -d: the top keeps its clusters (emptying it would only be work, and it must stay whole until
  // the point lets go of it).
  await run(t, ['qemu-img', 'commit', '-q', '-d', '-f', 'qcow2', top], { timeoutMs });
  await run(t, ['sync', '--', `${chainDir}/base.qcow2`], { timeoutMs });
  const { top: _committed, ...rest } = record;
  await writeRecord(t, dir, rest);
  await run(t, ['rm', '-f', '--', top]);
  return rest;
}

/** After a full: the chains it replaced, and increments that can no longer apply. */
async function removeOtherChains(t: Transport, dir: string, chain: string): Promise<void> {
  const listing = await run(t, ['ls', '-1', '--', dir]);
  for (const entry of listing.toString('utf8').split('\n')) {
    if (CHAIN.test(entry) && entry !== chain) await removeTree(t, `${dir}/${entry}`);
  }
}

function pointOf(record: ReplicaRecord): ReplicaPoint {
  const { formatVersion: _format, top: _top, ...point } = record;
  return point;
}

async function readRecord(t: Transport, dir: string): Promise<ReplicaRecord | undefined> {
  const text = await readText(t, `${dir}/replica.json`);
  if (text === undefined) return undefined;
  try {
    const record = JSON.parse(text) as ReplicaRecord;
    if (record.formatVersion === 1 && CHAIN.test(record.chain)) return record;
  } catch {
    // not JSON: below
  }
  throw new VfleetError('replica-corrupt', `${t.host}: ${dir}/replica.json is not a replica point`);
}

async function writeRecord(t: Transport, dir: string, record: ReplicaRecord): Promise<void> {
  // writeFile writes a temporary file and renames it: the point moves in one step.
  await t.writeFile(`${dir}/replica.json`, `${JSON.stringify(record, null, 2)}\n`, 0o644);
  await run(t, ['sync', '--', `${dir}/replica.json`, dir]);
}

function checkFolder(host: string, replicaDir: string): string {
  const dir = cleanFolder(replicaDir);
  if (dir === undefined) {
    throw new VfleetError('invalid-request', `${host}: ${replicaDir} is not a replica folder`);
  }
  return dir;
}

/** An increment's values reach paths and arguments: each is checked for what it may be. */
function checkReplica(t: Transport, replicaDir: string, inc: ArrivingIncrement): string {
  checkInstanceName(t.host, inc.instance);
  const bad = (what: string) =>
    new VfleetError('invalid-request', `${t.host}: increment of ${inc.instance}: ${what}`);
  if (!CHAIN.test(inc.chain)) throw bad(`chain ${JSON.stringify(inc.chain)}`);
  if (!SHA256.test(inc.sha256)) throw bad('sha256 is not 64 hex digits');
  if (!Number.isSafeInteger(inc.seq) || inc.seq < 1) throw bad(`seq ${inc.seq}`);
  if (inc.kind !== 'full' && inc.kind !== 'incremental') throw bad(`kind ${String(inc.kind)}`);
  if (!Number.isSafeInteger(inc.generation) || inc.generation < 0) {
    throw bad(`generation ${inc.generation}`);
  }
  return checkFolder(t.host, replicaDir);
}
