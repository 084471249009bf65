// The source half of disk replication (docs/replication-qemu.md): increments of a running VM's disk,
// taken by its own QEMU while the guest runs.
//
// - A persistent dirty bitmap, `vfleet-replica`, on the disk's qcow2 node marks every cluster the
//   guest writes. It is made (or cleared) in one QMP `transaction` with a full backup, so it starts
//   exactly at the full copy's point in time. QEMU keeps it in the qcow2 across a clean exit.
// - An incremental is a `blockdev-backup` with `sync: incremental` (bitmap-mode on-success): only
//   the marked clusters, into a new qcow2 whose backing is *named* `base.qcow2` — relative, so it
//   is the base next to it in the target's chain folder wherever that is — but not opened
//   (`backing: null`). On success QEMU unmarks what it copied (writes made meanwhile stay marked);
//   a failed or cancelled job leaves the bitmap as it was, and its file is thrown away.
// - A backup's point in time is when its job starts: QEMU copies a cluster out before the guest
//   overwrites it (copy-before-write). `consistentAt` is taken just before the command is sent,
//   so it is never later than the point (an RPO measured from it is never flattering).
// - `replication/state.json` in the instance's folder names the chain and the last increment
//   taken. It says `taking` while a job runs, so an increment we did not see through (our process
//   died; QEMU may have cleared the bitmap for a file nobody will ship) forces a full.
//
// The caller holds the instance's lock: two takes of one instance at once would share a bitmap.
import { randomBytes } from 'node:crypto';
import { isVfleetError, VfleetError } from '../../model/errors.js';
import { run } from '../../transport/transport.js';
import { mkdirs, readText, sha256Of } from './host-commands.js';
import type { DriverContext, InstanceRecord } from './instance-driver.js';
import {
  clearLeftovers,
  type DirtyBitmap,
  findDisk,
  type Opener,
  runBackup,
  unusable,
} from './qemu-backup.js';
import { withQmp } from './qmp-client.js';
import type { ReplicaPoint } from './replica-chain.js';

export interface ReplicaIncrement {
  readonly instance: string;
  /** Made anew with each full: an incremental extends only the chain of its own full. */
  readonly chain: string;
  readonly kind: 'full' | 'incremental';
  /** Why this one is full. */
  readonly fullReason?: string;
  /** The file on the source host (a qcow2; an incremental's backing is named `base.qcow2`). */
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  /** 1, 2, 3, … on the source host, never reused; a chain's increments follow each other. */
  readonly seq: number;
  /** When the backup job started (ms since the epoch): the disk as of then is in the chain. */
  readonly consistentAt: number;
  readonly durationMs: number;
}

export interface TakeIncrementOptions {
  /** Take a full one, for this reason (the target lost its replica, a new target, …). */
  readonly forceFull?: string;
  /**
   * The target's replica as readReplica found it, or 'none': an increment that could not extend
   * it (another chain, a gap) is taken full, saying why.
   */
  readonly replica?: ReplicaPoint | 'none';
  /** How long the backup job and each command may take. Default 10 min. */
  readonly timeoutMs?: number;
  /** How long a QMP connection or command may take. Default 5 s. */
  readonly qmpTimeoutMs?: number;
}

/** What the source host remembers: `<instance>/replication/state.json`. */
interface SourceState {
  readonly formatVersion: 1;
  readonly chain: string;
  /** The last increment taken whole. */
  readonly seq: number;
  /** An increment started and not seen to its end. */
  readonly taking?: number;
  /**
   * The host this VM migrated live from (real-migration.ts): its dirty bitmap stayed on that
   * host's disk, so the next increment here is a full one, saying so.
   */
  readonly migratedFrom?: string;
}

const INCREMENT = /\/replication\/inc-[0-9]+\.qcow2$/;

/** Source side: takes the next increment of a running VM's disk, into a file on its host. */
export async function takeIncrement(
  ctx: DriverContext,
  record: InstanceRecord,
  options: TakeIncrementOptions = {},
): Promise<ReplicaIncrement> {
  const started = Date.now();
  const where = `${ctx.host}: ${ctx.instance}`;
  if (record.kind !== 'vm') {
    throw new VfleetError(
      'invalid-request',
      `${where} is a ${record.kind}: only VM disks replicate`,
    );
  }
  const timeoutMs = options.timeoutMs ?? 600_000;
  const qmpTimeoutMs = options.qmpTimeoutMs ?? 5_000;
  const open: Opener = (use) => withQmp(ctx.t, `${ctx.dir}/qmp.sock`, use, qmpTimeoutMs);
  const folder = `${ctx.dir}/replication`;
  await mkdirs(ctx.t, folder);
  const read = await readState(ctx);
  const state = read.state;
  const disk = await open(async (c) => {
    await clearLeftovers(c, qmpTimeoutMs);
    return findDisk(c, `${ctx.dir}/disk.qcow2`, where);
  }).catch((e) => {
    if (!isVfleetError(e) || e.code !== 'qmp-unavailable') throw e;
    throw new VfleetError('vm-not-running', `${where}: no QEMU answers: ${e.message}`, {
      retryable: true,
      cause: e,
    });
  });
  const reasons = fullReasons(ctx, read, disk.bitmap, options);
  const full = reasons.length > 0 || !state; // no state: reasons say so already
  const seq = Math.max(state?.seq ?? 0, state?.taking ?? 0) + 1;
  const chain = full || !state ? randomBytes(8).toString('hex') : state.chain;
  const partial = `${folder}/inc-${seq}.qcow2.partial`;
  const path = `${folder}/inc-${seq}.qcow2`;
  const limits = { timeoutMs };
  // Said before the job starts: if we die now, the next take is full.
  await writeState(ctx, {
    formatVersion: 1,
    chain: state?.chain ?? chain,
    seq: state?.seq ?? 0,
    taking: seq,
  });
  await run(ctx.t, ['rm', '-f', '--', partial, path]);
  const backing = full ? [] : ['-u', '-b', 'base.qcow2', '-F', 'qcow2'];
  await run(
    ctx.t,
    ['qemu-img', 'create', '-q', '-f', 'qcow2', ...backing, partial, String(disk.size)],
    limits,
  );

  const { consistentAt, outcome } = await runBackup(open, disk, {
    seq,
    file: partial,
    full,
    timeoutMs,
  });
  if (outcome.error !== undefined) {
    await ctx.t.exec(['rm', '-f', '--', partial]);
    // An incremental seen to fail left its bitmap as it was: the chain goes on. A full, or a
    // job whose end we did not see, leaves `taking`: the next one is full.
    if (!full && outcome.concluded && state) await writeState(ctx, state);
    throw new VfleetError(
      'replication-failed',
      `${where}: the ${full ? 'full' : 'incremental'} backup ${seq} failed: ${outcome.error}`,
      { retryable: true },
    );
  }
  await run(ctx.t, ['mv', '-T', '--', partial, path]);
  const [sha256, size] = await Promise.all([
    sha256Of(ctx.t, path, timeoutMs),
    run(ctx.t, ['stat', '-c', '%s', '--', path]),
  ]);
  if (sha256 === undefined) {
    throw new VfleetError('replication-failed', `${where}: cannot read ${path}`, {
      retryable: true,
    });
  }
  await writeState(ctx, { formatVersion: 1, chain, seq });
  return {
    instance: ctx.instance,
    chain,
    kind: full ? 'full' : 'incremental',
    ...(full ? { fullReason: reasons.join('; ') || 'the first increment' } : {}),
    path,
    bytes: Number(size.toString().trim()),
    sha256,
    seq,
    consistentAt,
    durationMs: Date.now() - started,
  };
}

/** Source side, after shipping: removes the increment's file from the source host. */
export async function dropIncrement(ctx: DriverContext, inc: ReplicaIncrement): Promise<void> {
  if (!INCREMENT.test(inc.path) || !inc.path.startsWith(`${ctx.dir}/replication/`)) {
    throw new VfleetError(
      'invalid-request',
      `${ctx.host}: ${ctx.instance}: ${inc.path} is not an increment of this instance`,
    );
  }
  await run(ctx.t, ['rm', '-f', '--', inc.path]);
}

/** Why the next increment cannot be an incremental one; none when it can. */
function fullReasons(
  ctx: DriverContext,
  read: { state?: SourceState; problem?: string },
  bitmap: DirtyBitmap | undefined,
  options: TakeIncrementOptions,
): string[] {
  const reasons: string[] = [];
  if (options.forceFull) reasons.push(options.forceFull);
  const state = read.state;
  if (!state) {
    if (read.problem) reasons.push(read.problem);
    return reasons;
  }
  if (state.migratedFrom !== undefined) {
    // Everything else (no bitmap, another host's replica) follows from the migration.
    reasons.push(
      `${ctx.instance} migrated live from ${state.migratedFrom}: its dirty bitmap stayed there`,
    );
    return reasons;
  }
  if (state.taking !== undefined) {
    reasons.push(`increment ${state.taking} was not seen to its end (its file was never shipped)`);
  }
  if (!bitmap) {
    reasons.push('the dirty bitmap was lost in an unclean exit of QEMU (or the disk was replaced)');
  } else if (bitmap.inconsistent) {
    reasons.push('the dirty bitmap was left inconsistent by an unclean exit of QEMU');
  } else if (unusable(bitmap)) {
    reasons.push('the dirty bitmap is not recording');
  }
  const replica = options.replica;
  if (replica === 'none') {
    reasons.push(`the target has no replica of ${ctx.instance}`);
  } else if (replica && replica.chain !== state.chain) {
    reasons.push(`the target's replica is of another chain (from ${replica.from})`);
  } else if (replica && replica.seq !== state.seq) {
    reasons.push(
      `the target's replica is at increment ${replica.seq}, this host's last is ${state.seq}`,
    );
  }
  return reasons;
}

async function readState(ctx: DriverContext): Promise<{ state?: SourceState; problem?: string }> {
  const text = await readText(ctx.t, `${ctx.dir}/replication/state.json`);
  if (text === undefined) return { problem: 'the first increment' };
  try {
    const state = JSON.parse(text) as SourceState;
    if (state.formatVersion === 1 && Number.isSafeInteger(state.seq)) return { state };
  } catch {
    // unreadable: as good as none
  }
  return { problem: `${ctx.dir}/replication/state.json is unreadable` };
}

function writeState(ctx: DriverContext, state: SourceState): Promise<void> {
  return ctx.t.writeFile(
    `${ctx.dir}/replication/state.json`,
    `${JSON.stringify(state, null, 2)}\n`,
    0o644,
  );
}

/**
 * For a live migration (real-migration.ts): the replication state the target starts with, from
 * the source's (undefined: the VM was never replicated). Its numbers go on; its chain does not —
 * the dirty bitmap stays on the source's disk, so the target's first increment is a full one.
 */
export async function migratedState(ctx: DriverContext, from: string): Promise<string | undefined> {
  const { state } = await readState(ctx);
  if (!state) return undefined;
  const seq = Math.max(state.seq, state.taking ?? 0);
  const next: SourceState = { formatVersion: 1, chain: state.chain, seq, migratedFrom: from };
  return `${JSON.stringify(next, null, 2)}\n`;
}

/** The target's half of migratedState: written into the instance's folder there. */
export async function placeMigratedState(target: DriverContext, text: string): Promise<void> {
  await mkdirs(target.t, `${target.dir}/replication`);
  await target.t.writeFile(`${target.dir}/replication/state.json`, text, 0o644);
}
