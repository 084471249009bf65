// Live migration on the embedded engine (docs/replication.md, "Live migration"): the running
// instance leaves its host and runs on the target in one Lua step over both hosts' keys (all
// under the fleet's hash tag, so one slot): it is never stopped and never runs on both. Fenced on
// both hosts like every change; refused while either host is down. The downtime it reports is
// the step's own time — what a guest would notice, emulated.

import { VfleetError } from '../../model/errors.js';
import type { EngineHostKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import type { RedisClient } from '../../state/redis-client.js';
import type { EngineInstance } from '../host-engine.js';

// KEYS: source instances, fence, down, stopped; target instances, fence, down, stopped.
// ARGV: name, generation. Returns {status, value}: ok (value: the record on the target) | down
// (value: which host) | stale (value: the fence) | missing | not-running | exists.
const MIGRATE = `
if redis.call('EXISTS', KEYS[3]) == 1 then return {'down', 'source'} end
if redis.call('EXISTS', KEYS[7]) == 1 then return {'down', 'target'} end
local name = ARGV[1]
local gen = tonumber(ARGV[2])
for _, fence in ipairs({KEYS[2], KEYS[6]}) do
  local seen = tonumber(redis.call('HGET', fence, name) or '0')
  if gen < seen then return {'stale', tostring(seen)} end
end
local current = redis.call('HGET', KEYS[1], name)
if not current then return {'missing', ''} end
if redis.call('HEXISTS', KEYS[5], name) == 1 then return {'exists', ''} end
local rec = cjson.decode(current)
if rec.status ~= 'running' then return {'not-running', rec.status} end
rec.generation = gen
local moved = cjson.encode(rec)
redis.call('HSET', KEYS[2], name, gen)
redis.call('HSET', KEYS[6], name, gen)
redis.call('HSET', KEYS[5], name, moved)
redis.call('SREM', KEYS[8], name)
redis.call('HDEL', KEYS[1], name)
redis.call('SREM', KEYS[4], name)
return {'ok', moved}
`;

export async function migrateEmbedded(
  redis: RedisClient,
  from: { readonly host: string; readonly keys: EngineHostKeys },
  to: { readonly host: string; readonly keys: EngineHostKeys },
  name: string,
  generation: number,
): Promise<{ readonly instance: EngineInstance; readonly downtimeMs: number }> {
  const started = performance.now();
  const [status, value] = (await runScript(
    redis,
    'migrate',
    MIGRATE,
    [
      from.keys.instances,
      from.keys.fence,
      from.keys.down,
      from.keys.stopped,
      to.keys.instances,
      to.keys.fence,
      to.keys.down,
      to.keys.stopped,
    ],
    [name, String(generation)],
  )) as [string, string];
  const downtimeMs = performance.now() - started;
  switch (status) {
    case 'ok':
      return { instance: JSON.parse(value) as EngineInstance, downtimeMs };
    case 'down':
      throw new VfleetError(
        'host-unreachable',
        `host ${value === 'source' ? from.host : to.host} does not answer`,
        { retryable: true },
      );
    case 'stale':
      throw new VfleetError(
        'stale-generation',
        `${name}: generation ${generation} is older than ${value}, seen on ${from.host} or ${to.host}`,
      );
    case 'missing':
      throw new VfleetError('instance-missing', `${name} does not exist on ${from.host}`);
    case 'exists':
      throw new VfleetError('migration-failed', `${to.host} has ${name} already`);
    default:
      throw new VfleetError(
        'migration-failed',
        `${name} is ${value} on ${from.host}: only a running instance migrates live`,
      );
  }
}
