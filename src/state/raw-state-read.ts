// FleetState.fetch over a raw connection (raw-reply.ts): the same MULTI, its reply made the
// same StateReply, without ioredis. For the state read `vfleet plan` sends before it parses its
// spec (app/state-read-start.ts, app/session.ts). Through a Sentinel, the master's address is
// asked of the Sentinels first (one more round trip, on a connection of its own); on a Cluster,
// the read goes to the first seed node, and once more to the node its MOVED names (the fleet's
// keys are in one slot: docs/redis.md).
import type { StateReply } from './fleet-state.js';
import { fleetKeys } from './keys.js';
import {
  type BulkStrings,
  bulkTexts,
  MovedError,
  type RawEndpoint,
  type RespValue,
  rawCommand,
  rawTransaction,
} from './raw-reply.js';
import type { RedisAddress } from './redis-url.js';

/** Where the read goes: a server, the master the Sentinels name, or a Cluster's seed nodes. */
export type RawTarget =
  | RawEndpoint
  | (RawEndpoint & { readonly sentinels: readonly RedisAddress[]; readonly master: string })
  | (RawEndpoint & { readonly seeds: readonly RedisAddress[] });

/** The server to send the read to: asks the Sentinels for their master where there are. */
async function serverOf(
  target: RawTarget,
  connectMs: number,
  signal?: AbortSignal,
): Promise<RawEndpoint> {
  if ('seeds' in target) {
    const [first] = target.seeds;
    if (first === undefined) throw new Error('no seed node');
    return { ...target, ...first };
  }
  if (!('sentinels' in target)) return target;
  for (const sentinel of target.sentinels) {
    try {
      const reply = await rawCommand(
        { ...sentinel, tls: target.tls },
        ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', target.master],
        connectMs,
        signal,
      );
      const [host, port] = bulkTexts(reply);
      if (typeof host === 'string' && typeof port === 'string') {
        return { ...target, host, port: Number(port) };
      }
    } catch {
      if (signal?.aborted) throw new Error('abandoned');
      // the next Sentinel
    }
  }
  throw new Error('no Sentinel named the master');
}

type Hash = Readonly<Record<string, string>>;

/**
 * FleetState.fetch over a raw connection (raw-reply.ts), without ioredis, to the same effect:
 * for the state read `vfleet plan` sends before it parses its spec (app/session.ts). Rejects on
 * anything unexpected; the caller then reads through ioredis.
 */
export async function fetchStateRaw(
  target: RawTarget,
  fleet: string,
  connectMs: number,
  signal?: AbortSignal,
): Promise<StateReply> {
  const keys = fleetKeys(fleet);
  const commands = [
    ['GET', keys.version],
    ['HGETALL', keys.hosts],
    ['HGETALL', keys.heartbeats],
    ['HVALS', keys.instances],
    ['HGETALL', keys.packages],
    ['HGETALL', keys.profiles],
  ];
  const server = await serverOf(target, connectMs, signal);
  const read = (endpoint: RawEndpoint) => rawTransaction(endpoint, commands, connectMs, signal);
  const [version, hosts, heartbeats, instances, lists, profiles] = await read(server).catch(
    (e: unknown) => {
      // A Cluster node that does not hold the fleet's slot names the one that does.
      if (e instanceof MovedError && 'seeds' in target) {
        return read({ ...server, host: e.host, port: e.port });
      }
      throw e;
    },
  );
  if (!(version === null || typeof version === 'string') || !isBulk(instances)) {
    throw new Error('not the replies of a state read');
  }
  return {
    version,
    hosts: hashOf(hosts),
    heartbeats: hashOf(heartbeats),
    records: instances,
    lists: hashOf(lists),
    profiles: hashOf(profiles),
  };
}

const isBulk = (value: RespValue | undefined): value is BulkStrings =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** HGETALL's reply as the object ioredis makes of it. */
function hashOf(value: RespValue | undefined): Hash {
  if (value === undefined) throw new Error('a reply is missing');
  const texts = bulkTexts(value);
  const hash: Record<string, string> = {};
  for (let i = 0; i + 1 < texts.length; i += 2) {
    const field = texts[i];
    const text = texts[i + 1];
    if (typeof field !== 'string' || typeof text !== 'string') throw new Error('not a hash');
    hash[field] = text;
  }
  return hash;
}
