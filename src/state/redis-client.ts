// What a vfleet Redis client is: an ioredis `Redis` (one server, or the master a Sentinel
// names) or an ioredis `Cluster` (docs/redis.md). Both speak the same commands with the same
// types; where they differ — a SCAN sees one node's keys only, server settings are per node —
// the helpers here cover both.
import type { Cluster, Redis } from 'ioredis';
import { bulkTexts, rawCommand } from './raw-reply.js';
import type { RedisTarget, SentinelTarget } from './redis-url.js';

export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** The servers holding keys: the one server, or every master of a Cluster. */
export function keyNodes(client: RedisClient): Redis[] {
  return isCluster(client) ? client.nodes('master') : [client];
}

/**
 * Every key matching `pattern` (SCAN MATCH), on every master of a Cluster: one node's SCAN
 * sees the keys of its own slots only.
 */
export async function scanKeys(client: RedisClient, pattern: string): Promise<string[]> {
  const found = new Set<string>();
  for (const node of keyNodes(client)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) found.add(key);
    } while (cursor !== '0');
  }
  return [...found];
}

/**
 * Which servers hold the keys now: the run_id of the one server (a Sentinel's master), or of
 * every master of a Cluster. It changes when a failover promotes another server, or the server
 * restarts: writes the old one had not replicated, or persisted, may be gone. Undefined when
 * INFO is refused.
 */
export async function keyServersIdentity(
  client: RedisClient,
  target?: RedisTarget,
): Promise<string | undefined> {
  // Through Sentinels, the master is the one they name now: a client may still be on the old
  // one, which answers as a master until they demote it.
  if (target?.kind === 'sentinel') return sentinelMaster(target);
  try {
    const ids = await Promise.all(
      keyNodes(client).map(async (node) => /^run_id:(\w+)/m.exec(await node.info('server'))?.[1]),
    );
    return ids.some((id) => id === undefined) ? undefined : ids.sort().join(',');
  } catch {
    return undefined;
  }
}

/** `host:port` of the master the first Sentinel that answers names; undefined if none does. */
async function sentinelMaster(target: SentinelTarget): Promise<string | undefined> {
  for (const sentinel of target.sentinels) {
    try {
      const reply = await rawCommand(
        { ...sentinel, tls: target.tls },
        ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', target.name],
        2_000,
      );
      const [host, port] = bulkTexts(reply);
      if (typeof host === 'string' && typeof port === 'string') return `${host}:${port}`;
    } catch {
      // the next Sentinel
    }
  }
  return undefined;
}
