// Everything a Redis server holds, as text — every key's name, its DUMP payload and a typed read
// of its value — for the tests that look for a secret that must not be there (secrets-cli,
// redis-cluster-cli, redis-sentinel-cli: on a Cluster or a Sentinel setup, once per node;
// controller-webhook-cli). A key that expires between the listing and its read reads as nothing.
import type { Redis } from 'ioredis';

/** Every key of the server and everything in it, as text: names, values, DUMP payloads. */
export async function everythingIn(redis: Redis): Promise<Array<{ key: string; text: string }>> {
  const out: Array<{ key: string; text: string }> = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', '1000');
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      const parts: unknown[] = [key, (await redis.dumpBuffer(key))?.toString('latin1')];
      if (type === 'string') parts.push(await redis.get(key));
      else if (type === 'hash') parts.push(await redis.hgetall(key));
      else if (type === 'list') parts.push(await redis.lrange(key, 0, -1));
      else if (type === 'set') parts.push(await redis.smembers(key));
      else if (type === 'zset') parts.push(await redis.zrange(key, '0', '-1', 'WITHSCORES'));
      else if (type === 'stream') parts.push(await redis.xrange(key, '-', '+'));
      out.push({ key, text: JSON.stringify(parts) });
    }
  } while (cursor !== '0');
  return out;
}
