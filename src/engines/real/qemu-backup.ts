// One backup job of a running VM's disk through its QEMU (QMP), for vm-increments.ts: the disk's
// qcow2 node and the replication's dirty bitmap on it, a backup into a file, and what an earlier
// take that died left in QEMU. Every QMP conversation is a short one on a fresh connection:
// QEMU serves one client at a time, and a backup may run for minutes.
import { isVfleetError, VfleetError } from '../../model/errors.js';
import { waitFor } from './host-commands.js';
import type { QmpClient } from './qmp-client.js';

/** The persistent dirty bitmap of disk replication, on the disk's qcow2 node. */
export const BITMAP = 'vfleet-replica';
/** Job ids and node names of ours: a leftover of an earlier take is known by it. */
const PREFIX = 'vfleet-replica-';

export interface DirtyBitmap {
  readonly name: string;
  readonly recording?: boolean;
  readonly busy?: boolean;
  readonly inconsistent?: boolean;
}

export interface DiskNode {
  readonly node: string;
  readonly size: number;
  readonly bitmap: DirtyBitmap | undefined;
}

export interface BackupRequest {
  /** Names the job and its target node. */
  readonly seq: number;
  /** The qcow2 the backup writes, made beforehand (an incremental's with its backing named). */
  readonly file: string;
  /** Full: every cluster, and the bitmap starts (over) with it; else the bitmap's clusters. */
  readonly full: boolean;
  readonly timeoutMs: number;
}

/**
 * Runs one backup job to its end: `file` becomes a node, the job starts (a full one in one
 * `transaction` with the bitmap's start), is awaited, dismissed, and the node removed. Returns
 * when it started (just before the command: never later than the copy's point in time) and how
 * it ended.
 */
export async function runBackup(
  open: Opener,
  disk: DiskNode,
  request: BackupRequest,
): Promise<{ consistentAt: number; outcome: JobOutcome }> {
  const node = `${PREFIX}${request.seq}`;
  const { full } = request;
  let consistentAt = 0;
  let outcome: JobOutcome = { concluded: false, error: 'never started' };
  try {
    await open(async (c) => {
      await c.execute('blockdev-add', {
        driver: 'qcow2',
        'node-name': node,
        // An incremental's file names its backing for the target's chain; here it stays shut.
        backing: null,
        file: { driver: 'file', filename: request.file },
      });
      const backup = {
        device: disk.node,
        target: node,
        'job-id': node,
        // Kept, with its error, until dismissed: see awaitJob.
        'auto-dismiss': false,
        sync: full ? 'full' : 'incremental',
        ...(full ? {} : { bitmap: BITMAP }),
      };
      const usable = disk.bitmap !== undefined && !unusable(disk.bitmap);
      if (full && disk.bitmap && !usable) {
        await c.execute('block-dirty-bitmap-remove', { node: disk.node, name: BITMAP });
      }
      // The bitmap starts (or starts over) in the same transaction as the full copy, so it
      // marks exactly what changes after the copy's point in time.
      const anchor = usable
        ? { type: 'block-dirty-bitmap-clear', data: { node: disk.node, name: BITMAP } }
        : {
            type: 'block-dirty-bitmap-add',
            data: { node: disk.node, name: BITMAP, persistent: true },
          };
      consistentAt = Date.now();
      await c.execute('transaction', {
        actions: [...(full ? [anchor] : []), { type: 'blockdev-backup', data: backup }],
      });
    });
    outcome = await awaitJob(open, node, request.timeoutMs);
  } catch (e) {
    outcome = { concluded: false, error: (e as Error).message };
  } finally {
    await open(async (c) => {
      if (outcome.concluded) await c.execute('job-dismiss', { id: node });
      await c.execute('blockdev-del', { 'node-name': node });
    }).catch(() => undefined); // a leftover, which the next take clears
  }
  return { consistentAt, outcome };
}

/** A bitmap no incremental can trust: a full starts a new one. */
export function unusable(bitmap: DirtyBitmap): boolean {
  return bitmap.inconsistent === true || bitmap.busy === true || bitmap.recording === false;
}

export interface JobOutcome {
  /** Seen concluded (successfully or not): its bitmap is settled. */
  readonly concluded: boolean;
  readonly error?: string;
}

interface JobInfo {
  readonly id: string;
  readonly status: string;
  readonly error?: string;
}

/** A short QMP conversation on a fresh connection. */
export type Opener = <T>(use: (c: QmpClient) => Promise<T>) => Promise<T>;

/**
 * Polls query-jobs, each time on a fresh connection, until the job has concluded: the job stays
 * (auto-dismiss off) with its error until dismissed, so no event can be missed, a dropped
 * connection loses nothing, and QEMU's one QMP slot is free between polls. Past the deadline
 * the job is cancelled (which leaves an incremental's bitmap as it was).
 */
async function awaitJob(open: Opener, id: string, timeoutMs: number): Promise<JobOutcome> {
  let job: JobInfo | undefined;
  const poll = async () => {
    try {
      const jobs = (await open((c) => c.execute('query-jobs'))) as JobInfo[];
      job = jobs.find((j) => j.id === id);
      return job === undefined || job.status === 'concluded';
    } catch (e) {
      if (isVfleetError(e) && e.retryable) return false; // a busy socket: ask again
      throw e;
    }
  };
  if (await waitFor(poll, timeoutMs, 20, 250)) {
    if (!job) return { concluded: false, error: 'the job vanished (dismissed by someone else?)' };
    return { concluded: true, ...(job.error ? { error: job.error } : {}) };
  }
  await open((c) => c.execute('job-cancel', { id })).catch(() => undefined);
  const cancelled = await waitFor(poll, 30_000, 20, 250);
  return {
    concluded: cancelled && job?.status === 'concluded',
    error: `no end in ${timeoutMs} ms, cancelled`,
  };
}

/** Jobs and target nodes an earlier take left (it died): cancelled, dismissed, removed. */
export async function clearLeftovers(c: QmpClient, timeoutMs: number): Promise<void> {
  const ours = async () =>
    ((await c.execute('query-jobs')) as JobInfo[]).filter((j) => j.id.startsWith(PREFIX));
  for (const job of await ours()) {
    if (job.status !== 'concluded') await c.execute('job-cancel', { id: job.id });
  }
  await waitFor(async () => (await ours()).every((j) => j.status === 'concluded'), timeoutMs);
  for (const job of await ours()) await c.execute('job-dismiss', { id: job.id });
  const nodes = (await c.execute('query-named-block-nodes', { flat: true })) as Array<{
    'node-name': string;
  }>;
  for (const n of nodes) {
    if (n['node-name'].startsWith(PREFIX)) {
      await c.execute('blockdev-del', { 'node-name': n['node-name'] });
    }
  }
}

/** The qcow2 node QEMU reads `path` through, its size and our bitmap on it. */
export async function findDisk(
  c: QmpClient,
  path: string,
  where: string,
  code = 'replication-failed',
): Promise<DiskNode> {
  const devices = (await c.execute('query-block')) as Array<{
    inserted?: {
      file: string;
      'node-name': string;
      drv: string;
      image: { 'virtual-size': number };
      'dirty-bitmaps'?: DirtyBitmap[];
    };
  }>;
  const disk = devices.find((d) => d.inserted?.file === path)?.inserted;
  if (disk?.drv !== 'qcow2') {
    throw new VfleetError(code, `${where}: QEMU has no qcow2 disk ${path}`);
  }
  return {
    node: disk['node-name'],
    size: disk.image['virtual-size'],
    bitmap: disk['dirty-bitmaps']?.find((b) => b.name === BITMAP),
  };
}
