// FleetState.fetch over a raw connection (raw-reply.ts): the same MULTI, its reply made the
// same StateReply, without ioredis. For the state read `vfleet plan` sends before it parses its
// spec (app/state-read-start.ts, app/session.ts).
import type { StateReply } from './fleet-state.js';
import { fleetKeys } from './keys.js';
import {
  type BulkStrings,
  bulkTexts,
  type RawEndpoint,
  type RespValue,
  rawTransaction,
} from './raw-reply.js';

type Hash = Readonly<Record<string, string>>;

/**
 * FleetState.fetch over a raw connection (raw-reply.ts), without ioredis, to the same effect:
 * for the state read `vfleet plan` sends before it parses its spec (app/session.ts). Rejects on
 * anything unexpected; the caller then reads through ioredis.
 */
export async function fetchStateRaw(
  endpoint: RawEndpoint,
  fleet: string,
  connectMs: number,
  signal?: AbortSignal,
): Promise<StateReply> {
  const keys = fleetKeys(fleet);
  const [version, hosts, heartbeats, instances, lists, profiles] = await rawTransaction(
    endpoint,
    [
      ['GET', keys.version],
      ['HGETALL', keys.hosts],
      ['HGETALL', keys.heartbeats],
      ['HVALS', keys.instances],
      ['HGETALL', keys.packages],
      ['HGETALL', keys.profiles],
    ],
    connectMs,
    signal,
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
