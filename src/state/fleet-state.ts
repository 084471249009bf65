// The observed state of one fleet in Redis: hosts and their heartbeats, instances, the state
// version, the fleet lock and the event history (key layout: keys.ts). An adapter over an
// ioredis client; the clock comes in as arguments, so callers (and tests) decide what "now" is.
//
// Every mutation of hosts or instances INCRs `version` in the same MULTI, so a reader that sees
// the new record also sees the new version, and a plan made against an older version is known
// to be stale. Heartbeats are the exception: they say a host is alive, they change nothing a
// plan was made from, and bumping the version on each would make every saved plan stale within
// seconds of a worker running. Losing a host is a mutation the controller makes when a
// heartbeat is too old, and that one bumps the version.
import type { ChainableCommander } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import type { PatchStatus } from '../model/instances.js';
import {
  InstanceRecordReader,
  type ObservedInstanceRecord,
  parseJson,
  type RawRecords,
  sortedByLeadingName,
  storedInstanceRecord,
} from './instance-records.js';
import {
  ALL_FLEET_LOCKS,
  EVENTS_MAXLEN,
  type FleetKeys,
  fleetKeys,
  fleetOfLockKey,
} from './keys.js';
import { runScript } from './lua-script.js';
import { replies } from './multi-replies.js';
import { recordPlacement } from './record-placement.js';
import { type RedisClient, scanKeys } from './redis-client.js';

export type { ObservedInstanceRecord };
export type InstanceRecordStatus = ObservedInstanceRecord['status'];

export interface ObservedHostRecord {
  readonly name: string;
  readonly facts: Readonly<Record<string, unknown>>;
  /** Epoch ms of the last heartbeat, as the heartbeating process's clock said; null: never. */
  readonly lastHeartbeat: number | null;
}

export interface FleetSnapshot {
  readonly version: number;
  /** Sorted by name, so that equal states read equal. */
  readonly hosts: readonly ObservedHostRecord[];
  /** Sorted by instance name. */
  readonly instances: readonly ObservedInstanceRecord[];
}

type Hash = Readonly<Record<string, string>>;

/** The reply of a state read (`FleetState.fetch`, fetchStateRaw), for `FleetState.decode`. */
export interface StateReply {
  readonly version: string | null;
  readonly hosts: Hash;
  readonly heartbeats: Hash;
  /** The instance records (HVALS), as they arrived. */
  readonly records: RawRecords;
  readonly lists: Hash;
  readonly profiles: Hash;
}

export interface LockHolder {
  /** Names the lock in messages and in `vfleet force-unlock <id>`. */
  readonly id: string;
  readonly pid: number;
  /** The machine the holder runs on. */
  readonly host: string;
  /** Epoch ms when it was taken. */
  readonly since: number;
}

export type LockResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly holder: LockHolder };

export type ForceUnlockResult =
  | { readonly ok: true; readonly holder: LockHolder }
  /** Nothing was removed: no lock is held (holder null), or it is held under another id. */
  | { readonly ok: false; readonly holder: LockHolder | null };

export interface FleetEvent {
  /** The stream entry id (`<ms>-<seq>`, Redis's clock): orders events across processes. */
  readonly id: string;
  readonly event: Readonly<Record<string, unknown>>;
}

// SET NX PX, or the current holder, atomically: a separate GET after a failed SET could find the
// lock expired in between and report no holder.
const ACQUIRE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
`;

// Acts on the lock only while its holder's id is ARGV[1]: a holder whose lock expired and was
// taken by another must not renew or delete the other's. Returns {acted, current value}.
const IF_HOLDER = `
local value = redis.call('GET', KEYS[1])
if not value then return {0, false} end
local ok, holder = pcall(cjson.decode, value)
if not ok or type(holder) ~= 'table' or holder.id ~= ARGV[1] then return {0, value} end
if ARGV[2] == 'renew' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('DEL', KEYS[1]) end
return {1, value}
`;

/** Whether the records are in strictly ascending order of their names. */
function inNameOrder(records: readonly ObservedInstanceRecord[]): boolean {
  for (let i = 1; i < records.length; i++) {
    if (
      !(
        (records[i - 1] as ObservedInstanceRecord).instance <
        (records[i] as ObservedInstanceRecord).instance
      )
    )
      return false;
  }
  return true;
}

function byName<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

/** KEYS: current plan, instances, version, then a hash per entry; ARGV: plan, name, json, then id, text per entry. */
const PUT_OF_PLAN = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 4, #KEYS do
  redis.call('HSET', KEYS[i], ARGV[2 * i - 4], ARGV[2 * i - 3])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('INCR', KEYS[3])
return 1
`;

export class FleetState {
  readonly fleet: string;
  readonly keys: FleetKeys;
  private readonly redis: RedisClient;

  constructor(redis: RedisClient, fleet: string) {
    this.redis = redis;
    this.fleet = fleet;
    this.keys = fleetKeys(fleet);
  }

  /**
   * Everything `plan` and `status` need, in one round trip: one MULTI, so the version read is
   * the version of exactly these records and the package lists and profiles they name (a fleet
   * of 100,000 instances is one HVALS reply).
   */
  async readAll(): Promise<FleetSnapshot> {
    return this.decode(await this.fetch());
  }

  /**
   * readAll in two steps: the reply as Redis sent it, then (`decode`) the snapshot. Refresh asks
   * the hosts for their listings between the two: a script Redis runs holds back whatever it has
   * not yet sent of an earlier reply, and the state's is megabytes.
   */
  async fetch(): Promise<StateReply> {
    // The instance records alone (HVALS: each names its instance), half the reply elements of
    // HGETALL: on 100,000 instances, decoding the reply is most of the read. As Buffers, which
    // live outside the JS heap while the reply arrives, then side by side in one.
    const [version, hosts, heartbeats, instances, lists, profiles] = replies(
      await this.redis
        .multi()
        .get(this.keys.version)
        .hgetall(this.keys.hosts)
        .hgetall(this.keys.heartbeats)
        .hvalsBuffer(this.keys.instances)
        .hgetall(this.keys.packages)
        .hgetall(this.keys.profiles)
        .exec(),
      6,
    ) as [string | null, Hash, Hash, Buffer[], Hash, Hash];
    const starts = new Int32Array(instances.length);
    const ends = new Int32Array(instances.length);
    let at = 0;
    instances.forEach((raw, i) => {
      starts[i] = at;
      at += raw.length;
      ends[i] = at;
    });
    const records = { data: Buffer.concat(instances, at), starts, ends };
    return { version, hosts, heartbeats, records, lists, profiles };
  }

  /** The snapshot a reply of `fetch` (or of fetchStateRaw) holds. */
  async decode(reply: StateReply): Promise<FleetSnapshot> {
    const { version, hosts, heartbeats, records, lists, profiles } = reply;
    const names = new Set([...Object.keys(hosts), ...Object.keys(heartbeats)]);
    const hostRecords = [...names].map((name): ObservedHostRecord => {
      const facts = hosts[name];
      const beat = heartbeats[name];
      return {
        name,
        facts:
          facts === undefined
            ? {}
            : (parseJson(facts, `${this.keys.hosts} field ${name}`) as Record<string, unknown>),
        lastHeartbeat: beat === undefined ? null : Number(beat),
      };
    });
    const reader = new InstanceRecordReader(this.keys, lists, profiles);
    const ordered = sortedByLeadingName(records);
    const read = reader.readAll(records, ordered);
    if (!Array.isArray(read)) throw await this.corruptInstance(read.json);
    const instanceRecords = read;
    // In name order already, unless a record's leading name was not its name after all.
    const sorted = ordered !== undefined && inNameOrder(instanceRecords);
    return {
      version: version === null ? 0 : Number(version),
      hosts: hostRecords.sort(byName((h) => h.name)),
      instances: sorted
        ? instanceRecords
        : instanceRecords.sort((a, b) =>
            a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0,
          ),
    };
  }

  /**
   * One instance's record as `readAll` would return it (undefined: the state has none): for
   * tools and tests, which should not decode the stored form themselves (instance-records.ts).
   */
  async instance(name: string): Promise<ObservedInstanceRecord | undefined> {
    const [json, lists, profiles] = replies(
      await this.redis
        .multi()
        .hget(this.keys.instances, name)
        .hgetall(this.keys.packages)
        .hgetall(this.keys.profiles)
        .exec(),
      3,
    ) as [string | null, Record<string, string>, Record<string, string>];
    if (json === null) return undefined;
    const record = new InstanceRecordReader(this.keys, lists, profiles).read(json);
    if (record === undefined) throw await this.corruptInstance(json);
    return record;
  }

  /** The error for a record that is not JSON, naming its field (read again to find it). */
  private async corruptInstance(json: string): Promise<VfleetError> {
    const all = await this.redis.hgetall(this.keys.instances).catch(() => ({}));
    const field = Object.entries(all).find(([, value]) => value === json)?.[0] ?? '?';
    try {
      parseJson(json, `${this.keys.instances} field ${field}`);
    } catch (e) {
      if (e instanceof VfleetError) return e;
    }
    return new VfleetError('state-corrupt', `${this.keys.instances} field ${field} is not valid`);
  }

  /** Where the state records the named instances, and at which generation (absent: no record). */
  async placements(
    names: readonly string[],
  ): Promise<Map<string, { readonly host: string; readonly generation: number }>> {
    const found = new Map<string, { host: string; generation: number }>();
    if (names.length === 0) return found;
    const raws = await this.redis.hmget(this.keys.instances, ...names);
    raws.forEach((raw, i) => {
      const placed = raw === null ? undefined : recordPlacement(raw);
      if (placed) found.set(names[i] as string, placed);
    });
    return found;
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(this.keys.version)) ?? 0);
  }

  /**
   * Creates or replaces an instance's record, with the package list and profile it names
   * (instance-records.ts). Returns the new state version. (Lists and profiles no record names any
   * more stay: a few kilobytes per image, resources and patch level.)
   */
  async putInstance(record: ObservedInstanceRecord): Promise<number> {
    const { json, entries } = storedInstanceRecord(record);
    return this.mutate(
      ...entries.map(
        ([hash, id, text]) =>
          (m: ChainableCommander) =>
            m.hset(this.keys[hash], id, text),
      ),
      (m) => m.hset(this.keys.instances, record.instance, json),
    );
  }

  /**
   * `putInstance` for a job of plan `planId`: written, in one script, only while that plan is the
   * one being applied. A job's worker that was cut off (or stopped) past its lock and comes back
   * after a newer plan took over would otherwise write its instance back into the state — one
   * the newer plan destroyed, say. False when refused.
   */
  async putInstanceOfPlan(record: ObservedInstanceRecord, planId: string): Promise<boolean> {
    const { json, entries } = storedInstanceRecord(record);
    const keys = [
      this.keys.currentPlan,
      this.keys.instances,
      this.keys.version,
      ...entries.map(([hash]) => this.keys[hash]),
    ];
    const args = [planId, record.instance, json, ...entries.flatMap(([, id, text]) => [id, text])];
    const written = await runScript(this.redis, 'put-instance-of-plan', PUT_OF_PLAN, keys, args);
    return written === 1;
  }

  /** Returns the new state version (bumped even when there was nothing to delete). */
  async deleteInstance(name: string): Promise<number> {
    return this.mutate(
      (m) => m.hdel(this.keys.instances, name),
      (m) => m.hdel(this.keys.patches, name),
    );
  }

  /**
   * Records an instance's last patch as its host reported it (null: forgets it, the instance
   * being a new one). Not a mutation a plan is made against: the version does not move.
   */
  async putPatchStatus(name: string, status: PatchStatus | null): Promise<void> {
    if (status === null) await this.redis.hdel(this.keys.patches, name);
    else await this.redis.hset(this.keys.patches, name, JSON.stringify(status));
  }

  /** Every instance's last patch, by name (the patch audit's pending-reboot and failed). */
  async patchStatuses(): Promise<Map<string, PatchStatus>> {
    const all = await this.redis.hgetall(this.keys.patches);
    return new Map(
      Object.entries(all).map(([name, json]) => [name, JSON.parse(json) as PatchStatus]),
    );
  }

  /** Creates or replaces a host's facts. Returns the new state version. */
  async putHost(name: string, facts: object): Promise<number> {
    return this.mutate((m) => m.hset(this.keys.hosts, name, JSON.stringify(facts)));
  }

  /** Records that `host` was alive at `nowMs`. Not a mutation: the version does not move. */
  async heartbeat(host: string, nowMs: number): Promise<void> {
    await this.redis.hset(this.keys.heartbeats, host, String(nowMs));
  }

  /** The writes and the version's INCR in one MULTI; the new version. */
  private async mutate(...writes: Array<(m: ChainableCommander) => unknown>): Promise<number> {
    const multi = this.redis.multi();
    for (const write of writes) write(multi);
    multi.incr(this.keys.version);
    return Number(replies(await multi.exec(), writes.length + 1)[writes.length]);
  }

  /** Marks `id` as the plan being applied; jobs left over from an earlier apply stop acting. */
  async setCurrentPlan(id: string): Promise<void> {
    await this.redis.set(this.keys.currentPlan, id);
  }

  /**
   * Writes the current plan's id again, where it is still the current one (`XX`, the same
   * value): a harmless write that fails as every write would when Redis refuses them.
   */
  async markCurrentPlan(id: string): Promise<void> {
    await this.redis.set(this.keys.currentPlan, id, 'XX');
  }

  async isCurrentPlan(id: string): Promise<boolean> {
    return (await this.redis.get(this.keys.currentPlan)) === id;
  }

  /** Whether `token` is the leader controller's fencing token now (control-state.ts). */
  async isLeaderToken(token: number): Promise<boolean> {
    const value = await this.redis.get(this.keys.leader);
    if (value === null) return false;
    try {
      return (JSON.parse(value) as { token?: unknown }).token === token;
    } catch {
      return false;
    }
  }

  // --- the fleet lock: one apply at a time -------------------------------------------------

  /** Takes the lock for `ttlMs` unless someone holds it; then says who. */
  async acquireLock(holder: LockHolder, ttlMs: number): Promise<LockResult> {
    const current = (await runScript(
      this.redis,
      'lock_acquire',
      ACQUIRE,
      [this.keys.lock],
      [JSON.stringify(holder), String(Math.max(1, Math.round(ttlMs)))],
    )) as string | null;
    return current === null ? { ok: true } : { ok: false, holder: this.parseHolder(current) };
  }

  /** Extends our lock to `ttlMs` from now; false when it is no longer ours (expired, taken). */
  async renewLock(id: string, ttlMs: number): Promise<boolean> {
    const [acted] = await this.ifHolder(id, 'renew', Math.max(1, Math.round(ttlMs)));
    return acted;
  }

  /** Releases our lock; does nothing (false) when it is not ours. */
  async releaseLock(id: string): Promise<boolean> {
    const [acted] = await this.ifHolder(id, 'release', 0);
    return acted;
  }

  /**
   * `vfleet force-unlock <id>`: removes the lock a crashed apply left, named by the id its
   * message showed — so an unlock meant for one holder cannot remove a newer holder's lock.
   */
  async forceUnlock(id: string): Promise<ForceUnlockResult> {
    const [acted, value] = await this.ifHolder(id, 'release', 0);
    const holder = value === null ? null : this.parseHolder(value);
    return acted && holder ? { ok: true, holder } : { ok: false, holder };
  }

  async lockHolder(): Promise<LockHolder | null> {
    const value = await this.redis.get(this.keys.lock);
    return value === null ? null : this.parseHolder(value);
  }

  private async ifHolder(
    id: string,
    op: 'renew' | 'release',
    ttlMs: number,
  ): Promise<[boolean, string | null]> {
    const [acted, value] = (await runScript(
      this.redis,
      'lock_if_holder',
      IF_HOLDER,
      [this.keys.lock],
      [id, op, String(ttlMs)],
    )) as [number, string | null];
    return [acted === 1, value ?? null];
  }

  private parseHolder(value: string): LockHolder {
    return parseJson(value, this.keys.lock) as LockHolder;
  }

  /** Every fleet lock held on this server, with its fleet: what `vfleet down` must not pull from under. */
  static async heldLocks(
    redis: RedisClient,
  ): Promise<Array<{ readonly fleet: string; readonly holder: LockHolder }>> {
    const held: Array<{ fleet: string; holder: LockHolder }> = [];
    // Every master of a Cluster: each fleet's keys are on the one holding its slot.
    for (const key of await scanKeys(redis, ALL_FLEET_LOCKS)) {
      const value = await redis.get(key);
      if (value !== null)
        held.push({ fleet: fleetOfLockKey(key), holder: parseJson(value, key) as LockHolder });
    }
    return held.sort((a, b) => (a.fleet < b.fleet ? -1 : 1));
  }

  // --- the event history ---------------------------------------------------------------------

  /** Appends an event (an action, its outcome…); the stream keeps about the last 10,000. */
  async appendEvent(event: object): Promise<string> {
    const id = await this.redis.xadd(
      this.keys.events,
      'MAXLEN',
      '~',
      String(EVENTS_MAXLEN),
      '*',
      'event',
      JSON.stringify(event),
    );
    return String(id);
  }

  /** The last `count` events, oldest first. */
  async readEvents(count: number): Promise<FleetEvent[]> {
    const entries = (await this.redis.xrevrange(
      this.keys.events,
      '+',
      '-',
      'COUNT',
      Math.max(1, Math.floor(count)),
    )) as [string, string[]][];
    return entries.reverse().map(([id, fields]) => {
      const json = fields[fields.indexOf('event') + 1] ?? '{}';
      return {
        id,
        event: parseJson(json, `${this.keys.events} entry ${id}`) as FleetEvent['event'],
      };
    });
  }
}
