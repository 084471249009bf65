// Disk replication on the embedded engine (docs/replication.md): the emulator's hosts keep no
// disk bytes, so a replica is its consistency point and the packages the disk had, kept by the
// failover host in `engine:<host>:replicas`; restoring it is receiving a copied disk (the
// `disks` hash a create boots from, as after a move). The byte counts are emulated: a full copy
// is the instance's disk size, an increment 1% of it per minute since the last point (the
// benchmark's dirty rate), at least one 64 KiB cluster.

import { VfleetError } from '../../model/errors.js';
import type { PackageVersions } from '../../model/fleet.js';
import type { EngineHostKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import type { RedisClient } from '../../state/redis-client.js';
import type { ReplicaIncoming, ReplicaPoint } from '../host-engine.js';

const GiB = 1024 ** 3;
const CLUSTER = 64 * 1024;

/** A replica as the target stores it: its point and what is installed on the disk. */
interface StoredReplica {
  readonly point: ReplicaPoint;
  readonly packages: PackageVersions;
}

/** The emulated bytes of an increment of a disk of `diskGiB`, `sinceMs` after the last point. */
export function emulatedBytes(kind: 'full' | 'incremental', diskGiB: number, sinceMs: number) {
  const full = Math.max(diskGiB, 1) * GiB;
  if (kind === 'full') return full;
  const dirtied = Math.round(full * 0.01 * (Math.max(sinceMs, 0) / 60_000));
  return Math.min(full, Math.max(CLUSTER, Math.ceil(dirtied / CLUSTER) * CLUSTER));
}

// KEYS: replicas. ARGV: name, incoming (JSON), stored (JSON) → the stored JSON, or an error
// naming why an increment does not follow the replica the target has.
const RECEIVE = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
local incoming = cjson.decode(ARGV[2])
if incoming.kind == 'incremental' then
  if not current then return redis.error_reply('replica-behind no replica to add an increment to') end
  local point = cjson.decode(current).point
  if point.from ~= incoming.from or point.seq ~= incoming.after then
    return redis.error_reply('replica-behind the replica is at ' .. point.from .. ' #' .. point.seq .. ', the increment follows #' .. incoming.after)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return ARGV[3]
`;

export async function receiveReplica(
  redis: RedisClient,
  keys: EngineHostKeys,
  host: string,
  incoming: ReplicaIncoming,
): Promise<ReplicaPoint> {
  const current = await readReplica(redis, keys, incoming.name);
  const point: ReplicaPoint = {
    instance: incoming.name,
    from: incoming.from,
    generation: incoming.generation,
    seq: incoming.kind === 'full' ? 1 : (current?.point.seq ?? 0) + 1,
    consistentAt: incoming.consistentAt,
    lastBytes: incoming.bytes,
    lastKind: incoming.kind,
  };
  const stored: StoredReplica = { point, packages: incoming.packages };
  try {
    await runScript(
      redis,
      'receive-replica',
      RECEIVE,
      [keys.replicas],
      [
        incoming.name,
        JSON.stringify({ kind: incoming.kind, from: incoming.from, after: incoming.after }),
        JSON.stringify(stored),
      ],
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!message.includes('replica-behind')) throw e;
    // Retryable: the next sync sees the target's replica and sends a full copy.
    throw new VfleetError(
      'replica-behind',
      `${host} cannot take ${incoming.name}'s increment: ${message.replace(/^.*replica-behind /, '')}`,
      { retryable: true },
    );
  }
  return point;
}

export async function readReplica(
  redis: RedisClient,
  keys: EngineHostKeys,
  name: string,
): Promise<StoredReplica | undefined> {
  const json = await redis.hget(keys.replicas, name);
  return json === null ? undefined : (JSON.parse(json) as StoredReplica);
}

export async function replicaPoints(
  redis: RedisClient,
  keys: EngineHostKeys,
): Promise<ReadonlyMap<string, ReplicaPoint>> {
  const all = await redis.hgetall(keys.replicas);
  return new Map(
    Object.entries(all).map(([name, json]) => [name, (JSON.parse(json) as StoredReplica).point]),
  );
}
