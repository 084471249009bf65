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
import { createHash } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import type { RecordedInstance } from '../model/instances.js';
import {
  ALL_FLEET_LOCKS,
  EVENTS_MAXLEN,
  type FleetKeys,
  fleetKeys,
  fleetOfLockKey,
} from './keys.js';

/** An instance's record (model/instances.ts): the state's word for it. */
export type ObservedInstanceRecord = RecordedInstance;
export type InstanceRecordStatus = RecordedInstance['status'];

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

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new VfleetError(
      'state-corrupt',
      `${where} in Redis is not valid JSON; it was not written by this vfleet version`,
    );
  }
}

const PACKAGES_KEY = ',"packages":';

/**
 * The id a package list is stored under in `packages` (keys.ts): its JSON text's sha256, the
 * first 128 bits in hex. Content-addressed, so every record with the same list names the same
 * entry, and writing a list that is already there changes nothing.
 */
export function packageListId(listJson: string): string {
  return createHash('sha256').update(listJson).digest('hex').slice(0, 32);
}

/** An instance record as stored: its package list by id (older records hold the list itself). */
export interface StoredInstanceRecord {
  /** The record's JSON, its `packages` the list's id. */
  readonly json: string;
  /** The list it names, to be written beside it (absent: the record has no package list). */
  readonly list?: { readonly id: string; readonly json: string };
}

/**
 * An instance record as the state stores it. A fleet of 100,000 instances holds a few dozen
 * different package lists, and the list was most of each record's bytes (~450 of them): the
 * record names its list by id instead, and each list is stored once (keys.ts, `packages`), so
 * `readAll` moves, decodes and parses less than half the bytes. The key order is the record's
 * own (`packages` stays last).
 */
export function storedInstanceRecord(record: ObservedInstanceRecord): StoredInstanceRecord {
  if (record.packages === undefined) return { json: JSON.stringify(record) };
  const json = JSON.stringify(record.packages);
  const id = packageListId(json);
  return { json: JSON.stringify({ ...record, packages: id }), list: { id, json } };
}

const INSTANCE_FIRST = Buffer.from('{"instance":"');

/**
 * The raw records in the order of the instance names they begin with, and those names; undefined
 * when a record does not begin with its name (JSON.stringify writes `instance` first) or the
 * name holds an escape. Parsed in this order, the records lie in memory in the order every later
 * pass visits them (by name): on 100,000 records each pass over them takes about half the time
 * it takes over records parsed in the hash's order and then sorted. (The names are read as
 * latin1; the caller checks them against the parsed records, and sorts those when one differs.)
 */
function sortedByLeadingName(
  raws: readonly Buffer[],
): { readonly raws: Buffer[]; readonly names: string[] } | undefined {
  const keyed: Array<{ readonly name: string; readonly raw: Buffer }> = [];
  const start = INSTANCE_FIRST.length;
  for (const raw of raws) {
    if (raw.length <= start || raw.compare(INSTANCE_FIRST, 0, start, 0, start) !== 0)
      return undefined;
    const end = raw.indexOf(34 /* " */, start);
    if (end < 0) return undefined;
    const name = raw.toString('latin1', start, end);
    if (name.includes('\\')) return undefined;
    keyed.push({ name, raw });
  }
  keyed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { raws: keyed.map((k) => k.raw), names: keyed.map((k) => k.name) };
}

type ParsedRecord = Omit<ObservedInstanceRecord, 'packages'> & {
  packages?: ObservedInstanceRecord['packages'] | string;
};

/**
 * One instance record's JSON. A record written by this version names its package list by id
 * (resolved by the caller). Older records hold the list inline, written by JSON.stringify with
 * `packages` last; each inline list's text is parsed once and its object shared (frozen) by
 * every record that has it. Exact: the text after the last `,"packages":` up to the record's
 * closing brace is the value of the record's last key whenever it parses on its own as a JSON
 * object (a JSON value ends where its closing brace is, and the brace after it closes the
 * record); anything else (another writer, another key order) is parsed whole.
 */
function parseInstanceRecord(
  json: string,
  inline: Map<string, Readonly<Record<string, string>>>,
): ParsedRecord | undefined {
  try {
    const at = json.lastIndexOf(PACKAGES_KEY);
    if (
      at > 0 &&
      json.charCodeAt(at + PACKAGES_KEY.length) === 123 /* { */ &&
      json.charCodeAt(json.length - 1) === 125 /* } */
    ) {
      const text = json.slice(at + PACKAGES_KEY.length, -1);
      let packages = inline.get(text);
      if (packages === undefined) {
        try {
          const parsed: unknown = JSON.parse(text);
          if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
            packages = Object.freeze(parsed as Record<string, string>);
            inline.set(text, packages);
          }
        } catch {
          // not the record's last key: parsed whole below
        }
      }
      if (packages !== undefined) {
        const head = JSON.parse(`${json.slice(0, at)}}`) as ParsedRecord;
        head.packages = packages;
        return head;
      }
    }
    return JSON.parse(json) as ParsedRecord;
  } catch {
    return undefined;
  }
}

function byName<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

export class FleetState {
  readonly fleet: string;
  readonly keys: FleetKeys;
  private readonly redis: Redis;

  constructor(redis: Redis, fleet: string) {
    this.redis = redis;
    this.fleet = fleet;
    this.keys = fleetKeys(fleet);
  }

  /**
   * Everything `plan` and `status` need, in one round trip: one MULTI, so the version read is
   * the version of exactly these records and the package lists they name (a fleet of 100,000
   * instances is one HVALS reply).
   */
  async readAll(): Promise<FleetSnapshot> {
    // The instance records alone (HVALS: each names its instance), half the reply elements of
    // HGETALL: on 100,000 instances, decoding the reply is most of the read. As Buffers, which
    // live outside the JS heap while the reply arrives; each is made a string just to parse.
    const results = await this.redis
      .multi()
      .get(this.keys.version)
      .hgetall(this.keys.hosts)
      .hgetall(this.keys.heartbeats)
      .hvalsBuffer(this.keys.instances)
      .hgetall(this.keys.packages)
      .exec();
    const [version, hosts, heartbeats, instances, lists] = replies(results, 5) as [
      string | null,
      Record<string, string>,
      Record<string, string>,
      Buffer[],
      Record<string, string>,
    ];
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
    // Each list parsed once, shared (frozen) by the records that name it.
    const named = new Map<string, Readonly<Record<string, string>>>();
    const inline = new Map<string, Readonly<Record<string, string>>>();
    const instanceRecords: ObservedInstanceRecord[] = [];
    const ordered = sortedByLeadingName(instances);
    for (const raw of ordered?.raws ?? instances) {
      const json = raw.toString('utf8');
      const record = parseInstanceRecord(json, inline);
      if (record === undefined) throw await this.corruptInstance(json);
      const id = record.packages;
      if (typeof id === 'string') {
        let list = named.get(id);
        if (list === undefined) {
          const text = lists[id];
          if (text === undefined) {
            throw new VfleetError(
              'state-corrupt',
              `${this.keys.instances} field ${record.instance} names the package list ${id}, which ${this.keys.packages} does not hold`,
            );
          }
          list = Object.freeze(
            parseJson(text, `${this.keys.packages} field ${id}`) as Record<string, string>,
          );
          named.set(id, list);
        }
        record.packages = list;
      }
      instanceRecords.push(record as ObservedInstanceRecord);
    }
    const sorted =
      ordered !== undefined && instanceRecords.every((r, i) => r.instance === ordered.names[i]);
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
      const record = raw === null ? undefined : parseInstanceRecord(raw, new Map());
      const name = names[i] as string;
      if (record && typeof record.host === 'string')
        found.set(name, { host: record.host, generation: Number(record.generation) || 0 });
    });
    return found;
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(this.keys.version)) ?? 0);
  }

  /**
   * Creates or replaces an instance's record, with the package list it names. Returns the new
   * state version. (Lists no record names any more stay: a few kilobytes per patch level.)
   */
  async putInstance(record: ObservedInstanceRecord): Promise<number> {
    const { json, list } = storedInstanceRecord(record);
    const own = (m: ChainableCommander) => m.hset(this.keys.instances, record.instance, json);
    return list
      ? this.mutate((m) => m.hset(this.keys.packages, list.id, list.json), own)
      : this.mutate(own);
  }

  /** Returns the new state version (bumped even when there was nothing to delete). */
  async deleteInstance(name: string): Promise<number> {
    return this.mutate((m) => m.hdel(this.keys.instances, name));
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
    const current = (await this.redis.eval(
      ACQUIRE,
      1,
      this.keys.lock,
      JSON.stringify(holder),
      String(Math.max(1, Math.round(ttlMs))),
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
    const [acted, value] = (await this.redis.eval(
      IF_HOLDER,
      1,
      this.keys.lock,
      id,
      op,
      String(ttlMs),
    )) as [number, string | null];
    return [acted === 1, value ?? null];
  }

  private parseHolder(value: string): LockHolder {
    return parseJson(value, this.keys.lock) as LockHolder;
  }

  /** Every fleet lock held on this server, with its fleet: what `vfleet down` must not pull from under. */
  static async heldLocks(
    redis: Redis,
  ): Promise<Array<{ readonly fleet: string; readonly holder: LockHolder }>> {
    const held: Array<{ fleet: string; holder: LockHolder }> = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', ALL_FLEET_LOCKS, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const value = await redis.get(key);
        if (value !== null)
          held.push({ fleet: fleetOfLockKey(key), holder: parseJson(value, key) as LockHolder });
      }
    } while (cursor !== '0');
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

/** The replies of a MULTI, or its first error (ioredis reports errors per command). */
function replies(results: [Error | null, unknown][] | null, expected: number): unknown[] {
  if (results === null || results.length !== expected) {
    throw new VfleetError('redis-transaction', 'a Redis transaction was aborted', {
      retryable: true,
    });
  }
  const failed = results.find(([error]) => error !== null)?.[0];
  if (failed) {
    throw new VfleetError('redis-command', `Redis refused a state command: ${failed.message}`, {
      retryable: false,
    });
  }
  return results.map(([, value]) => value);
}
