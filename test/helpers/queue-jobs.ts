// What the worker tests read of a fleet's BullMQ keys and engine keys over a test's own client:
// which jobs are active and who holds them, when their locks expire, how a job was taken over
// (from the queue's event stream), and where each instance is (from the embedded hosts' keys).
// Shared by worker-cli and many-machines-cli.
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';

/** The key prefix of fleet `fleet`'s host queues. */
export const queuesOf = (fleet = 'lab') => `vfleet:{${fleet}}:bull:host.`;

/** Whether Redis stream id `a` ("ms-seq") comes after `b`. */
export const streamIdAfter = (a: string, b: string) => {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am > bm || (am === bm && as > bs);
};

/** Every job in an active list, by its hash's key. */
export async function activeJobs(redis: Redis, fleet = 'lab'): Promise<string[]> {
  const jobs: string[] = [];
  for (const list of await redis.keys(`${queuesOf(fleet)}*:active`)) {
    const queue = list.slice(0, -':active'.length);
    for (const id of await redis.lrange(list, 0, -1)) jobs.push(`${queue}:${id}`);
  }
  return jobs;
}

export type JobHash = Record<string, string> & { readonly key: string };

/** Every job of a finished set (`completed` or `failed`), its hash with its key. */
export async function finishedJobs(
  redis: Redis,
  set: 'completed' | 'failed',
  fleet = 'lab',
): Promise<JobHash[]> {
  const jobs: JobHash[] = [];
  for (const zset of await redis.keys(`${queuesOf(fleet)}*:${set}`)) {
    const queue = zset.slice(0, -`:${set}`.length);
    for (const id of await redis.zrange(zset, '0', '-1')) {
      jobs.push({ ...(await redis.hgetall(`${queue}:${id}`)), key: `${queue}:${id}` });
    }
  }
  return jobs;
}

/**
 * When each job's lock is gone at the latest: the clock read before asking, plus the lock's ttl
 * (the lock expires no earlier than that, however long the answer takes on a loaded machine).
 */
export async function lockExpiries(
  redis: Redis,
  jobs: readonly string[],
): Promise<Map<string, number>> {
  const goneBy = new Map<string, number>();
  for (const job of jobs) {
    const asked = Date.now();
    goneBy.set(job, asked + Math.max(0, await redis.pttl(`${job}:lock`)));
  }
  return goneBy;
}

/**
 * A job that was taken over: found stalled exactly once by a live worker's check, no earlier than
 * `lockGoneBy` (its lock had expired), and active again after that in the stream's own order (a
 * job's processedOn is the worker's clock when it asked, which on a loaded machine can come
 * before the server's stalled event it then ran after). Returns the server's time of the stall.
 */
export async function takenOverAt(redis: Redis, job: JobHash, lockGoneBy: number): Promise<number> {
  // BullMQ counts an attempt when it ends: one, the one that completed (none failed).
  assert.equal(job.atm, '1', `${job.key} ended once`);
  assert.equal(job.stc, '1', `${job.key} was found stalled once`);
  assert.equal(job.ats, '2', `${job.key} started twice: on the lost worker, then once more`);
  const queue = job.key.slice(0, job.key.lastIndexOf(':'));
  const id = job.key.slice(queue.length + 1);
  const events = await redis.xrange(`${queue}:events`, '-', '+');
  const stalled = events.filter(([, fields]) => fields[1] === 'stalled' && fields[3] === id);
  assert.equal(stalled.length, 1, `${job.key} was taken over once`);
  const stalledId = (stalled[0] as [string, string[]])[0];
  const takenAt = Number(stalledId.split('-')[0]);
  assert.ok(takenAt >= lockGoneBy - 50, `${job.key} taken over only once its lock had expired`);
  assert.ok(
    events.some(
      ([eventId, fields]) =>
        fields[1] === 'active' && fields[3] === id && streamIdAfter(eventId, stalledId),
    ),
    `${job.key} ran again after it was taken over`,
  );
  return takenAt;
}

/** Instance → the hosts whose embedded engine has it (one MULTI: a consistent snapshot). */
export async function hostsOfInstances(
  redis: Redis,
  fleet = 'lab',
  status?: string,
): Promise<Map<string, string[]>> {
  const keys = (await redis.keys(`vfleet:{${fleet}}:engine:*:instances`)).sort();
  const replies = (await redis.multi(keys.map((k) => ['hgetall', k])).exec()) as Array<
    [Error | null, Record<string, string>]
  >;
  const where = new Map<string, string[]>();
  keys.forEach((key, i) => {
    const host = key.split(':')[3] as string;
    for (const [name, json] of Object.entries(replies[i]?.[1] ?? {})) {
      if (status !== undefined && (JSON.parse(json) as { status: string }).status !== status)
        continue;
      where.set(name, [...(where.get(name) ?? []), host]);
    }
  });
  return where;
}

/** Asserts every instance is on exactly one host and that the state records exactly those. */
export async function assertEachOnce(redis: Redis, count: number, fleet = 'lab'): Promise<void> {
  const where = await hostsOfInstances(redis, fleet);
  assert.equal(where.size, count);
  assert.deepEqual(
    [...where].filter(([, hosts]) => hosts.length !== 1),
    [],
  );
  assert.deepEqual(
    (await redis.hkeys(`vfleet:{${fleet}}:instances`)).sort(),
    [...where.keys()].sort(),
  );
}
