// Reading many emulated hosts at once, for refresh, status and the fences a plan goes above: each
// in one round trip (a pipeline, or one script over every host's keys), one reply per host rather
// than one per instance — on 100,000 instances that is most of what reading them costs the client.
// A host under a fault does not answer (null), as HostEngine.list would throw.

import { engineHostKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import type { RedisClient } from '../../state/redis-client.js';
import type { EngineInstance, InjectedFault } from '../host-engine.js';
import { faultOf, reportedFrom } from './embedded-engine.js';

/** The faults the named emulated hosts are under, in one pipeline (hosts without one left out). */
export async function embeddedFaults(
  redis: RedisClient,
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

/** Per host, its hash joined by newlines as JOINED makes it; null for a host that is down. */
async function joined(
  redis: RedisClient,
  fleet: string,
  hosts: readonly string[],
  hash: 'instances' | 'fence',
  what: 'list' | 'all',
): Promise<Array<string | null>> {
  const keys = hosts.flatMap((host) => {
    const k = engineHostKeys(fleet, host);
    return [k.down, k[hash]];
  });
  const replies = (await runScript(redis, 'joined', JOINED, keys, [what])) as Array<
    string | number
  >;
  return hosts.map((_, i) => {
    const reply = replies[i];
    return typeof reply === 'string' ? reply : null;
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
  redis: RedisClient,
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

/** What one emulated host holds: every instance's name (each once), and which are stopped. */
export interface EmbeddedListing {
  readonly names: readonly string[];
  readonly stopped: ReadonlySet<string>;
}

/** What each emulated host holds, by name, in one round trip: null for a host that does not answer. */
export async function embeddedListing(
  redis: RedisClient,
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
    const names = split(cut < 0 ? reply : reply.slice(0, cut));
    // The stopped set's members the hash still has (a set of the names only when any are).
    const listed = cut < 0 || cut === reply.length - 1 ? undefined : split(reply.slice(cut + 1));
    const held = listed && new Set(names);
    const stopped = new Set(listed?.filter((n) => held?.has(n)));
    listing.set(host, { names, stopped });
  });
  return listing;
}

/**
 * Every emulated host's fences (what HostEngine.fences says), in one round trip, as the text
 * `name\ngeneration\nname\ngeneration…`; null for a host that does not answer. Kept whole until
 * visited (`visitFences`): split up front, the 200,000 strings of 100,000 fences all lived until
 * the last host was visited, and the garbage collector copied them.
 */
export async function embeddedFences(
  redis: RedisClient,
  fleet: string,
  hosts: readonly string[],
): Promise<Map<string, string | null>> {
  const fences = new Map<string, string | null>();
  if (hosts.length === 0) return fences;
  const each = await joined(redis, fleet, hosts, 'fence', 'all');
  hosts.forEach((host, i) => {
    fences.set(host, each[i] ?? null);
  });
  return fences;
}

/** Each name and generation of one host's fences as embeddedFences has them. */
export function visitFences(text: string, visit: (name: string, generation: number) => void): void {
  let at = 0;
  while (at < text.length) {
    const cut = text.indexOf('\n', at);
    if (cut < 0) return; // a name without its generation: not what JOINED makes
    const end = text.indexOf('\n', cut + 1);
    const stop = end < 0 ? text.length : end;
    visit(text.slice(at, cut), Number(text.slice(cut + 1, stop)));
    at = stop + 1;
  }
}

/** The records of the named instances on the named emulated hosts, in one pipeline. */
export async function instancesAt(
  redis: RedisClient,
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
