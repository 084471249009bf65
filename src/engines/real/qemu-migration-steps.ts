// The QMP steps of a live migration (qemu-migration.ts has the order and why): the target's NBD
// export and migration listener, the source's disk mirror onto that export, the memory migration
// and its convergence, the mirror's end, and what an earlier attempt left in the source's QEMU.
// QEMU 7.2's QMP (docs/replication-qemu.md, "Live migration", names the commands).
import { randomInt } from 'node:crypto';
import { isVfleetError, VfleetError } from '../../model/errors.js';
import { waitFor } from './host-commands.js';
import type { Opener } from './qemu-backup.js';
import type { QmpClient } from './qmp-client.js';

/** The mirror job on the source, the NBD client node it writes to, the target's export. */
export const JOB = 'vfleet-migrate';
export const NODE = 'vfleet-migrate-target';
export const EXPORT = 'vfleet-migrate';

/** The NBD server's port is picked here (QEMU cannot tell which one it bound to): above the
 * usual ephemeral range (Linux: 32768–60999), so an outgoing connection rarely holds it. */
const NBD_PORTS = { from: 61_000, to: 65_535, attempts: 8 } as const;

export interface MigrationInfo {
  readonly status?: string;
  readonly 'total-time'?: number;
  readonly downtime?: number;
  readonly 'expected-downtime'?: number;
  readonly 'error-desc'?: string;
  readonly ram?: {
    readonly transferred?: number;
    readonly remaining?: number;
    readonly total?: number;
    readonly 'dirty-sync-count'?: number;
    readonly 'dirty-pages-rate'?: number;
    readonly mbps?: number;
  };
  readonly 'socket-address'?: ReadonlyArray<{ readonly port?: string }>;
}

interface JobInfo {
  readonly id: string;
  readonly status: string;
  readonly error?: string;
}

/** The statuses of a migration still under way (the source's `query-migrate`). */
const UNDER_WAY = new Set([
  'setup',
  'active',
  'device',
  'pre-switchover',
  'wait-unplug',
  'cancelling',
  'postcopy-active',
]);

/** An address as it goes into a QEMU URI: an IPv6 one in brackets. */
export function uriHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/**
 * The target's listeners, on `address`: QEMU's NBD server exporting the new disk's node writable
 * (one client: the source's mirror), and the migration stream (`migrate-incoming`, port 0: the
 * kernel picks, `query-migrate` says which). Returns both ports.
 */
export async function listen(
  c: QmpClient,
  address: string,
  node: string,
): Promise<{ nbd: number; migration: number }> {
  let nbd: number | undefined;
  let refused = '';
  for (let i = 0; i < NBD_PORTS.attempts && nbd === undefined; i++) {
    const port = randomInt(NBD_PORTS.from, NBD_PORTS.to);
    try {
      await c.execute('nbd-server-start', {
        addr: { type: 'inet', data: { host: address, port: String(port) } },
        'max-connections': 1,
      });
      nbd = port;
    } catch (e) {
      if (!isVfleetError(e) || e.code !== 'qmp-error') throw e;
      refused = e.message; // most likely the port is taken: another
    }
  }
  if (nbd === undefined) {
    throw new VfleetError('migration-failed', `no NBD server on ${address}: ${refused}`);
  }
  await c.execute('block-export-add', {
    type: 'nbd',
    id: EXPORT,
    'node-name': node,
    name: EXPORT,
    writable: true,
  });
  await c.execute('migrate-incoming', { uri: `tcp:${uriHost(address)}:0` });
  const info = (await c.execute('query-migrate')) as MigrationInfo;
  const migration = Number(info['socket-address']?.[0]?.port);
  if (!Number.isInteger(migration) || migration <= 0) {
    throw new VfleetError('migration-failed', `the target's QEMU names no migration port`);
  }
  return { nbd, migration };
}

/**
 * The source's disk mirrored onto the target's export: an NBD client node, then
 * `blockdev-mirror` (sync full: the whole disk as the guest sees it, its image's base included,
 * so the target's disk stands alone). `write-blocking`: once the copy has caught up, every guest
 * write reaches the target before it completes, so the mirror converges whatever the guest
 * writes, and nothing is left to copy when the guest stops.
 */
export async function startMirror(
  c: QmpClient,
  disk: string,
  address: string,
  nbdPort: number,
): Promise<void> {
  await c.execute('blockdev-add', {
    driver: 'nbd',
    'node-name': NODE,
    server: { type: 'inet', host: address, port: String(nbdPort) },
    export: EXPORT,
  });
  await c.execute('blockdev-mirror', {
    'job-id': JOB,
    device: disk,
    target: NODE,
    sync: 'full',
    'copy-mode': 'write-blocking',
    // Kept, with its error, until dismissed: no outcome is missed between two polls.
    'auto-dismiss': false,
  });
}

/** Polls the mirror (short connections: QEMU's one QMP slot stays free) until it is ready. */
export async function awaitMirrorReady(open: Opener, timeoutMs: number): Promise<void> {
  let job: JobInfo | undefined;
  const ready = await waitFor(
    async () => {
      job = ((await open((c) => c.execute('query-jobs'))) as JobInfo[]).find((j) => j.id === JOB);
      if (!job) throw new VfleetError('migration-failed', 'the disk mirror vanished');
      if (['concluded', 'aborting', 'null'].includes(job.status)) {
        throw new VfleetError(
          'migration-failed',
          `the disk mirror ended: ${job.error ?? job.status}`,
        );
      }
      return job.status === 'ready';
    },
    timeoutMs,
    50,
    250,
  );
  if (!ready) {
    throw new VfleetError(
      'migration-failed',
      `the disk mirror was not in step within ${timeoutMs} ms (${job?.status ?? 'no job'})`,
    );
  }
}

/**
 * Runs `check` until it gives a value: again at once when one of `events` arrives on `c`, and at
 * least every `intervalMs`; undefined after `timeoutMs`.
 */
export async function until<T>(
  c: QmpClient,
  events: readonly string[],
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs: number,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  let woken = false;
  let wake: (() => void) | undefined;
  const stop = c.onEvent((event) => {
    if (!events.includes(event)) return;
    woken = true;
    wake?.();
  });
  try {
    for (;;) {
      woken = false;
      const value = await check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(intervalMs, left));
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    }
  } finally {
    stop();
  }
}

export interface ConvergenceLimits {
  /** Passes over guest memory after which a migration not done yet is called non-converging. */
  readonly maxPasses: number;
  readonly timeoutMs: number;
}

/**
 * Why a migration under way should be given up, or undefined to go on: it has been through
 * `maxPasses` passes over the guest's memory and still has dirty pages to send (the guest dirties
 * them faster than they go), or it has run past its time.
 */
export function convergenceProblem(
  info: MigrationInfo,
  elapsedMs: number,
  limits: ConvergenceLimits,
): string | undefined {
  const passes = info.ram?.['dirty-sync-count'] ?? 0;
  const left = `${mib(info.ram?.remaining)} MiB of ${mib(info.ram?.total)} MiB still to send`;
  const expected =
    info['expected-downtime'] === undefined
      ? ''
      : `, expected downtime ${info['expected-downtime']} ms`;
  if (passes > limits.maxPasses) {
    return `the memory migration does not converge: ${passes} passes, ${left}${expected}`;
  }
  if (elapsedMs > limits.timeoutMs) {
    return `the memory migration did not complete within ${limits.timeoutMs} ms: ${passes} passes, ${left}${expected}`;
  }
  return undefined;
}

const mib = (bytes: number | undefined) => ((bytes ?? 0) / 2 ** 20).toFixed(1);

/**
 * Waits on the source for the migration to end (woken by QEMU's MIGRATION events, polling
 * between them to judge convergence). Completed: its info. Anything else throws
 * `migration-failed` with QEMU's reason or the convergence verdict (the caller cancels).
 */
export async function awaitMigration(
  c: QmpClient,
  startedAt: number,
  limits: ConvergenceLimits & { readonly intervalMs: number },
): Promise<MigrationInfo> {
  let problem: string | undefined;
  const ended = await until(
    c,
    ['MIGRATION', 'MIGRATION_PASS'],
    async () => {
      const info = (await c.execute('query-migrate')) as MigrationInfo;
      if (!UNDER_WAY.has(info.status ?? '')) return info;
      problem = convergenceProblem(info, Date.now() - startedAt, limits);
      return problem === undefined ? undefined : info;
    },
    limits.timeoutMs + 60_000, // the verdict above comes first; this only bounds a wedged QEMU
    limits.intervalMs,
  );
  if (ended?.status === 'completed') return ended;
  throw new VfleetError(
    'migration-failed',
    problem ??
      `the memory migration ${ended?.status ?? 'never ended'}${ended?.['error-desc'] ? `: ${ended['error-desc']}` : ''}`,
  );
}

/**
 * After the memory migration completed (the source paused): the mirror cancelled — on a ready
 * mirror that ends it with the target a copy of the disk as of now, with nothing left to write
 * (write-blocking) — its outcome read, the job dismissed and the NBD node removed.
 */
export async function finishMirror(c: QmpClient, timeoutMs: number): Promise<void> {
  await c.execute('block-job-cancel', { device: JOB });
  const job = await until(
    c,
    ['JOB_STATUS_CHANGE', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'],
    async () => {
      const found = ((await c.execute('query-jobs')) as JobInfo[]).find((j) => j.id === JOB);
      return found?.status === 'concluded' ? found : undefined;
    },
    timeoutMs,
    20,
  );
  if (!job) {
    throw new VfleetError('migration-failed', `the disk mirror did not end within ${timeoutMs} ms`);
  }
  await c.execute('job-dismiss', { id: JOB });
  await c.execute('blockdev-del', { 'node-name': NODE });
  if (job.error !== undefined) {
    throw new VfleetError('migration-failed', `the disk mirror failed: ${job.error}`);
  }
}

/**
 * What a migration attempt leaves in the source's QEMU, undone: the migration cancelled (QEMU
 * resumes a guest it had stopped for it, unless it completed), the mirror abandoned (`force`:
 * the source's disk is the guest's, the target's copy is thrown away), the NBD node removed.
 * Bounded; idempotent (nothing there is fine).
 */
export async function clearMigration(c: QmpClient, timeoutMs: number): Promise<void> {
  await c.execute('migrate_cancel');
  await until(
    c,
    ['MIGRATION'],
    async () => {
      const info = (await c.execute('query-migrate')) as MigrationInfo;
      return UNDER_WAY.has(info.status ?? '') ? undefined : true;
    },
    timeoutMs,
    50,
  );
  const ours = async () =>
    ((await c.execute('query-jobs')) as JobInfo[]).filter((j) => j.id === JOB);
  for (const job of await ours()) {
    if (job.status !== 'concluded') {
      await c.execute('block-job-cancel', { device: JOB, force: true }).catch(() => undefined);
    }
  }
  await until(
    c,
    ['JOB_STATUS_CHANGE'],
    async () => ((await ours()).every((j) => j.status === 'concluded') ? true : undefined),
    timeoutMs,
    50,
  );
  for (const _ of await ours()) await c.execute('job-dismiss', { id: JOB });
  const nodes = (await c.execute('query-named-block-nodes', { flat: true })) as Array<{
    'node-name': string;
  }>;
  if (nodes.some((n) => n['node-name'] === NODE)) {
    await c.execute('blockdev-del', { 'node-name': NODE });
  }
}
