// vfleet refuses a Redis that may evict: under memory pressure it would silently drop locks,
// jobs and state. Every server that holds or may come to hold the fleet's keys is asked —
// the one server; every master and replica of a Cluster; a Sentinel's master and the replicas
// the Sentinels list (one of them is the master after a failover). docs/redis.md.
import { Redis, type RedisOptions } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import { isCluster, type RedisClient } from './redis-client.js';
import type { RedisAddress, RedisTarget } from './redis-url.js';
import { within } from './within.js';

const FIX =
  'run `redis-cli CONFIG SET maxmemory-policy noeviction` and set `maxmemory-policy noeviction` in redis.conf so that it survives a restart (on a managed Redis: in its parameter group or settings)';

/** How long one node may take to say its policy. */
const NODE_TIMEOUT_MS = 5_000;

/** Reads maxmemory-policy: CONFIG GET, or INFO memory where CONFIG is disabled (managed Redis). */
async function evictionPolicy(redis: Redis): Promise<string | undefined> {
  try {
    const reply: unknown = await redis.config('GET', 'maxmemory-policy');
    const value = Array.isArray(reply)
      ? reply[1]
      : (reply as Record<string, unknown> | null)?.['maxmemory-policy'];
    if (typeof value === 'string' && value !== '') return value;
  } catch {
    // CONFIG renamed away or not permitted: INFO is nearly always allowed.
  }
  try {
    const info = await redis.info('memory');
    return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  } catch {
    return undefined;
  }
}

/** What `redis` answers, within a bound: a node that does not answer is "unknown". */
async function policyOf(redis: Redis): Promise<string | undefined> {
  return within(NODE_TIMEOUT_MS, evictionPolicy(redis), undefined);
}

/**
 * Throws `redis-eviction-policy` unless every server of `client` (and, for a Sentinel target,
 * every replica the Sentinels list) has maxmemory-policy noeviction. Disconnects `client` when it
 * throws. `shown` is how the target may be named (no password).
 */
export async function refuseEviction(
  client: RedisClient,
  shown: string,
  target?: RedisTarget,
): Promise<void> {
  const checks: Array<{ where: string; policy: Promise<string | undefined> }> = [];
  if (isCluster(client)) {
    for (const node of client.nodes('all')) {
      checks.push({ where: nodeName(node), policy: policyOf(node) });
    }
  } else {
    checks.push({ where: '', policy: policyOf(client) });
    if (target?.kind === 'sentinel') {
      for (const replica of await sentinelReplicas(target)) {
        checks.push({
          where: `${replica.host}:${replica.port}`,
          policy: replicaPolicy(replica, target),
        });
      }
    }
  }
  for (const check of checks) {
    const policy = await check.policy;
    if (policy === 'noeviction') continue;
    client.disconnect();
    const at = check.where === '' ? `Redis at ${shown}` : `Redis ${check.where} of ${shown}`;
    if (policy === undefined) {
      throw new VfleetError(
        'redis-eviction-policy',
        `cannot read the maxmemory-policy of ${at} (both CONFIG GET and INFO were refused); vfleet needs noeviction: ${FIX}`,
      );
    }
    throw new VfleetError(
      'redis-eviction-policy',
      `${at} has maxmemory-policy ${policy}: under memory pressure it would silently drop vfleet's locks, jobs and state. vfleet needs noeviction on every node: ${FIX}`,
    );
  }
}

function nodeName(node: Redis): string {
  const { host, port } = node.options;
  return `${host?.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A short-lived connection: one question, no reconnects, nothing queued while it connects. */
function oneShot(address: RedisAddress, extra: RedisOptions = {}): Redis {
  const redis = new Redis({
    host: address.host,
    port: address.port,
    lazyConnect: true,
    connectTimeout: NODE_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    showFriendlyErrorStack: false,
    ...extra,
  });
  // Its errors carry AUTH's arguments: heard here, never printed; the question's answer says it.
  redis.on('error', () => undefined);
  return redis;
}

/** The replicas of the master the Sentinels name, as the first Sentinel that answers lists them. */
async function sentinelReplicas(
  target: Extract<RedisTarget, { kind: 'sentinel' }>,
): Promise<RedisAddress[]> {
  for (const sentinel of target.sentinels) {
    const redis = oneShot(sentinel, target.tls ? { tls: {} } : {});
    try {
      const reply = (await within(
        NODE_TIMEOUT_MS,
        redis.connect().then(() => redis.call('SENTINEL', 'REPLICAS', target.name)),
        undefined,
      )) as string[][] | undefined;
      if (!Array.isArray(reply)) continue;
      const replicas: RedisAddress[] = [];
      for (const fields of reply) {
        const field = (name: string) => fields[fields.indexOf(name) + 1];
        const flags = field('flags') ?? '';
        // One that is down cannot be asked; when it comes back the Sentinels make it a replica
        // again, and the next vfleet command asks it.
        if (/s_down|o_down|disconnected/.test(flags)) continue;
        const host = field('ip');
        const port = Number(field('port'));
        if (host !== undefined && Number.isInteger(port)) replicas.push({ host, port });
      }
      return replicas;
    } catch {
      // the next Sentinel
    } finally {
      redis.disconnect();
    }
  }
  return [];
}

async function replicaPolicy(
  address: RedisAddress,
  target: RedisTarget,
): Promise<string | undefined> {
  const redis = oneShot(address, {
    username: target.username,
    password: target.password,
    ...(target.tls ? { tls: {} } : {}),
  });
  try {
    await within(NODE_TIMEOUT_MS, redis.connect(), undefined);
    return await policyOf(redis);
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}
