// What the controller keeps in Redis beside the fleet's state (keys.ts): the leader lease and its
// fencing token, the hosts' leases, the hosts an operator fenced, and the health the leader
// judged. None of it bumps the state version: liveness is not a change a plan was made against.
//
// The leader lease is Redis's SET PX with the holder's id, taken in a Lua script that also
// INCRs the fleet's leader token when the lease changes hands: every job a leader enqueues
// carries its token, and a worker refuses a job whose token is not the current leader's — a
// leader that was paused past its lease (SIGSTOP, a long GC, a partition) and comes back cannot
// act, because by then another holds a newer token (Kleppmann's fencing token; Proxmox's
// manager lock).

import type { HostHealth, LivenessPolicy } from '../model/host-health.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import { type FleetKeys, fleetKeys } from './keys.js';
import { runScript } from './lua-script.js';
import type { RedisClient } from './redis-client.js';

export interface LeaderHolder {
  readonly id: string;
  /** The fencing token: grows with every new leader of the fleet. */
  readonly token: number;
  readonly pid: number;
  /** The machine it runs on. */
  readonly host: string;
  /** Epoch ms when it became leader. */
  readonly since: number;
  /** The lease ttl and grace it judges hosts by: status and plan read health with them. */
  readonly policy: LivenessPolicy;
}

/** A host's lease as the state has it: `seq` grows with every renewal. */
export interface HostLease {
  readonly seq: number;
  /** Epoch ms of the renewal, on the renewer's clock (display only: ages are measured by seeing `seq` change). */
  readonly at: number;
  /** Who renewed it: `emulated-agent`, `agent`, … */
  readonly by: string;
}

/** The leader's judgement of one host, published for status and plan. */
/** The leader controller's judgement of the fleet against its source (Argo CD's sync × health). */
export interface PublishedSync {
  readonly status: SyncStatus;
  readonly health: SyncHealth;
  /** What the controller follows (a file, or URL@ref:path). */
  readonly source: string;
  /** The source's newest revision, the one the controller reconciles to. */
  readonly target?: SourceRevision;
  /** The revision the fleet was last brought to cleanly. */
  readonly synced?: SourceRevision;
  /** Why (the first diagnostic of a spec that does not validate, a failure, the drift). */
  readonly message: string;
  readonly suspended?: boolean;
  readonly at: number;
}

export interface PublishedHealth {
  readonly health: HostHealth;
  /** ms since the leader saw the host's lease change (null: never seen). */
  readonly leaseAgeMs: number | null;
  /** Epoch ms since when the host has been in this health (the leader's clock). */
  readonly since: number;
  /** Whether the host's instances may now run elsewhere (model/host-health.ts). */
  readonly restartable: boolean;
  /** Epoch ms of the judgement. */
  readonly at: number;
}

export interface FencedHost {
  readonly at: number;
  readonly by: string;
}

// KEYS: leader, leader-token. ARGV: id, ttl ms, holder JSON without token, and — only with a
// clock of the caller's (the simulation's virtual one) — now: then the lease's expiry is kept in
// the value (`expiresAt`) instead of Redis's PX.
// Returns {1, holder} when ARGV[1] holds the lease now (taken, or already ours and extended),
// {0, holder} when another does.
const TAKE = `
local virtual = ARGV[4] ~= nil and ARGV[4] ~= ''
local now = tonumber(ARGV[4] or '0')
local value = redis.call('GET', KEYS[1])
if value then
  local ok, holder = pcall(cjson.decode, value)
  if ok and type(holder) == 'table' and virtual and tonumber(holder.expiresAt or 0) <= now then
    value = nil
  elseif ok and type(holder) == 'table' and holder.id == ARGV[1] then
    if virtual then
      holder.expiresAt = now + tonumber(ARGV[2])
      value = cjson.encode(holder)
      redis.call('SET', KEYS[1], value)
    else
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    return {1, value}
  else
    return {0, value}
  end
end
local holder = cjson.decode(ARGV[3])
holder.token = redis.call('INCR', KEYS[2])
if virtual then
  holder.expiresAt = now + tonumber(ARGV[2])
  value = cjson.encode(holder)
  redis.call('SET', KEYS[1], value)
else
  value = cjson.encode(holder)
  redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
end
return {1, value}
`;

// KEYS: leader. ARGV: id, token, 'renew' | 'release', ttl ms, now (virtual clock only). Acts
// only while the lease is ARGV[1]'s at that token (and, virtual, not expired). Returns 1 when it
// acted.
const IF_LEADER = `
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ok, holder = pcall(cjson.decode, value)
if not ok or type(holder) ~= 'table' or holder.id ~= ARGV[1] or tostring(holder.token) ~= ARGV[2] then return 0 end
local virtual = ARGV[5] ~= nil and ARGV[5] ~= ''
if virtual and tonumber(holder.expiresAt or 0) <= tonumber(ARGV[5]) then return 0 end
if ARGV[3] == 'renew' then
  if virtual then
    holder.expiresAt = tonumber(ARGV[5]) + tonumber(ARGV[4])
    redis.call('SET', KEYS[1], cjson.encode(holder))
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
else
  redis.call('DEL', KEYS[1])
end
return 1
`;

// KEYS: leases. ARGV: host, at, by.
const RENEW_LEASE = `
local seq = 1
local lease = redis.call('HGET', KEYS[1], ARGV[1])
if lease then
  local ok, l = pcall(cjson.decode, lease)
  if ok and type(l) == 'table' then seq = (tonumber(l.seq) or 0) + 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({seq = seq, at = tonumber(ARGV[2]), by = ARGV[3]}))
return seq
`;

function parse<T>(value: string | null | undefined): T | null {
  if (value === null || value === undefined) return null;
  try {
    return JSON.parse(value) as T;
  } catch {
    return null;
  }
}

export class ControlState {
  private readonly keys: FleetKeys;

  /**
   * `serverClock`: only for the simulation, whose time is virtual — the leader lease then expires
   * by that clock (kept in the value) instead of by Redis's own (PX), which is what every real
   * deployment uses: one clock, the server's, for every controller.
   */
  constructor(
    private readonly redis: RedisClient,
    fleet: string,
    private readonly serverClock?: () => number,
  ) {
    this.keys = fleetKeys(fleet);
  }

  private nowArg(): string[] {
    return this.serverClock ? [String(Math.round(this.serverClock()))] : [];
  }

  // --- the leader lease --------------------------------------------------------------------

  /**
   * Takes the leader lease for `ttlMs` if nobody holds it (a new token), or extends it if
   * `holder.id` does; the holder either way.
   */
  async takeLeadership(
    holder: Omit<LeaderHolder, 'token'>,
    ttlMs: number,
  ): Promise<{ readonly leader: boolean; readonly holder: LeaderHolder | null }> {
    const [ours, value] = (await runScript(
      this.redis,
      'take_leadership',
      TAKE,
      [this.keys.leader, this.keys.leaderToken],
      [holder.id, String(Math.max(1, Math.round(ttlMs))), JSON.stringify(holder), ...this.nowArg()],
    )) as [number, string];
    return { leader: ours === 1, holder: parse<LeaderHolder>(value) };
  }

  /** Extends our lease; false when it is no longer ours at this token (expired, taken). */
  async renewLeadership(id: string, token: number, ttlMs: number): Promise<boolean> {
    return (await this.ifLeader(id, token, 'renew', ttlMs)) === 1;
  }

  /** Gives the lease up (a controller stopping cleanly: a standby need not wait for the ttl). */
  async releaseLeadership(id: string, token: number): Promise<boolean> {
    return (await this.ifLeader(id, token, 'release', 0)) === 1;
  }

  private async ifLeader(id: string, token: number, op: string, ttlMs: number): Promise<number> {
    return (await runScript(
      this.redis,
      'if_leader',
      IF_LEADER,
      [this.keys.leader],
      [id, String(token), op, String(Math.max(1, Math.round(ttlMs))), ...this.nowArg()],
    )) as number;
  }

  async leader(): Promise<LeaderHolder | null> {
    const holder = parse<LeaderHolder & { expiresAt?: number }>(
      await this.redis.get(this.keys.leader),
    );
    if (holder && this.serverClock && (holder.expiresAt ?? 0) <= this.serverClock()) return null;
    return holder;
  }

  /** Whether `token` is the current leader's: what a worker asks before a controller's job acts. */
  async isLeaderToken(token: number): Promise<boolean> {
    return (await this.leader())?.token === token;
  }

  // --- host leases, fenced hosts, published health -------------------------------------------

  /**
   * Renews a host's lease for what speaks for it from here (a real host that answered the
   * controller's probe); the emulated agents renew theirs in their own script.
   */
  async renewLease(host: string, atMs: number, by: string): Promise<void> {
    await runScript(
      this.redis,
      'renew_lease',
      RENEW_LEASE,
      [this.keys.leases],
      [host, String(Math.round(atMs)), by],
    );
  }

  async leases(): Promise<Map<string, HostLease>> {
    const all = await this.redis.hgetall(this.keys.leases);
    const leases = new Map<string, HostLease>();
    for (const [host, value] of Object.entries(all)) {
      const lease = parse<HostLease>(value);
      if (lease && typeof lease.seq === 'number') leases.set(host, lease);
    }
    return leases;
  }

  async fenced(): Promise<Map<string, FencedHost>> {
    const all = await this.redis.hgetall(this.keys.fenced);
    const fenced = new Map<string, FencedHost>();
    for (const [host, value] of Object.entries(all)) {
      fenced.set(host, parse<FencedHost>(value) ?? { at: 0, by: '?' });
    }
    return fenced;
  }

  /** The hosts an operator drains (`vfleet host drain`). */
  async drained(): Promise<Set<string>> {
    return new Set(await this.redis.smembers(this.keys.drained));
  }

  /**
   * `vfleet host drain|undrain NAME`. The state's version moves with it: a plan saved before
   * places instances on a host that is now draining (or not), so it is stale.
   */
  async setDrained(host: string, drained: boolean): Promise<void> {
    const m = this.redis.multi();
    if (drained) m.sadd(this.keys.drained, host);
    else m.srem(this.keys.drained, host);
    await m.incr(this.keys.version).exec();
  }

  /** `vfleet host fenced NAME`: an operator asserts the host is off. */
  async setFenced(host: string, fenced: FencedHost): Promise<void> {
    await this.redis.hset(this.keys.fenced, host, JSON.stringify(fenced));
  }

  /** `vfleet host recover NAME`: the assertion no longer holds. True if there was one. */
  async clearFenced(host: string): Promise<boolean> {
    return (await this.redis.hdel(this.keys.fenced, host)) === 1;
  }

  async publishHealth(health: ReadonlyMap<string, PublishedHealth>): Promise<void> {
    if (health.size === 0) return;
    const multi = this.redis.multi();
    multi.del(this.keys.health);
    multi.hset(
      this.keys.health,
      Object.fromEntries([...health].map(([host, h]) => [host, JSON.stringify(h)])),
    );
    await multi.exec();
  }

  /** The leader's sync status and health (docs/reconcile.md), replaced whole. */
  async publishSync(sync: PublishedSync): Promise<void> {
    await this.redis.set(this.keys.sync, JSON.stringify(sync));
  }

  async publishedSync(): Promise<PublishedSync | undefined> {
    return parse<PublishedSync>(await this.redis.get(this.keys.sync)) ?? undefined;
  }

  /** The revision the fleet was last brought to cleanly (an apply, a reconcile). */
  async recordRevision(revision: SourceRevision & { readonly appliedAt: number }): Promise<void> {
    await this.redis.set(this.keys.revision, JSON.stringify(revision));
  }

  async recordedRevision(): Promise<(SourceRevision & { readonly appliedAt: number }) | undefined> {
    return (
      parse<SourceRevision & { readonly appliedAt: number }>(
        await this.redis.get(this.keys.revision),
      ) ?? undefined
    );
  }

  /** `vfleet suspend`: the controller stops applying (restarts of lost hosts go on). */
  async suspend(by: string, reason: string, at: number): Promise<void> {
    await this.redis.set(this.keys.suspended, JSON.stringify({ by, reason, at }));
  }

  async resume(): Promise<boolean> {
    return (await this.redis.del(this.keys.suspended)) > 0;
  }

  async suspended(): Promise<{ by: string; reason: string; at: number } | undefined> {
    return (
      parse<{ by: string; reason: string; at: number }>(
        await this.redis.get(this.keys.suspended),
      ) ?? undefined
    );
  }

  /** `vfleet reconcile --now`: every controller sees the number change and reconciles. */
  async requestReconcile(): Promise<number> {
    return this.redis.incr(this.keys.reconcileRequest);
  }

  async reconcileRequests(): Promise<number> {
    return Number((await this.redis.get(this.keys.reconcileRequest)) ?? 0);
  }

  async publishedHealth(): Promise<Map<string, PublishedHealth>> {
    const all = await this.redis.hgetall(this.keys.health);
    const health = new Map<string, PublishedHealth>();
    for (const [host, value] of Object.entries(all)) {
      const h = parse<PublishedHealth>(value);
      if (h) health.set(host, h);
    }
    return health;
  }
}
