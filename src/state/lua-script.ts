// Running a Lua script on Redis by its SHA1 (EVALSHA), sending its text only when the server
// does not have it yet (NOSCRIPT, after a restart or SCRIPT FLUSH): ioredis's own
// `defineCommand`, which does exactly that, registered once per client. A script of a few
// kilobytes sent with every call was most of what a tick of the controller wrote to the socket.
import type { RedisClient } from './redis-client.js';

type ScriptRunner = (...args: Array<string | number>) => Promise<unknown>;

/** Runs `lua` with `keys` and `args` (the number of keys is sent with them: any count works). */
export function runScript(
  redis: RedisClient,
  name: string,
  lua: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<unknown> {
  const command = `vfleet_${name}`;
  const client = redis as unknown as Record<string, ScriptRunner | undefined>;
  if (typeof client[command] !== 'function') redis.defineCommand(command, { lua });
  return (client[command] as ScriptRunner).call(redis, keys.length, ...keys, ...args);
}
