// How long a job held by a worker that died waits before another worker takes it over, and the
// BullMQ settings that make that bound true. One number, VFLEET_WORKER_LOCK_MS (`vfleet worker
// --lock-ms`), for standalone and in-process workers alike.
//
// Why the lock is not simply that number: BullMQ finds a stalled job in two steps of its
// stalled-job check, which runs inside the live workers of the queue, at most once per
// `stalledInterval` for the whole queue (a `stalled-check` key with that TTL), each worker
// trying every `stalledInterval`. A check first moves back the jobs it had marked at an earlier
// check whose lock has expired since, then marks every active job; a lock renewal unmarks its
// job. So a job is taken over at the second check after its worker's last renewal, and at the
// earliest once its lock has expired. With lockDuration = stalledInterval = 30 s (vfleet until
// this was found by hand) that was up to a minute: a new worker's first try fell inside the dead
// worker's last check's window and did nothing, its second marked the job, its third moved it,
// 55–58 s after the kill.
//
// With the lock at half the bound (T/2) and the check every quarter of it (T/4), the dead
// worker's lock is gone T/2 after its death at the latest, and a worker serving the queue moves
// the job back within three of its checks (3T/4): its first may fall in the dead worker's last
// window, the next marks, the one after moves — one more when the lock outlived that mark.
// Measured: a replacement started at once took over 9–17 s after the kill at T = 30 s, 23.7 s at
// worst (it was serving 1.2 s after the kill: 1.2 + 3 × 7.5). So the job runs again within T of
// the death when a worker serves the queue within T/4 of it, and within 3T/4 of a worker's start
// otherwise. BullMQ renews a running job's lock every T/8–T/4, so a job may run as long as it
// needs (a VM boot takes minutes) while its worker's event loop turns; an event loop blocked for
// longer than T/4 can lose a job to another worker, which host fencing makes safe.
import { VfleetError } from '../model/errors.js';

/** The documented take-over bound, in milliseconds, when nothing sets it. */
export const DEFAULT_TAKEOVER_MS = 30_000;
/** Below this the lock renews every 125 ms or more often: Redis traffic, not safety. */
const MIN_TAKEOVER_MS = 1_000;
const MAX_TAKEOVER_MS = 24 * 3600 * 1000;

export interface WorkerLockOptions {
  readonly lockDuration: number;
  readonly stalledInterval: number;
  readonly maxStalledCount: number;
}

/**
 * How often a job may be found stalled before it fails. A stall is not always a dead worker: a
 * live worker whose event loop was held up past T/4 (a loaded machine) loses its job's lock too,
 * and with BullMQ's default of 1 the crash soak saw such jobs fail at the second stall, failing
 * the apply. Handlers are idempotent and fenced, so running a job again costs nothing wrong; a
 * job that kills every worker that takes it (a poison job) still fails, at the fourth stall.
 */
export const MAX_STALLED_COUNT = 3;

/** BullMQ Worker options under which a dead worker's job is taken over within `takeoverMs`. */
export function workerLockOptions(takeoverMs: number): WorkerLockOptions {
  return {
    lockDuration: Math.floor(takeoverMs / 2),
    stalledInterval: Math.floor(takeoverMs / 4),
    maxStalledCount: MAX_STALLED_COUNT,
  };
}

/**
 * The take-over bound from `--lock-ms` (when given) or VFLEET_WORKER_LOCK_MS, else 30 s;
 * anything but a whole number of milliseconds from 1 s to a day is a usage error naming its source.
 */
export function takeoverMsFrom(env: NodeJS.ProcessEnv, flag?: string): number {
  const [raw, source] =
    flag !== undefined ? [flag, '--lock-ms'] : [env.VFLEET_WORKER_LOCK_MS, 'VFLEET_WORKER_LOCK_MS'];
  if (raw === undefined || raw === '') return DEFAULT_TAKEOVER_MS;
  const ms = /^\d{1,9}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!(ms >= MIN_TAKEOVER_MS && ms <= MAX_TAKEOVER_MS)) {
    throw new VfleetError(
      'usage',
      `${source} takes a whole number of milliseconds from ${MIN_TAKEOVER_MS} to ${MAX_TAKEOVER_MS}, not ${JSON.stringify(raw.slice(0, 40))}`,
    );
  }
  return ms;
}
