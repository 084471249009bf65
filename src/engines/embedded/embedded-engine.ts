// The embedded emulator engine: hosts whose whole state lives in Redis, so any worker process
// sees the same hosts and the pipeline runs with nothing installed but Redis. Each instance goes
// created → running ⇄ stopped → destroyed, after a configurable boot latency, and reports its
// image's package inventory; `patch` raises versions. Faults are injected on purpose
// (`vfleet host fail|partition|recover`): a failed or partitioned host stops answering.
// Transitions run as one Lua script each, so fencing (refuse an older generation) and the state
// change are atomic: two workers racing on one job cannot both act.
//
// Keys (state/keys.ts, engineHostKeys: under the fleet's hash tag):
//   vfleet:{<fleet>}:engine:<host>:instances  hash  instance → JSON record (ReportedInstance; an
//                                             older vfleet's records say `name` for `instance`)
//   vfleet:{<fleet>}:engine:<host>:fence      hash  instance → newest generation seen (kept after destroy)
//   vfleet:{<fleet>}:engine:<host>:disks      hash  instance → JSON {from, generation, packages} (copied disks)
//   vfleet:{<fleet>}:engine:<host>:down       string, present while the host is under a fault:
//                                             `failed` or `partitioned` (`1`, from an older vfleet: failed)
//   vfleet:{<fleet>}:engine:<host>:agent      hash  the emulated agent's memory: lastOk (its last
//                                             renewal, its own clock), fencedAt, rejoin
//   vfleet:{<fleet>}:engine:<host>:stopped    set   the instances that are stopped (kept by every
//                                             script that changes a status), listed with the names
//
// The emulated agent (embeddedAgentTick, run by every controller and worker process, any number
// of times: each tick is idempotent) is what a vfleet agent is on a real host: while the host is
// healthy it renews the host's lease (`vfleet:{F}:leases`); while it is partitioned it cannot,
// and once its last renewal is a lease ttl old its watchdog stops every instance (Proxmox's
// watchdog); a failed host's instances die with it. When the host answers again, before its first
// renewal it destroys the copies the control plane has since placed elsewhere (the fleet's record
// names another host, or a newer generation), so a returning host never resumes a stale copy.
import type { Redis } from 'ioredis';
import { ENGINE_CAPABILITIES } from '../../model/engine-capabilities.js';
import { VfleetError } from '../../model/errors.js';
import type { Host, PackageVersions } from '../../model/fleet.js';
import { type EngineHostKeys, engineHostKeys, fleetKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import {
  checkCopyTarget,
  type DiskTransfer,
  type EngineInstance,
  type HostEngine,
  type HostFacts,
  type HostFault,
  type InjectedFault,
  type InstanceRequest,
} from '../host-engine.js';

// KEYS: instances, fence, down, disks, the fleet's current-plan key (or any key, unused, when no
// plan is checked), stopped. ARGV: name, generation, op, payload (JSON), plan id ('' for no check).
// Returns {status, value}: ok | stale (value: the fence) | missing | down | superseded (value:
// the current plan).
// A create onto a disk copied here (a move) keeps the packages the disk had, as a real disk does.
// A disk received (`receive-disk`, payload: the disk) is fenced like any change, and never lands
// on an instance this host has.
const TRANSITION = `
if redis.call('EXISTS', KEYS[3]) == 1 then return {'down', ''} end
if ARGV[5] ~= '' then
  local current = redis.call('GET', KEYS[5]) or ''
  if current ~= ARGV[5] then return {'superseded', current} end
end
local name = ARGV[1]
local gen = tonumber(ARGV[2])
local fence = tonumber(redis.call('HGET', KEYS[2], name) or '0')
if gen < fence then return {'stale', tostring(fence)} end
redis.call('HSET', KEYS[2], name, gen)
local op = ARGV[3]
local current = redis.call('HGET', KEYS[1], name)
if op == 'receive-disk' then
  if not current then redis.call('HSET', KEYS[4], name, ARGV[4]) end
  return {'ok', ''}
end
if op == 'create' then
  if current then
    local rec = cjson.decode(current)
    rec.generation = gen
    current = cjson.encode(rec)
    redis.call('HSET', KEYS[1], name, current)
    return {'ok', current}
  end
  local created = ARGV[4]
  local disk = redis.call('HGET', KEYS[4], name)
  if disk then
    local copied = cjson.decode(disk)
    if type(copied.packages) == 'table' then
      local rec = cjson.decode(created)
      rec.packages = copied.packages
      created = cjson.encode(rec)
    end
  end
  redis.call('HSET', KEYS[1], name, created)
  redis.call('SREM', KEYS[6], name)
  return {'ok', created}
end
if op == 'destroy' then
  redis.call('HDEL', KEYS[1], name)
  redis.call('SREM', KEYS[6], name)
  return {'ok', ''}
end
if not current then return {'missing', ''} end
local rec = cjson.decode(current)
rec.generation = gen
if op == 'start' then rec.status = 'running' redis.call('SREM', KEYS[6], name)
elseif op == 'stop' then rec.status = 'stopped' redis.call('SADD', KEYS[6], name)
elseif op == 'patch' then
  local wanted = cjson.decode(ARGV[4])
  for package, version in pairs(wanted) do rec.packages[package] = version end
end
current = cjson.encode(rec)
redis.call('HSET', KEYS[1], name, current)
return {'ok', current}
`;

// KEYS: down, instances, agent, stopped. ARGV: fail | partition | recover. A failed host crashes: every
// instance it runs stops with it (a returning host does not resume them by itself). A partition
// leaves them running: the agent's watchdog stops them a ttl after its last renewal.
const INJECT = `
if ARGV[1] == 'recover' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[3], 'rejoin', '1')
if ARGV[1] == 'partition' then redis.call('SET', KEYS[1], 'partitioned') return 1 end
redis.call('SET', KEYS[1], 'failed')
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local rec = cjson.decode(all[i + 1])
  if rec.status ~= 'stopped' then
    rec.status = 'stopped'
    redis.call('HSET', KEYS[2], all[i], cjson.encode(rec))
  end
  redis.call('SADD', KEYS[4], all[i])
end
return 1
`;

// The emulated agents' tick. KEYS: the fleet's leases, the fleet's instances, then per host its
// down, instances, agent and stopped keys. ARGV: ttl ms, who renews, then per host its name and
// its now (ms: the ticking process's clock, or in the simulation the host's own). Per host one reply: {state, names…}: `ok` (lease renewed; names:
// stale copies destroyed on rejoining), `partitioned`, `self-fenced` (names: the instances its
// watchdog stopped just now), `failed`.
const AGENT_TICK = `
local ttl = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV, 2 do
  local host = ARGV[i]
  local now = tonumber(ARGV[i + 1])
  local k = 3 + (i - 3) * 2
  local down, instances, agent, stopped = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local fault = redis.call('GET', down)
  local reply = {}
  if fault == 'partitioned' then
    local lastOk = tonumber(redis.call('HGET', agent, 'lastOk') or '')
    if not lastOk then
      -- never renewed: the agent's watchdog counts from now, as an agent that just started does
      redis.call('HSET', agent, 'lastOk', tostring(now))
      lastOk = now
    end
    if lastOk and now - lastOk >= ttl and not redis.call('HGET', agent, 'fencedAt') then
      reply = {'self-fenced'}
      local all = redis.call('HGETALL', instances)
      for j = 1, #all, 2 do
        local rec = cjson.decode(all[j + 1])
        if rec.status ~= 'stopped' then
          rec.status = 'stopped'
          redis.call('HSET', instances, all[j], cjson.encode(rec))
          redis.call('SADD', stopped, all[j])
          reply[#reply + 1] = all[j]
        end
      end
      redis.call('HSET', agent, 'fencedAt', tostring(now))
    else
      reply = {'partitioned'}
    end
  elseif fault then
    reply = {'failed'}
  else
    reply = {'ok'}
    if redis.call('HGET', agent, 'rejoin') then
      local all = redis.call('HGETALL', instances)
      for j = 1, #all, 2 do
        local mine = cjson.decode(all[j + 1])
        local recorded = redis.call('HGET', KEYS[2], all[j])
        if recorded then
          local rec = cjson.decode(recorded)
          if rec.host ~= host or (tonumber(rec.generation) or 0) > (tonumber(mine.generation) or 0) then
            redis.call('HDEL', instances, all[j])
            redis.call('SREM', stopped, all[j])
            reply[#reply + 1] = all[j]
          end
        end
      end
      redis.call('HDEL', agent, 'rejoin', 'fencedAt')
    end
    redis.call('HSET', agent, 'lastOk', tostring(now))
    local seq = 1
    local lease = redis.call('HGET', KEYS[1], host)
    if lease then seq = (tonumber(cjson.decode(lease).seq) or 0) + 1 end
    redis.call('HSET', KEYS[1], host, cjson.encode({seq = seq, at = now, by = ARGV[2]}))
  end
  out[#out + 1] = reply
end
return out
`;

/** What one emulated host's agent did in a tick. */
export interface AgentTickResult {
  /**
   * Emulated hosts: `ok` (renewed), `partitioned`, `self-fenced`, `failed`. Real hosts (no agent
   * yet): `probed` (it answered; the caller renews its lease) or `unanswered`.
   */
  readonly state: 'ok' | 'partitioned' | 'self-fenced' | 'failed' | 'probed' | 'unanswered';
  /** ok: stale copies destroyed on rejoining; self-fenced: the instances its watchdog stopped. */
  readonly instances: readonly string[];
}

/**
 * One tick of the named emulated hosts' agents, in one script (a thousand hosts in one round
 * trip). Idempotent: any number of processes may tick the same hosts. `nowMs`: one clock for
 * all, or each host's own (the simulation skews them).
 */
export async function embeddedAgentTick(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
  nowMs: number | ((host: string) => number),
  ttlMs: number,
  by = 'emulated-agent',
): Promise<Map<string, AgentTickResult>> {
  const results = new Map<string, AgentTickResult>();
  if (hosts.length === 0) return results;
  const fk = fleetKeys(fleet);
  const keys = [fk.leases, fk.instances];
  for (const host of hosts) {
    const k = engineHostKeys(fleet, host);
    keys.push(k.down, k.instances, k.agent, k.stopped);
  }
  const clockOf = typeof nowMs === 'number' ? () => nowMs : nowMs;
  const replies = (await runScript(redis, 'agent_tick', AGENT_TICK, keys, [
    String(Math.round(ttlMs)),
    by,
    ...hosts.flatMap((host) => [host, String(Math.round(clockOf(host)))]),
  ])) as string[][];
  hosts.forEach((host, i) => {
    const [state, ...instances] = replies[i] ?? ['failed'];
    results.set(host, { state: state as AgentTickResult['state'], instances });
  });
  return results;
}

export interface EmbeddedEngineOptions {
  /** How long an instance takes to boot, ms; small by default so CI stays fast. */
  readonly bootLatencyMs?: number;
  /** Injected so tests and benchmarks control time (habit 5, docs/architecture.md). */
  readonly sleep?: (ms: number) => Promise<void>;
  /**
   * The fleet's current-plan key (state/keys.ts): given, a create that names its plan is refused
   * in the same Lua step when that plan is no longer current.
   */
  readonly currentPlanKey?: string;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class EmbeddedEngine implements HostEngine {
  readonly host: string;
  readonly engine = 'embedded' as const;
  readonly capabilities = ENGINE_CAPABILITIES.embedded;
  private readonly keys: EngineHostKeys;
  private readonly bootLatencyMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly currentPlanKey: string | undefined;

  constructor(
    private readonly redis: Redis,
    fleet: string,
    private readonly spec: Host,
    options: EmbeddedEngineOptions = {},
  ) {
    this.host = spec.name;
    this.keys = engineHostKeys(fleet, spec.name);
    this.bootLatencyMs = options.bootLatencyMs ?? 10;
    this.sleep = options.sleep ?? defaultSleep;
    this.currentPlanKey = options.currentPlanKey;
  }

  async facts(): Promise<HostFacts> {
    await this.answering();
    return {
      name: this.spec.name,
      engine: 'embedded',
      cpu: this.spec.cpu,
      memoryMiB: this.spec.memoryMiB,
      diskGiB: this.spec.diskGiB,
      os: this.spec.os,
      runs: this.spec.runs,
    };
  }

  async list(): Promise<EngineInstance[]> {
    await this.answering();
    const all = await this.redis.hgetall(this.keys.instances);
    return Object.values(all)
      .map(reportedFrom)
      .sort((a, b) => (a.instance < b.instance ? -1 : 1));
  }

  async fences(): Promise<ReadonlyMap<string, number>> {
    await this.answering();
    const all = await this.redis.hgetall(this.keys.fence);
    return new Map(Object.entries(all).map(([name, generation]) => [name, Number(generation)]));
  }

  async describe(name: string): Promise<EngineInstance | undefined> {
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    return json ? reportedFrom(json) : undefined;
  }

  async inventory(name: string): Promise<PackageVersions> {
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    if (!json) throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    return reportedFrom(json).packages;
  }

  async create(request: InstanceRequest): Promise<EngineInstance> {
    const record: EngineInstance = {
      instance: request.name,
      group: request.group,
      generation: request.generation,
      // With no boot latency there is nothing to wait for: one transition, not two.
      status: this.bootLatencyMs > 0 ? 'created' : 'running',
      image: request.image.name,
      resources: request.resources,
      packages: { ...request.image.packages },
    };
    const created = await this.transition(
      request.name,
      request.generation,
      'create',
      record,
      request.plan,
    );
    if (created.status === 'running') return created;
    if (this.bootLatencyMs > 0) await this.sleep(this.bootLatencyMs);
    return this.transition(request.name, request.generation, 'start');
  }

  start(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'start');
  }

  stop(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'stop');
  }

  async destroy(name: string, generation: number): Promise<void> {
    await this.transition(name, generation, 'destroy');
    await this.redis.hdel(this.keys.disks, name);
  }

  patch(name: string, generation: number, packages: PackageVersions): Promise<EngineInstance> {
    return this.transition(name, generation, 'patch', packages);
  }

  async copyDisk(name: string, generation: number, to: HostEngine): Promise<void> {
    checkCopyTarget(this, name, to);
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    if (!json) throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    // The disk carries what is installed on it: the copy lands with the instance's packages.
    const { packages } = reportedFrom(json);
    await to.receiveDisk({ name, generation, from: this.host, packages });
  }

  async receiveDisk(transfer: DiskTransfer): Promise<void> {
    const { name, generation, from, packages } = transfer;
    await this.transition(name, generation, 'receive-disk', { from, generation, packages });
  }

  async inject(fault: HostFault): Promise<void> {
    const k = this.keys;
    await runScript(
      this.redis,
      'inject',
      INJECT,
      [k.down, k.instances, k.agent, k.stopped],
      [fault],
    );
  }

  async injectedFault(): Promise<InjectedFault | undefined> {
    return faultOf(await this.redis.get(this.keys.down));
  }

  private async answering(): Promise<void> {
    if ((await this.redis.exists(this.keys.down)) === 1) throw unreachable(this.host);
  }

  private async transition(
    name: string,
    generation: number,
    op: 'create' | 'start' | 'stop' | 'destroy' | 'patch' | 'receive-disk',
    payload: unknown = {},
    plan?: string,
  ): Promise<EngineInstance> {
    const checked = plan !== undefined && this.currentPlanKey !== undefined;
    const k = this.keys;
    const [status, value] = (await runScript(
      this.redis,
      'transition',
      TRANSITION,
      [
        k.instances,
        k.fence,
        k.down,
        k.disks,
        checked ? (this.currentPlanKey as string) : k.down,
        k.stopped,
      ],
      [name, String(generation), op, JSON.stringify(payload), checked ? plan : ''],
    )) as [string, string];
    switch (status) {
      case 'ok':
        return value ? reportedFrom(value) : ({ instance: name } as EngineInstance);
      case 'down':
        throw unreachable(this.host);
      case 'superseded':
        throw new VfleetError(
          'superseded',
          `${this.host} refuses ${op} of ${name} for plan ${plan}: plan ${value || 'none'} is the one being applied`,
        );
      case 'stale':
        throw new VfleetError(
          'stale-generation',
          `${this.host} refuses ${op} of ${name} at generation ${generation}: it has seen generation ${value}`,
        );
      default:
        throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    }
  }
}

/**
 * A stored record as the host reports it. Records written before vfleet said `instance`
 * everywhere name the instance `name`: read as `instance`.
 */
function reportedFrom(json: string): EngineInstance {
  const record = JSON.parse(json) as EngineInstance & { readonly name?: string };
  if (record.instance !== undefined) return record;
  const { name, ...rest } = record;
  return { ...rest, instance: name as string };
}

function unreachable(host: string): VfleetError {
  return new VfleetError('host-unreachable', `host ${host} does not answer`, { retryable: true });
}

/** The fault a `down` key's value says (absent: none). */
function faultOf(down: string | null | undefined): InjectedFault | undefined {
  if (down === null || down === undefined) return undefined;
  return down === 'partitioned' ? 'partitioned' : 'failed';
}

/** The faults the named emulated hosts are under, in one pipeline (hosts without one left out). */
export async function embeddedFaults(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
): Promise<Map<string, InjectedFault>> {
  const faults = new Map<string, InjectedFault>();
  if (hosts.length === 0) return faults;
  const downs = redis.pipeline();
  for (const host of hosts) downs.get(engineHostKeys(fleet, host).down);
  const replies = (await downs.exec()) ?? [];
  hosts.forEach((host, i) => {
    const fault = faultOf(replies[i]?.[1] as string | null | undefined);
    if (fault) faults.set(host, fault);
  });
  return faults;
}

// KEYS: pairs (down, hash) per host. Per host, 0 when it is down, else its hash's fields (LIST)
// or fields and values (ALL) joined by newlines (names are DNS labels, generations digits): one
// reply element per host instead of one per instance, which on 100,000 instances is most of
// what reading them costs the client.
const JOINED = `
local all = ARGV[1] == 'all'
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    out[#out + 1] = table.concat(redis.call(all and 'HGETALL' or 'HKEYS', KEYS[i + 1]), '\\n')
  end
end
return out
`;

async function joined(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
  hash: 'instances' | 'fence',
  what: 'list' | 'all',
): Promise<Array<string[] | null>> {
  const keys = hosts.flatMap((host) => {
    const k = engineHostKeys(fleet, host);
    return [k.down, k[hash]];
  });
  const replies = (await runScript(redis, 'joined', JOINED, keys, [what])) as Array<
    string | number
  >;
  return hosts.map((_, i) => {
    const reply = replies[i];
    return typeof reply === 'string' ? (reply === '' ? [] : reply.split('\n')) : null;
  });
}

// KEYS: pairs (down, instances) per host. Per host 0 when it is down, else the names of the
// instances it runs (status running), joined by newlines.
const RUNNING = `
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    local names = {}
    local all = redis.call('HGETALL', KEYS[i + 1])
    for j = 1, #all, 2 do
      if string.find(all[j + 1], '"status":"running"', 1, true) then names[#names + 1] = all[j] end
    end
    out[#out + 1] = table.concat(names, '\\n')
  end
end
return out
`;

/** The instances each emulated host runs right now (null: the host does not answer). */
export async function embeddedRunning(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
): Promise<Map<string, readonly string[] | null>> {
  const running = new Map<string, readonly string[] | null>();
  if (hosts.length === 0) return running;
  const keys = hosts.flatMap((host) => {
    const k = engineHostKeys(fleet, host);
    return [k.down, k.instances];
  });
  const replies = (await runScript(redis, 'running', RUNNING, keys, [])) as Array<string | number>;
  hosts.forEach((host, i) => {
    const reply = replies[i];
    running.set(host, typeof reply === 'string' ? (reply === '' ? [] : reply.split('\n')) : null);
  });
  return running;
}

// KEYS: triples (down, instances, stopped) per host. Per host 0 when it is down, else its
// instance names joined by newlines, a NUL, and the stopped ones joined by newlines.
const LISTING = `
local out = {}
for i = 1, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    out[#out + 1] = table.concat(redis.call('HKEYS', KEYS[i + 1]), '\\n') .. '\\0' ..
      table.concat(redis.call('SMEMBERS', KEYS[i + 2]), '\\n')
  end
end
return out
`;

/** What one emulated host holds: every instance's name, and which of them are stopped. */
export interface EmbeddedListing {
  readonly names: ReadonlySet<string>;
  readonly stopped: ReadonlySet<string>;
}

/** What each emulated host holds, by name, in one round trip: null for a host that does not answer. */
export async function embeddedListing(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
): Promise<Map<string, EmbeddedListing | null>> {
  const listing = new Map<string, EmbeddedListing | null>();
  if (hosts.length === 0) return listing;
  const keys = hosts.flatMap((host) => {
    const k = engineHostKeys(fleet, host);
    return [k.down, k.instances, k.stopped];
  });
  const replies = (await runScript(redis, 'listing', LISTING, keys, [])) as Array<string | number>;
  const split = (text: string) => (text === '' ? [] : text.split('\n'));
  hosts.forEach((host, i) => {
    const reply = replies[i];
    if (typeof reply !== 'string') {
      listing.set(host, null);
      return;
    }
    const cut = reply.indexOf('\0');
    const names = new Set(split(cut < 0 ? reply : reply.slice(0, cut)));
    const stopped = new Set(cut < 0 ? [] : split(reply.slice(cut + 1)).filter((n) => names.has(n)));
    listing.set(host, { names, stopped });
  });
  return listing;
}

/**
 * Every emulated host's fences (what HostEngine.fences says), in one round trip, as
 * [name, generation, name, generation, …]; null for a host that does not answer.
 */
export async function embeddedFences(
  redis: Redis,
  fleet: string,
  hosts: readonly string[],
): Promise<Map<string, readonly string[] | null>> {
  const fences = new Map<string, readonly string[] | null>();
  if (hosts.length === 0) return fences;
  const each = await joined(redis, fleet, hosts, 'fence', 'all');
  hosts.forEach((host, i) => {
    fences.set(host, each[i] ?? null);
  });
  return fences;
}

/** The records of the named instances on the named emulated hosts, in one pipeline. */
export async function instancesAt(
  redis: Redis,
  fleet: string,
  wanted: ReadonlyArray<{ readonly host: string; readonly name: string }>,
): Promise<Array<{ host: string; reported: EngineInstance }>> {
  if (wanted.length === 0) return [];
  const records = redis.pipeline();
  for (const w of wanted) records.hget(engineHostKeys(fleet, w.host).instances, w.name);
  const found = (await records.exec()) ?? [];
  return wanted.flatMap((w, i) => {
    const json = found[i]?.[1] as string | null | undefined;
    return json ? [{ host: w.host, reported: reportedFrom(json) }] : [];
  });
}
