-- consume.lua: check every cap of a message and count it, atomically (one round trip).
--
-- KEYS[1..k]  the counters the message moves (k = #KEYS - 3): daily ones
--             (<prefix>:YYYY-MM-DD:<who>) and shorter windows (<prefix>:YYYY-MM-DDTHHMM/<w>:<who>)
-- KEYS[k+1]   the violations list (<prefix>:violations)
-- KEYS[k+2]   today's top senders, a sorted set (<prefix>:top:YYYY-MM-DD)
-- KEYS[k+3]   the sender's temporary raise (<prefix>:raise:<email>)
-- ARGV[1]     n: recipients of this message (>= 1)
-- ARGV[2]     "count" (end of data) or "check" (RCPT pre-check: never counts)
-- ARGV[3]     "1" = enforce; "0" = log-only: a message over a cap is counted anyway
-- ARGV[4]     how many violations the list keeps
-- ARGV[5]     now, unix seconds          (violation record)
-- ARGV[6]     the sender's address       (violation record)
-- ARGV[7]     the SMTP client's address  (violation record)
-- ARGV[8]     the raise the caps below were built with ("" for none)
-- ARGV[9]     the top senders' TTL in seconds
-- ARGV[10 .. 9+k]  each counter's TTL in seconds (given when created, or when found without one)
-- then 4 per cap, in the order caps are checked: the counter's index (1-based), the limit, the
--             record's type ("user", "domain", "global") and window ("1d", "1h", "15m", ...)
--
-- Reply {0, c1, ..., ck}: the message fits; c1..ck are the counters before it.
-- Reply {i, c1, ..., ck}: cap i (1-based) has no room; a JSON violation record is pushed onto
-- KEYS[k+1] (newest first) and the list trimmed. Counters only grow when every cap has room (or
-- in log-only mode), all together, so a refused burst burns no quota; a counted message also adds
-- n to the sender's score in KEYS[k+2] (the set gets ARGV[9] as TTL when it has none).
-- Reply {-2, raise}: the sender's raise is not the one the caps were built with (set, changed or
-- expired meanwhile): nothing was written; the caller builds the caps again and retries.
-- Reply {-1, key}: bad data. The key holds a value of the wrong type, or a counter that is not a
-- non-negative integer (decimal, no sign or leading zero, at most 15 digits). Every key is read
-- and checked before anything is written, so such a request changes nothing; requests that do
-- not touch the key are unaffected.

local BAD, RAISE = -1, -2

-- A counter's value (0 when absent) and whether it exists; nil when it is not a count.
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

-- The decision rule, mirrored from `store::first_full`: the first cap without room for n more.
local function first_full(before, caps, n)
  for i, c in ipairs(caps) do
    if before[c.counter] + n > c.limit then
      return i
    end
  end
  return 0
end

local k = #KEYS - 3
local violations, top, raise = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
local n = tonumber(ARGV[1])
local enforce = ARGV[3] == '1'
local counting = ARGV[2] == 'count'

local raised = redis.pcall('GET', raise)
if raised == false then raised = '' end
if type(raised) ~= 'string' then return {BAD, raise} end
if raised ~= ARGV[8] then return {RAISE, raised} end

local before, exists = {}, {}
for i = 1, k do
  local v, e = counter(KEYS[i])
  if v == nil then return {BAD, KEYS[i]} end
  before[i], exists[i] = v, e
end

local caps = {}
for a = 10 + k, #ARGV, 4 do
  caps[#caps + 1] = {counter = tonumber(ARGV[a]), limit = tonumber(ARGV[a + 1]),
                     kind = ARGV[a + 2], window = ARGV[a + 3]}
end
local full = first_full(before, caps, n)

if full ~= 0 then
  local t = redis.call('TYPE', violations)['ok']
  if t ~= 'none' and t ~= 'list' then return {BAD, violations} end
end
local moves = counting and (full == 0 or not enforce)
if moves then
  local t = redis.call('TYPE', top)['ok']
  if t ~= 'none' and t ~= 'zset' then return {BAD, top} end
end

-- Checked: from here on every write succeeds. Every counter has a TTL: one written from
-- outside (the panel, a restore) without one gets it.
for i = 1, k do
  if exists[i] and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[9 + i]))
  end
end

if full ~= 0 then
  local c = caps[full]
  local record = string.format(
    '{"ts":%d,"type":"%s","user":%s,"limit":%d,"count":%d,"rcpt":%d,"ip":%s,"enforced":%s,"window":"%s"}',
    tonumber(ARGV[5]), c.kind, cjson.encode(ARGV[6]), c.limit, before[c.counter], n,
    cjson.encode(ARGV[7]), enforce and 'true' or 'false', c.window)
  redis.call('LPUSH', violations, record)
  redis.call('LTRIM', violations, 0, tonumber(ARGV[4]) - 1)
end

if moves then
  for i = 1, k do
    redis.call('INCRBY', KEYS[i], n)
    if not exists[i] then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[9 + i])) end
  end
  -- A new member: the first message of the sender today; give the set a TTL if it has none.
  if tonumber(redis.call('ZINCRBY', top, n, ARGV[6])) == n and redis.call('TTL', top) < 0 then
    redis.call('EXPIRE', top, tonumber(ARGV[9]))
  end
end

local reply = {full}
for i = 1, k do reply[i + 1] = before[i] end
return reply
