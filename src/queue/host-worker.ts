// The worker of one host's queue: how both `vfleet worker` and apply's in-process workers are
// wired — the queue's name, the fleet's prefix, the lock that lets another worker take over a
// job whose worker died (worker-lock.ts), an error listener (error-listener.ts), and the handler
// (action-handler.ts) that acts on the host. Its name, the machine and pid, is what BullMQ
// records in each job it takes (`pb`, "processed by"): which machine ran a job, where workers run
// on many (docs/many-machines.md).
import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import type { RedisClient } from '../state/redis-client.js';
import type { JobOutcome } from './action-handler.js';
import { withErrorListener } from './error-listener.js';
import { type ActionJobData, queueNameOf } from './plan-jobs.js';
import { DEFAULT_TAKEOVER_MS, workerLockOptions } from './worker-lock.js';

export interface HostWorkerOptions {
  /** For its commands; BullMQ duplicates it for the blocking wait, so workers may share one. */
  readonly connection: RedisClient;
  readonly prefix: string;
  /** Jobs it runs at once. */
  readonly concurrency: number;
  /** A job held by a worker that dies is taken over within this (default 30 s). */
  readonly takeoverMs?: number;
  readonly handler: (job: { name: string; data: ActionJobData }) => Promise<JobOutcome>;
}

export function hostWorker(
  host: string,
  options: HostWorkerOptions,
): Worker<ActionJobData, JobOutcome> {
  const worker = new Worker<ActionJobData, JobOutcome>(
    queueNameOf(host),
    (job) => options.handler(job),
    {
      name: workerName(),
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      ...workerLockOptions(options.takeoverMs ?? DEFAULT_TAKEOVER_MS),
    },
  );
  // Connection hiccups surface as job failures, never as an unhandled 'error'.
  return withErrorListener(worker);
}

/** `<host name>:<pid>`: BullMQ's `pb` field of the jobs this process's workers took. */
export function workerName(): string {
  return `${hostname()}:${process.pid}`;
}
