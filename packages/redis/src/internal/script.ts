/**
 * One Lua script performs every write, so a session and its index entries
 * change together, atomically, on the server:
 *
 * - `set`: write unconditionally (a flushed write-behind entry, a write-through `set`);
 * - `nx`: write only when there is no session yet (`getOrCreate`);
 * - `cas`: write only when the stored value is still the one the caller read (`update`);
 *   on a conflict it answers `[0, current value]`, so a retry needs no second read;
 * - `del`: remove the session.
 *
 * The old index entries are found in the stored envelope itself (its `i`
 * field), so no second read is needed. Index keys are built inside the
 * script: on Redis Cluster, put a hash tag in the prefix (`{sessions}:`) so
 * all of a store's keys live in one slot.
 *
 * KEYS[1] session key; ARGV[1] mode; ARGV[2] expected ("0" absent, or "1" then
 * the raw value); ARGV[3] envelope; ARGV[4] TTL in ms; ARGV[5] index key
 * prefix; ARGV[6] session id; ARGV[7] expiry (index score); ARGV[8..] index
 * name / value pairs.
 *
 * @internal
 */
export const writeScript = `
local current = redis.call("GET", KEYS[1])
local mode = ARGV[1]
if mode == "nx" and current then return 0 end
if mode == "cas" then
  -- On a conflict the current value goes back, so the caller retries without reading again.
  if ARGV[2] == "0" then
    if current then return {0, current} end
  elseif current ~= string.sub(ARGV[2], 2) then
    return {0, current}
  end
end
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == "table" and type(old.i) == "table" then
    for name, value in pairs(old.i) do
      redis.call("ZREM", ARGV[5] .. name .. ":" .. tostring(value), ARGV[6])
    end
  end
end
if mode == "del" then
  redis.call("DEL", KEYS[1])
  return 1
end
local ttl = tonumber(ARGV[4])
redis.call("SET", KEYS[1], ARGV[3], "PX", ttl)
for i = 8, #ARGV, 2 do
  local key = ARGV[5] .. ARGV[i] .. ":" .. ARGV[i + 1]
  redis.call("ZADD", key, ARGV[7], ARGV[6])
  if redis.call("PTTL", key) < ttl then redis.call("PEXPIRE", key, ttl) end
end
return 1
`

/** @internal */
export const commandName = "cisternSessionWrite"

/** @internal */
export type WriteMode = "set" | "nx" | "cas" | "del"
