// Running a Lua script on Redis by its SHA1 (EVALSHA), sending its text only when the server
// does not have it yet (NOSCRIPT, after a restart or SCRIPT FLUSH): ioredis's own
// `defineCommand`, which does exactly that, registered once per client. A script of a few
// kilobytes sent with every call was most of what a tick of the controller wrote to the socket.
//
// Every script of vfleet runs here, and touches only the keys it is given, all of one hash tag
// (one fleet's `{F}`): on a Redis Cluster a script runs on the node of its keys' slot, and keys
// of two slots fail with CROSSSLOT (docs/redis.md). That is checked before the script is sent,
// on any server, so that a script that would fail on a Cluster fails in every test.
import type { RedisClient } from './redis-client.js';

type ScriptRunner = (...args: Array<string | number>) => Promise<unknown>;

/** The hash tag Redis Cluster hashes `key` by: its first non-empty `{…}`, else the whole key. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return key;
}

/** Runs `lua` with `keys` and `args` (the number of keys is sent with them: any count works). */
export function runScript(
  redis: RedisClient,
  name: string,
  lua: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<unknown> {
  const first = keys[0];
  // A programming error, not a user's: a script without keys would run on any node of a
  // Cluster, one whose keys span two slots on none.
  if (first === undefined) throw new TypeError(`script ${name} is given no key`);
  const tag = hashTagOf(first);
  for (const key of keys) {
    if (hashTagOf(key) !== tag) {
      throw new TypeError(`script ${name} is given keys of two hash slots: ${first}, ${key}`);
    }
  }
  const command = `vfleet_${name}`;
  const client = redis as unknown as Record<string, ScriptRunner | undefined>;
  if (typeof client[command] !== 'function') redis.defineCommand(command, { lua });
  return (client[command] as ScriptRunner).call(redis, keys.length, ...keys, ...args);
}
