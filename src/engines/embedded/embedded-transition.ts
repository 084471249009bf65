// The embedded engine's one Lua script for every instance transition (embedded-engine.ts runs it):
// fencing and the state change in one atomic step, so two workers racing on one job cannot both act.

// KEYS: instances, fence, down, disks, the fleet's current-plan key (or any key, unused, when no
// plan is checked), stopped, patch faults. ARGV: name, generation, op, payload (JSON), plan id
// ('' for no check). Returns {status, value}: ok | stale (value: the fence) | missing | down |
// superseded (value: the current plan) | patch-failed (value: the error).
// A create onto a disk copied here (a move) keeps the packages the disk had, as a real disk does.
// A disk received (`receive-disk`, payload: the disk) is fenced like any change, and never lands
// on an instance this host has.
export const TRANSITION = `
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
if op == 'start' then
  -- Started again from stopped: a restart, which is what a pending reboot waited for.
  if rec.status ~= 'running' and type(rec.lastPatch) == 'table' then rec.lastPatch.rebootRequired = false end
  rec.status = 'running' redis.call('SREM', KEYS[6], name)
elseif op == 'stop' then rec.status = 'stopped' redis.call('SADD', KEYS[6], name)
elseif op == 'patch' then
  -- ARGV[4]: {p: package → version, r: packages that ask for a restart, b: rollback}. The patch
  -- runs on a copy of the inventory; an injected fault (KEYS[7]: instance → package) leaves that
  -- package half-configured (not installed, as dpkg counts it) and fails the patch, keeping the
  -- copy (onFailure stop) or the snapshot taken before it (rollback).
  local payload = cjson.decode(ARGV[4])
  local broken = redis.call('HGET', KEYS[7], name)
  local packages = {}
  for package, version in pairs(rec.packages) do packages[package] = version end
  local changed = {}
  for package, version in pairs(payload.p) do
    local from = packages[package]
    if package == broken then
      if from ~= nil then
        packages[package] = nil
        changed[#changed + 1] = {package = package, from = from, to = cjson.null}
      end
    elseif from ~= version then
      packages[package] = version
      changed[#changed + 1] = {package = package, from = from or cjson.null, to = version}
    end
  end
  local before = rec.lastPatch
  local pending = type(before) == 'table' and before.rebootRequired == true
  if broken and payload.p[broken] ~= nil then
    local message = name .. ': ' .. broken .. "'s post-installation script failed (an injected fault)"
    if payload.b then
      rec.lastPatch = {generation = gen, outcome = 'failed', changed = {}, rebootRequired = pending,
        error = message .. '; rolled back to its snapshot', rolledBack = true}
    else
      rec.packages = packages
      rec.lastPatch = {generation = gen, outcome = 'failed', changed = changed, rebootRequired = pending, error = message}
    end
    redis.call('HSET', KEYS[1], name, cjson.encode(rec))
    return {'patch-failed', rec.lastPatch.error}
  end
  local reboot = pending
  for _, package in ipairs(payload.r or {}) do
    for _, c in ipairs(changed) do if c.package == package then reboot = true end end
  end
  rec.packages = packages
  rec.lastPatch = {generation = gen, outcome = (#changed > 0) and 'patched' or 'unchanged',
    changed = changed, rebootRequired = reboot}
end
current = cjson.encode(rec)
redis.call('HSET', KEYS[1], name, current)
return {'ok', current}
`;
