// The fleet's `replication` queue (docs/replication.md): one BullMQ Job Scheduler per replicated
// VM (`replicate:<instance>`, every its group's interval), kept in step with the state by the
// leader controller (`syncReplicationSchedules`), and the worker that runs the syncs
// (replication-job.ts) — in every controller that runs its own workers and in `vfleet worker`.
// One queue for the fleet rather than one per host: a sync involves two hosts, and which worker
// runs it does not matter; the instance's own lock keeps its syncs one at a time.
import { type Queue, Worker } from 'bullmq';
import type { RedisClient } from '../state/redis-client.js';
import { withErrorListener } from './error-listener.js';
import {
  type ReplicationJobDeps,
  type ReplicationOutcome,
  replicateInstance,
} from './replication-job.js';

export const REPLICATION_QUEUE = 'replication';
const SCHEDULER = 'replicate:';

export interface ReplicationJobData {
  readonly instance: string;
}

/**
 * Makes the queue's schedulers exactly `wanted` (instance → interval ms): adds and changes what
 * differs, removes the schedulers of instances no longer replicated. Returns what it changed.
 */
export async function syncReplicationSchedules(
  queue: Queue,
  wanted: ReadonlyMap<string, number>,
): Promise<{ readonly added: number; readonly removed: number }> {
  const present = new Map<string, number | undefined>();
  for (const s of await queue.getJobSchedulers(0, -1)) {
    const id = s.id ?? s.key;
    if (id.startsWith(SCHEDULER)) present.set(id.slice(SCHEDULER.length), s.every);
  }
  let added = 0;
  let removed = 0;
  for (const [instance, every] of wanted) {
    if (present.get(instance) === every) continue;
    await queue.upsertJobScheduler(
      `${SCHEDULER}${instance}`,
      { every },
      {
        name: 'replicate',
        data: { instance } satisfies ReplicationJobData,
        opts: { removeOnComplete: 100, removeOnFail: 100, attempts: 1 },
      },
    );
    added++;
  }
  for (const instance of present.keys()) {
    if (wanted.has(instance)) continue;
    await queue.removeJobScheduler(`${SCHEDULER}${instance}`);
    removed++;
  }
  return { added, removed };
}

export function replicationWorker(
  deps: () => ReplicationJobDeps,
  options: {
    readonly connection: RedisClient;
    readonly prefix: string;
    readonly concurrency: number;
  },
): Worker<ReplicationJobData, ReplicationOutcome> {
  const worker = new Worker<ReplicationJobData, ReplicationOutcome>(
    REPLICATION_QUEUE,
    (job) => replicateInstance(deps(), job.data.instance, job.id ?? String(Date.now())),
    { connection: options.connection, prefix: options.prefix, concurrency: options.concurrency },
  );
  return withErrorListener(worker);
}
