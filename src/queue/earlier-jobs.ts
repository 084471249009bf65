// Before an apply reads the hosts, what an earlier apply left running must have stopped acting.
// Jobs check that their plan is the current one when they start (action-handler.ts), so a job
// that started before the current plan changed may still be creating an instance on one host
// while the new apply, not seeing it yet, plans the same instance on another: two copies, each
// host fencing only its own. The crash soak found exactly that (34 doubles after an apply was
// killed while `vfleet worker`s kept running its jobs). So apply first marks every earlier plan
// superseded, then waits until no job of the fleet's queues is active under a live lock — a job
// still running on a live worker finishes (its result is then what refresh reads); a job whose
// worker died has no lock left and will be refused when it is taken over.
import { type RedisClient, scanKeys } from '../state/redis-client.js';
import { queueNameOf } from './plan-jobs.js';

export interface EarlierJobsOptions {
  /** Give up after this long and say which jobs still run. */
  readonly deadlineMs: number;
  /** Told once, when there is something to wait for. */
  readonly onWaiting?: (jobs: readonly string[]) => void;
  readonly pollMs?: number;
  /**
   * Ids of this process's workers that have stopped (an apply's earlier round): a lock one of
   * them holds is stale — it ran nothing when it stopped — and is not waited for. A Redis that
   * failed over can bring such a lock back on a job whose end it lost.
   */
  readonly stoppedWorkers?: ReadonlySet<string>;
}

/**
 * The active jobs of the fleet's host queues (`<prefix>:host.<host>:active`) whose lock is held:
 * only actions act on instances. The fleet's other queues — disk replication syncs, webhook
 * notifications — are not waited for: a sync stuck on a host that stopped answering held every
 * apply, and with it the restarts of that very host's instances, until its ssh gave up.
 */
export async function liveActiveJobs(
  redis: RedisClient,
  prefix: string,
  stoppedWorkers: ReadonlySet<string> = new Set(),
): Promise<string[]> {
  // On a Cluster, every master is scanned: the fleet's keys are on one, which SCAN cannot name.
  const lists = await scanKeys(redis, `${prefix}:${queueNameOf('*')}:active`);
  const live: string[] = [];
  for (const list of lists) {
    const queue = list.slice(0, -':active'.length);
    const ids = await redis.lrange(list, 0, -1);
    if (ids.length === 0) continue;
    const pipe = redis.pipeline();
    // A lock's value is BullMQ's token, `<worker id>:<n>`.
    for (const id of ids) pipe.get(`${queue}:${id}:lock`);
    const replies = (await pipe.exec()) ?? [];
    ids.forEach((id, i) => {
      const token = replies[i]?.[1];
      if (typeof token !== 'string' || stoppedWorkers.has(token.split(':')[0] as string)) return;
      live.push(`${queue.slice(prefix.length + 1)}/${id}`);
    });
  }
  return live.sort();
}

/** Resolves once no job of the fleet is active under a live lock; false when the deadline came first. */
export async function waitForEarlierJobs(
  redis: RedisClient,
  prefix: string,
  options: EarlierJobsOptions,
): Promise<boolean> {
  const deadline = Date.now() + options.deadlineMs;
  let told = false;
  for (;;) {
    const live = await liveActiveJobs(redis, prefix, options.stoppedWorkers);
    if (live.length === 0) return true;
    if (!told) options.onWaiting?.(live);
    told = true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 100));
  }
}
