/**
 * The one Lua script behind a cluster budget. Every operation runs it, so
 * each decision (reclaim, grant, release, renewal) is one atomic step on the
 * server, decided by the server's own clock (`TIME`).
 *
 * KEYS (one hash tag, so a budget lives in one Cluster slot):
 * 1 `cfg` HASH `epoch`, `born`, `last`, `learnUntil`;
 * 2 `inst` ZSET instance → lease expiry (server ms);
 * 3 `permits` HASH permit id → `instance|tenant`;
 * 4 `used` HASH `*` (total), `t:<tenant>`, `i:<instance>`;
 * 5 `wants` HASH instance → permits it is waiting for.
 *
 * ARGV: 1 op; 2 the clock (read only by the test build, see {@link testScript});
 * 3 instance; 4 the epoch the caller knows (`""` none); 5 lease ms; 6 channel;
 * then per op:
 * - `acquire`: 7 id, 8 tenant, 9 limit, 10 tenant limit, 11 permits the caller holds, 12 its waiters;
 * - `release`: 7 id;
 * - `heartbeat`: 7 waiters, 8 limit, then id / tenant pairs of the permits it holds;
 * - `leave`: nothing;
 * - `adopt`: id / tenant pairs of permits granted while Redis was unreachable.
 *
 * Reply: `{status, now, epoch, used, tenantUsed, held, wantsElsewhere, reclaimed, over, instances}`.
 *
 * The rules, in order:
 * - `now` never goes back below the last `now` the budget saw.
 * - No epoch (first use, or Redis lost its data): a new one is born.
 * - Learning (no reclaim, no grants) starts when a caller carries an older
 *   epoch within one lease of the new epoch's birth (data lost: holders must
 *   re-assert), or when no call came for over a lease while permits were held
 *   (Redis paused: instances could not renew). It lasts until `born + lease`
 *   and `now + lease` respectively.
 * - Outside learning, up to 16 instances whose lease ran out are reclaimed:
 *   their permits and wants go.
 * - An acquire from an instance that holds permits but has no lease entry is
 *   answered `lost` (its entry was reclaimed), unless it carries an older
 *   epoch: then Redis lost its data, and the instance hears `learning` (or
 *   `lost` once learning is over) and re-asserts with its next heartbeat.
 * - A heartbeat while other instances want permits reports `over`: what the
 *   caller holds above its fair share — the limit split over the instances
 *   that hold or want permits, the remainder one each to those that want more
 *   first, then to the others, in byte order of their ids (so shares add up
 *   to the limit and stay put).
 * - `adopt` counts the permits it carries (those not counted yet) whatever
 *   the limits, learning or epoch: their connections exist, and counting them
 *   can only make the count truer. It renews the caller's lease.
 *
 * @internal
 */
const template = `
local cfg, inst, permits, used, wants = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, me, known, lease, channel = ARGV[1], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
--[[clock]]
local last = tonumber(redis.call("HGET", cfg, "last") or "0")
if now < last then now = last end

local epoch = redis.call("HGET", cfg, "epoch")
local born
if not epoch then
  epoch = tostring(now) .. "-" .. me
  born = now
  redis.call("HSET", cfg, "epoch", epoch, "born", born, "learnUntil", 0)
  last = now
else
  born = tonumber(redis.call("HGET", cfg, "born"))
end
local learnUntil = tonumber(redis.call("HGET", cfg, "learnUntil") or "0")
local total = tonumber(redis.call("HGET", used, "*") or "0")
if now - last > lease and total > 0 and now + lease > learnUntil then learnUntil = now + lease end
local stale = known ~= "" and known ~= epoch
if stale and now < born + lease and born + lease > learnUntil then learnUntil = born + lease end
local learning = now < learnUntil

local function split(v)
  local owner, tenant = string.match(v, "^(.-)|(.*)$")
  return owner, tenant
end
local function decr(field)
  if redis.call("HINCRBY", used, field, -1) <= 0 then redis.call("HDEL", used, field) end
end
-- Drops every permit of the instances in the set; answers how many.
local function drop(set)
  local n = 0
  local all = redis.call("HGETALL", permits)
  for i = 1, #all, 2 do
    local owner, tenant = split(all[i + 1])
    if set[owner] then
      redis.call("HDEL", permits, all[i])
      decr("*")
      decr("t:" .. tenant)
      n = n + 1
    end
  end
  for owner in pairs(set) do
    redis.call("ZREM", inst, owner)
    redis.call("HDEL", wants, owner)
    redis.call("HDEL", used, "i:" .. owner)
  end
  return n
end
-- Byte order (Lua's < on strings follows the server's locale).
local function bytesBefore(x, y)
  for i = 1, math.min(#x, #y) do
    local a, b = string.byte(x, i), string.byte(y, i)
    if a ~= b then return a < b end
  end
  return #x < #y
end

local function wantsElsewhere()
  local n = 0
  local all = redis.call("HGETALL", wants)
  for i = 1, #all, 2 do
    if all[i] ~= me then n = n + tonumber(all[i + 1]) end
  end
  return n
end
local function setWants(n)
  if n > 0 then redis.call("HSET", wants, me, n) else redis.call("HDEL", wants, me) end
end
local function count(field)
  return tonumber(redis.call("HGET", used, field) or "0")
end
-- Counts permit id of tenant as this instance's.
local function hold(id, tenant)
  redis.call("HSET", permits, id, me .. "|" .. tenant)
  redis.call("HINCRBY", used, "*", 1)
  redis.call("HINCRBY", used, "t:" .. tenant, 1)
  redis.call("HINCRBY", used, "i:" .. me, 1)
end
-- Counts each (id, tenant) pair of ARGV from first on that is not counted yet: a re-assertion, an adoption.
local function holdMissing(first)
  for i = first, #ARGV, 2 do
    if redis.call("HEXISTS", permits, ARGV[i]) == 0 then hold(ARGV[i], ARGV[i + 1]) end
  end
end

local reclaimed = 0
if not learning then
  local dead = redis.call("ZRANGEBYSCORE", inst, "-inf", now, "LIMIT", 0, 16)
  if #dead > 0 then
    local set = {}
    for _, d in ipairs(dead) do set[d] = true end
    reclaimed = drop(set)
  end
end

local status = "ok"
local tenantUsed = 0
local over = 0
local freed = reclaimed
local registered = redis.call("ZSCORE", inst, me)

if op == "acquire" then
  local id, tenant = ARGV[7], ARGV[8]
  local limit, tenantLimit = tonumber(ARGV[9]), tonumber(ARGV[10])
  local held, waiting = tonumber(ARGV[11]), tonumber(ARGV[12])
  tenantUsed = count("t:" .. tenant)
  if redis.call("HEXISTS", permits, id) == 1 then
    status = "granted"
    redis.call("ZADD", inst, now + lease, me)
  elseif stale and not learning then
    status = "lost"
  elseif held > 0 and not registered and not stale then
    -- (A stale caller holding permits is an instance Redis lost the data of: during learning its
    -- acquire may come before its heartbeat; it hears "learning" and re-asserts.)
    status = "lost"
  else
    redis.call("ZADD", inst, now + lease, me)
    if learning then
      status = "learning"
      setWants(waiting)
    elseif count("*") >= limit or tenantUsed >= tenantLimit then
      status = "exhausted"
      setWants(waiting)
    else
      status = "granted"
      hold(id, tenant)
      tenantUsed = tenantUsed + 1
      setWants(waiting - 1)
    end
  end
elseif op == "release" then
  local v = redis.call("HGET", permits, ARGV[7])
  if v then
    local owner, tenant = split(v)
    redis.call("HDEL", permits, ARGV[7])
    decr("*")
    decr("t:" .. tenant)
    decr("i:" .. owner)
    status = "released"
    freed = freed + 1
  else
    status = "unknown"
  end
elseif op == "heartbeat" then
  local waiting, limit = tonumber(ARGV[7]), tonumber(ARGV[8])
  if stale and learning then
    status = "reasserted"
    holdMissing(9)
  elseif stale or (#ARGV > 8 and not registered) then
    status = "lost"
  end
  if status ~= "lost" then
    redis.call("ZADD", inst, now + lease, me)
    setWants(waiting)
    -- A fair share: the limit split over the instances that hold or want permits.
    local others = wantsElsewhere()
    if others > 0 then
      local demand = {}
      local wanting = {}
      local n = 0
      local all = redis.call("HGETALL", used)
      for i = 1, #all, 2 do
        local who = string.match(all[i], "^i:(.*)$")
        if who and not demand[who] then demand[who] = true; n = n + 1 end
      end
      all = redis.call("HGETALL", wants)
      for i = 1, #all, 2 do
        wanting[all[i]] = true
        if not demand[all[i]] then demand[all[i]] = true; n = n + 1 end
      end
      -- The remainder goes one each to the instances that want more first, then to the others, in
      -- byte order of their ids: shares add up to the limit and stay put, so an instance at the larger
      -- share is not told to close a connection that another then takes, round after round.
      local ids = {}
      for who in pairs(demand) do ids[#ids + 1] = who end
      table.sort(ids, function(x, y)
        if (wanting[x] == true) ~= (wanting[y] == true) then return wanting[x] == true end
        return bytesBefore(x, y)
      end)
      local share = math.floor(limit / n)
      for i = 1, limit % n do
        if ids[i] == me then share = share + 1 end
      end
      over = count("i:" .. me) - share
      if over < 0 then over = 0 end
    end
  end
elseif op == "leave" then
  local set = {}
  set[me] = true
  freed = freed + drop(set)
  status = "left"
elseif op == "adopt" then
  status = "adopted"
  redis.call("ZADD", inst, now + lease, me)
  holdMissing(7)
end

if freed > 0 and wantsElsewhere() > 0 then redis.call("PUBLISH", channel, "freed") end
redis.call("HSET", cfg, "last", now, "learnUntil", learnUntil)
for i = 1, 5 do redis.call("PEXPIRE", KEYS[i], lease * 10) end
return {status, now, epoch, count("*"), tenantUsed, count("i:" .. me), wantsElsewhere(), reclaimed, over, redis.call("ZCARD", inst)}
`

const serverClock = `local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

const argumentClock = `local now = tonumber(ARGV[2])`

/**
 * The production script: `now` comes from `TIME`, the only clock; nothing a
 * caller sends can change it.
 *
 * @internal
 */
export const script = template.replace("--[[clock]]", serverClock)

/**
 * The test build of the same script: the one line that reads `TIME` is
 * replaced by one that reads ARGV[2], so a test decides the time. It is a
 * different script (another SHA, another command name), only reachable through
 * an internal option: the production script has no code path that reads a
 * caller's clock.
 *
 * @internal
 */
export const testScript = template.replace("--[[clock]]", argumentClock)

/** @internal */
export const commandName = (testClock: boolean): string => (testClock ? "cisternBudgetTestClock" : "cisternBudget")

/** @internal */
export const numberOfKeys = 5
