// The emulated agent of the embedded hosts: what a vfleet agent is on a real host (docs/controller.md),
// for hosts that live in Redis. While its host is healthy it renews the host's lease
// (`vfleet:{F}:leases`); while the host is partitioned it cannot, and once its last renewal is a
// lease ttl old (on its own clock) its watchdog stops every instance (Proxmox's watchdog); a
// failed host's instances died with it (embedded-engine.ts, INJECT). When the host answers again,
// before its first renewal it destroys the copies the control plane has since placed elsewhere
// (the fleet's record names another host, or a newer generation), so a returning host never
// resumes a stale copy. Every controller process runs it each tick for all embedded hosts, in one
// script; each tick is idempotent, so any number may.

import { engineHostKeys, fleetKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import type { RedisClient } from '../../state/redis-client.js';

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
          -- The fleet's record (state/instance-records.ts): a compact array
          -- [instance, host, generation, …], or an object with host and generation.
          local rec = cjson.decode(recorded)
          local recHost, recGeneration = rec.host, rec.generation
          if recHost == nil then recHost, recGeneration = rec[2], rec[3] end
          if recHost ~= host or (tonumber(recGeneration) or 0) > (tonumber(mine.generation) or 0) then
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
  /** `ok` (renewed), `partitioned`, `self-fenced`, `failed`. */
  readonly state: 'ok' | 'partitioned' | 'self-fenced' | 'failed';
  /** ok: stale copies destroyed on rejoining; self-fenced: the instances its watchdog stopped. */
  readonly instances: readonly string[];
}

/**
 * One tick of the named emulated hosts' agents, in one script (a thousand hosts in one round
 * trip). Idempotent: any number of processes may tick the same hosts. `nowMs`: one clock for
 * all, or each host's own (the simulation skews them).
 */
export async function embeddedAgentTick(
  redis: RedisClient,
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
