// What a vfleet Redis client is: an ioredis `Redis` (one server, or the master a Sentinel
// names) or an ioredis `Cluster` (docs/redis.md). Both speak the same commands with the same
// types; where they differ — a SCAN sees one node's keys only, server settings are per node —
// the helpers here cover both.
import type { Cluster, Redis } from 'ioredis';

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
