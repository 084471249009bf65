// REDIS_URL's target (redis-url.ts) → the options every client on it is made with
// (redis-clients.ts), for each form: one server, the master a Sentinel names, a Cluster's seed
// nodes (docs/redis.md).
import { isIP } from 'node:net';
import type { RedisOptions } from 'ioredis';
import { RedisClients, type RedisClientsOptions } from './redis-clients.js';
import type { RedisTarget } from './redis-url.js';

/**
 * A client that meets a read-only replica where it wrote to a master (a Sentinel failover: the
 * old master, demoted, still holds the connection) reconnects, to the new master, and sends the
 * command again.
 */
const reconnectOnReadonly = (error: Error): 2 | false =>
  /^READONLY/.test(error.message) ? 2 : false;

export function clientsFor(
  target: RedisTarget,
  options: Omit<RedisClientsOptions, 'shown' | 'clusterNodes'>,
): RedisClients {
  const auth = { username: target.username, password: target.password };
  const shown = { ...options, shown: target.redacted };
  switch (target.kind) {
    case 'standalone':
      return new RedisClients(
        {
          host: target.host,
          port: target.port,
          ...auth,
          db: target.db,
          ...(target.tls ? { tls: isIP(target.host) ? {} : { servername: target.host } } : {}),
        },
        shown,
      );
    case 'sentinel': {
      const base: RedisOptions = {
        sentinels: target.sentinels.map((s) => ({ host: s.host, port: s.port })),
        name: target.name,
        role: 'master',
        ...auth,
        db: target.db,
        reconnectOnError: reconnectOnReadonly,
        // Not ioredis's failoverDetector (a subscription to the Sentinels' +switch-master): a
        // client closed while it subscribes keeps its Sentinel connections, and the process
        // never exits (seen: an apply after a failover hung once done). A client stays on an
        // old master until the Sentinels demote it (READONLY, then it reconnects); what it
        // wrote meanwhile is lost, and apply says so (app/apply.ts, docs/redis.md).
        // The Sentinels are asked without the data nodes' password (redis-url.ts).
        ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      };
      return new RedisClients(base, shown);
    }
    case 'cluster':
      return new RedisClients(
        {
          ...auth,
          reconnectOnError: reconnectOnReadonly,
          ...(target.tls ? { tls: {} } : {}),
        },
        { ...shown, clusterNodes: target.nodes },
      );
  }
}
