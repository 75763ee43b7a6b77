-- consume.lua: check both daily caps and count one message, atomically (one round trip).
--
-- KEYS[1]  the sender's counter for today    (<prefix>:YYYY-MM-DD:<email>)
-- KEYS[2]  the server-wide counter for today (<prefix>:YYYY-MM-DD:global)
-- KEYS[3]  the violations list               (<prefix>:violations)
-- ARGV[1]  n: recipients of this message (>= 1)
-- ARGV[2]  the sender's cap; 0 = none enforced (it is still counted)
-- ARGV[3]  the server-wide cap; 0 = none enforced (still counted)
-- ARGV[4]  "count" (end of data) or "check" (RCPT pre-check: never counts)
-- ARGV[5]  "1" = enforce; "0" = log-only: a message over a cap is counted anyway
-- ARGV[6]  TTL in seconds of a counter (given when created, or when found without one)
-- ARGV[7]  how many violations the list keeps
-- ARGV[8]  now, unix seconds          (violation record)
-- ARGV[9]  the sender's address       (violation record)
-- ARGV[10] the SMTP client's address  (violation record)
--
-- Reply: {verdict, m, g}: verdict 0 = fits, 1 = over the sender's cap, 2 = over the server-wide
-- cap; m and g are the counts before this message. Over a cap, a JSON violation record is pushed
-- onto KEYS[3] (newest first) and the list trimmed. Counters only grow when the whole message
-- fits (or in log-only mode), so a refused burst burns no quota.
-- Reply {3, key}: bad data. The key holds a value of the wrong type, or a counter that is not a
-- non-negative integer (decimal, no sign or leading zero, at most 15 digits). Every key is read and checked before anything is
-- written, so such a request changes nothing; requests that do not touch the key are unaffected.

local BAD = 3

-- A counter's value (0 when absent), or nil when it is not a non-negative integer.
local function counter(key)
  local v = redis.pcall('GET', key)
  if v == false then
    return 0, false
  end
  -- Redis's INCRBY refuses leading zeros ("007"): so does this check, or a write could fail
  -- half-way through the script.
  if type(v) ~= 'string' or #v > 15 or not (v == '0' or string.match(v, '^[1-9]%d*$')) then
    return nil
  end
  return tonumber(v), true
end

-- Every counter has a TTL: one written from outside (the panel, a restore) without one gets it.
local function expire_if_none(key, ttl)
  if redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, ttl)
  end
end

local n = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local gcap = tonumber(ARGV[3])
local enforce = ARGV[5] == '1'
local ttl = tonumber(ARGV[6])

local m, m_exists = counter(KEYS[1])
if m == nil then return {BAD, KEYS[1]} end
local g, g_exists = counter(KEYS[2])
if g == nil then return {BAD, KEYS[2]} end

local verdict, kind, limit, count = 0, nil, 0, 0
if cap > 0 and m + n > cap then
  verdict, kind, limit, count = 1, 'user', cap, m
elseif gcap > 0 and g + n > gcap then
  verdict, kind, limit, count = 2, 'global', gcap, g
end

if verdict ~= 0 then
  local t = redis.call('TYPE', KEYS[3])['ok']
  if t ~= 'none' and t ~= 'list' then return {BAD, KEYS[3]} end
end

-- Checked: from here on every write succeeds.
if m_exists then expire_if_none(KEYS[1], ttl) end
if g_exists then expire_if_none(KEYS[2], ttl) end

if verdict ~= 0 then
  local record = string.format(
    '{"ts":%d,"type":"%s","user":%s,"limit":%d,"count":%d,"rcpt":%d,"ip":%s,"enforced":%s}',
    tonumber(ARGV[8]), kind, cjson.encode(ARGV[9]), limit, count, n, cjson.encode(ARGV[10]),
    enforce and 'true' or 'false')
  redis.call('LPUSH', KEYS[3], record)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
end

if ARGV[4] == 'count' and (verdict == 0 or not enforce) then
  redis.call('INCRBY', KEYS[1], n)
  if not m_exists then redis.call('EXPIRE', KEYS[1], ttl) end
  redis.call('INCRBY', KEYS[2], n)
  if not g_exists then redis.call('EXPIRE', KEYS[2], ttl) end
end

return {verdict, m, g}
