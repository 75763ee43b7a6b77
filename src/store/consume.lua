-- consume.lua: check every cap of a message and count it, atomically (one round trip).
--
-- KEYS[1..k]  the counters the message moves (k = #KEYS - 10): daily ones
--             (<prefix>:YYYY-MM-DD:<who>) and shorter windows (<prefix>:YYYY-MM-DDTHHMM/<w>:<who>);
--             message counters are the same after <prefix>:m:
-- KEYS[k+1]   the violations list (<prefix>:violations)
-- KEYS[k+2]   today's top senders, a sorted set (<prefix>:top:YYYY-MM-DD)
-- KEYS[k+3]   the sender's temporary raise (<prefix>:raise:<email>)
-- KEYS[k+4]   the sender's lock (<prefix>:lock:<email>)
-- KEYS[k+5]   the sender's client addresses today, a HyperLogLog (<prefix>:ips:YYYY-MM-DD:<email>)
-- KEYS[k+6]   the sender's refusals today that count toward a lock (<prefix>:refusals:YYYY-MM-DD:<email>)
-- KEYS[k+7]   the sender's refused messages today, a set of "f:<fingerprint>" and
--             "i:<instance>" (<prefix>:fp:YYYY-MM-DD:<email>)
-- KEYS[k+8]   the index of automatic locks, a sorted set scored by expiry (<prefix>:locks:auto)
-- KEYS[k+9]   the lock of the sender's whole domain (<prefix>:lock:@<domain>; set by `lock @domain`)
-- KEYS[k+10]  the sender's history for learned allowances, a hash (<prefix>:hist:<email>)
-- ARGV[1]     n: recipients of this message (>= 1)
-- ARGV[2]     "count" (end of data), "check" (RCPT pre-check: never counts; records only the
--             window's first refusal) or
--             "peek" (`probe`: decides as "count" or "check" would and writes nothing at all)
-- ARGV[3]     "1" = enforce; "0" = log-only: a message over a cap is counted anyway, locks are
--             reported but not enforced and none is made
-- ARGV[4]     how many violations the list keeps
-- ARGV[5]     now, unix seconds          (violation record)
-- ARGV[6]     the sender's address       (violation record)
-- ARGV[7]     the SMTP client's address  (violation record; tracked when counting)
-- ARGV[8]     the raise the caps below were built with ("" for none)
-- ARGV[9]     the TTL in seconds of the daily keys (top senders, addresses, refusals, markers)
-- ARGV[10]    max_client_ips: more distinct client addresses today make a suspect (0 = off)
-- ARGV[11]    "1": lock suspects, and senders refused more than ARGV[12] times today
-- ARGV[12]    lock_after_refusals (0 = off)
-- ARGV[13]    this server's name     (violation record)
-- ARGV[14]    the message's transaction (Postfix's instance; "" when unknown)
-- ARGV[15]    the message's fingerprint (what stays the same when a client retries it)
-- ARGV[16]    the TTL in seconds of the fingerprint set (to the end of the local day + 1 h)
-- ARGV[17]    the cap (1-based) that n alone exceeds, as the caller found it (0: none): the
--             message can never fit, it is refused by that cap whatever the counters say
-- ARGV[18]    the TTL in seconds of today's top senders (kept 8 days, for `top --date`)
-- ARGV[19]    the max_rcpt_per_message that n exceeds, as the caller found it (0: none): the
--             message is rejected before any cap is looked at
-- ARGV[20]    the history field that excludes today from learning ("x:YYYY-MM-DD"), or "" when
--             learning is off
-- ARGV[21]    the TTL in seconds of the history hash
-- ARGV[22]    the client's network (`known_networks`: "192.0.2.0/24"), or "": a counted message
--             sets the history's field "n:<network>" to "FIRST LAST" (the first and the last day
--             mail came from it; `store::Seen::used`), written at most once a day. The daemon
--             passes a sender's network only until a message from it was counted today.
-- ARGV[23 .. 22+2k]  2 per counter: its TTL in seconds (given when created, or when found
--             without one) and what the message adds to it (n for recipients, 1 for messages)
-- then 5 per cap, in the order caps are checked: the counter's index (1-based), the limit, the
--             record's type ("user", "domain", "global"), window ("1d", "1h", "15m", ...) and
--             unit ("rcpt" or "msg")
--
-- The order of the checks: (1) client-address tracking, suspects and their locks (counting
-- only; refused or not); (2) a lock; (3) max_rcpt_per_message (ARGV[19]); (4) the oversize cap
-- (ARGV[17]); (5) the first cap without room; (6) else count.
-- Reply {0, events, ips, lock, c1, ..., ck}: the message fits; c1..ck are the counters before it.
-- Reply {i, events, ips, lock, c1, ..., ck}: cap i (1-based) refused it. When counting, a
-- refusal of a new message (neither its fingerprint nor its transaction seen today) pushes a
-- JSON violation record onto KEYS[k+1] (newest first; `"oversize":true` for an oversize one,
-- `"unit":"msg"` for a message cap) and trims the list; a retry pushes nothing. A new message
-- refused by a mailbox cap (type "user", not oversize) counts toward lock_after_refusals.
-- Reply {0, events, ips, lock, c1, ..., ck} also when ARGV[19] rejected the message: nothing was
-- counted (in enforce mode), a new message was recorded (`"per_message":true`, window
-- "message"); it never counts toward a lock and makes no first-refusal event.
-- When counting with learning on (ARGV[20]), today is marked excluded in KEYS[k+10] (HSET of
-- ARGV[20]) when the sender is refused by its own mailbox cap in enforce mode, becomes a
-- suspect, is locked here, or sends while locked: a sender at its cap earns nothing by staying
-- there. At RCPT nothing is counted, and only the first refusal by a cap in its window (bit 1
-- below, enforce mode) pushes a record: END-OF-MESSAGE may never come (v4). Counters only grow when the message fits (or in log-only mode), all together, so a
-- refused burst burns no quota; a counted message also adds n to the sender's score in
-- KEYS[k+2] (the set gets ARGV[18] as TTL when it has none).
-- Reply {-3, events, ips, lock}: the sender (or its domain) is locked (enforce mode): nothing was
--   counted.
--   events: bit 1 = the first refusal by this cap in its window (not for oversize), bit 2 = the
--   sender just became a suspect today, bit 4 = this request locked the sender; each is decided
--   with a marker key (<prefix>:once:<the key without its prefix>, SET NX with the key's
--   TTL), so it happens once per window across every server sharing this Redis. ips: the
--   sender's distinct client addresses today when this request added one, else 0. lock: the
--   lock's JSON, or "". A lock made here is also added to KEYS[k+8] with the score +inf.
-- Reply {-2, raise}: the sender's raise is not the one the caps were built with (set, changed or
-- expired meanwhile): nothing was written; the caller builds the caps again and retries.
-- Reply {-1, key}: bad data. The key holds a value of the wrong type, or a counter that is not a
-- non-negative integer (decimal, no sign or leading zero, at most 15 digits). Every key is read
-- and checked before anything is written, so such a request changes nothing; requests that do
-- not touch the key are unaffected.

local BAD, RAISE, LOCKED = -1, -2, -3
local FIRST_REFUSAL, SUSPECT, LOCK = 1, 2, 4

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

-- A key that is absent or of the type `want`.
local function typed(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == want
end

-- The decision rule, mirrored from `store::first_full`: the first cap without room for what the
-- message adds to its counter.
local function first_full(before, caps, adds)
  for i, c in ipairs(caps) do
    if before[c.counter] + adds[c.counter] > c.limit then
      return i
    end
  end
  return 0
end

-- Mirrored from `store::protect::{is_suspect, trips_lock, counts_toward_lock}`.
local function is_suspect(ips, max_client_ips)
  return max_client_ips > 0 and ips > max_client_ips
end
local function trips_lock(refusals, lock_after_refusals)
  return lock_after_refusals > 0 and refusals > lock_after_refusals
end
local function counts_toward_lock(kind, oversize, new_message)
  return kind == 'user' and not oversize and new_message
end

local k = #KEYS - 10
local violations, top, raise = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
local lock, ips, refusals = KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
local fp, auto_locks, domain_lock, hist = KEYS[k + 7], KEYS[k + 8], KEYS[k + 9], KEYS[k + 10]
local n = tonumber(ARGV[1])
local enforce = ARGV[3] == '1'
local counting = ARGV[2] == 'count'
local peek = ARGV[2] == 'peek'
local now, sender, client, server = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[13]
local day_ttl = tonumber(ARGV[9])
local max_ips, lock_after = tonumber(ARGV[10]), tonumber(ARGV[12])
local instance, fingerprint, fp_ttl = ARGV[14], ARGV[15], tonumber(ARGV[16])
local oversize = tonumber(ARGV[17])
local top_ttl = tonumber(ARGV[18])
local per_message = tonumber(ARGV[19])
local mark, hist_ttl, network = ARGV[20], tonumber(ARGV[21]), ARGV[22]
local ttls, adds = {}, {}
for i = 1, k do
  ttls[i], adds[i] = tonumber(ARGV[21 + 2 * i]), tonumber(ARGV[22 + 2 * i])
end
local autolock = enforce and ARGV[11] == '1'
local tracking = counting and max_ips > 0 and client ~= ''

local raised = redis.pcall('GET', raise)
if raised == false then raised = '' end
if type(raised) ~= 'string' then return {BAD, raise} end
if raised ~= ARGV[8] then return {RAISE, raised} end

local locked = redis.pcall('GET', lock)
if locked == false then locked = '' end
if type(locked) ~= 'string' then return {BAD, lock} end
-- A locked domain stops its senders as their own lock would (and is never replaced by one).
if locked == '' then
  locked = redis.pcall('GET', domain_lock)
  if locked == false then locked = '' end
  if type(locked) ~= 'string' then return {BAD, domain_lock} end
end
local stopped = locked ~= '' and enforce

-- Read and check every key this request may write before the first write (a locked sender's
-- request writes only the addresses and the suspect's record).
local before, exists, caps, full = {}, {}, {}, 0
local moves, records = false, false
if not stopped then
  for i = 1, k do
    local v, e = counter(KEYS[i])
    if v == nil then return {BAD, KEYS[i]} end
    before[i], exists[i] = v, e
  end
  for a = 23 + 2 * k, #ARGV, 5 do
    caps[#caps + 1] = {counter = tonumber(ARGV[a]), limit = tonumber(ARGV[a + 1]),
                       kind = ARGV[a + 2], window = ARGV[a + 3], unit = ARGV[a + 4]}
  end
  if per_message ~= 0 then
    full = 0
  elseif oversize ~= 0 then
    full = oversize
  else
    full = first_full(before, caps, adds)
  end
  records = (full ~= 0 or per_message ~= 0) and counting
  -- A refusal must be recorded: a violations list of the wrong type fails it open. (A suspect
  -- or lock record found to have nowhere to go is skipped instead: see `record`.)
  if records then
    if not typed(violations, 'list') then return {BAD, violations} end
    if not typed(fp, 'set') then return {BAD, fp} end
  end
  moves = counting and ((full == 0 and per_message == 0) or not enforce)
  if moves and not typed(top, 'zset') then return {BAD, top} end
end
-- Marks go to the history only when counting with learning on; a key of another type skips
-- them (learning is a convenience: it must never cost a decision). Its type is looked at only
-- when a mark is due (rarely), not on every request.
local marks = counting and mark ~= ''
local refusals_exist = false
local counts_refusals = records and oversize == 0 and autolock and lock_after > 0
if counts_refusals then
  local v, e = counter(refusals)
  if v == nil then return {BAD, refusals} end
  refusals_exist = e
end

-- Checked: from here on every write succeeds (the address set is written first, so a key that
-- is not a HyperLogLog fails before anything else is written).
local events, seen = 0, 0

-- Where the once-per-window markers live: <prefix>:once:<the key without the prefix>.
local base = string.sub(violations, 1, #violations - #'violations')
local function once(key, ttl)
  return redis.call('SET', base .. 'once:' .. string.sub(key, #base + 1), '1', 'NX', 'EX', ttl) ~= false
end
-- Today is excluded from learning.
local function exclude()
  if marks and typed(hist, 'hash') then
    redis.call('HSET', hist, mark, '1')
    redis.call('EXPIRE', hist, hist_ttl)
  end
  marks = false
end
local list_ok = records or nil
local function record(kind, limit, count, window, extra)
  if list_ok == nil then list_ok = typed(violations, 'list') end
  if not list_ok then return end
  redis.call('LPUSH', violations, string.format(
    '{"ts":%d,"type":"%s","user":%s,"limit":%d,"count":%d,"rcpt":%d,"ip":%s,"enforced":%s,"window":"%s","server":%s%s}',
    now, kind, cjson.encode(sender), limit, count, n, cjson.encode(client),
    enforce and 'true' or 'false', window, cjson.encode(server), extra or ''))
  redis.call('LTRIM', violations, 0, tonumber(ARGV[4]) - 1)
end
local function lock_now(reason, limit, count)
  locked = string.format('{"ts":%d,"by":"auto","reason":%s}', now, cjson.encode(reason))
  redis.call('SET', lock, locked)
  -- The index is a convenience for counting locks; a foreign value there must not cost the lock.
  redis.pcall('ZADD', auto_locks, 'inf', sender)
  events = events + LOCK
  record('locked', limit, count, '1d')
  exclude()
end
-- The counted message came from `network` today (mirrored from `store::Seen::used`): the
-- field keeps its first day and gets today as its last. A history of another type is skipped.
local function remember()
  local today, field = string.sub(mark, 3), 'n:' .. network
  local seen = redis.pcall('HGET', hist, field)
  if type(seen) == 'table' then return end
  local first, last
  if type(seen) == 'string' then
    first, last = string.match(seen, '^(%d%d%d%d%-%d%d%-%d%d) (%d%d%d%d%-%d%d%-%d%d)$')
  end
  if last == today then return end
  redis.call('HSET', hist, field, (first or today) .. ' ' .. today)
  redis.call('EXPIRE', hist, hist_ttl)
end
-- Whether this message is new today: neither its fingerprint nor its transaction was refused
-- before (both are remembered either way).
local function new_message()
  local new = redis.call('SADD', fp, 'f:' .. fingerprint) == 1
  if instance ~= '' and redis.call('SADD', fp, 'i:' .. instance) == 0 then new = false end
  if redis.call('TTL', fp) < 0 then redis.call('EXPIRE', fp, fp_ttl) end
  return new
end

-- (1) Addresses, suspects and their locks: refused or not, locked or not.
if tracking then
  local added = redis.pcall('PFADD', ips, client)
  if type(added) ~= 'number' then return {BAD, ips} end
  if added == 1 then
    seen = redis.call('PFCOUNT', ips)
    if redis.call('TTL', ips) == -1 then redis.call('EXPIRE', ips, day_ttl) end
    if is_suspect(seen, max_ips) then
      exclude()
      if once(ips, day_ttl) then
        events = events + SUSPECT
        record('suspect', max_ips, seen, '1d')
      end
      if autolock and locked == '' then
        lock_now(seen .. ' client addresses today', max_ips, seen)
        return {LOCKED, events, seen, locked}
      end
    end
  end
end

-- (2) A lock.
if locked ~= '' then exclude() end
if stopped then return {LOCKED, events, seen, locked} end

-- Every counter has a TTL: one written from outside (the panel, a restore) without one gets it.
for i = 1, peek and 0 or k do
  if exists[i] and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], ttls[i])
  end
end

-- (3) Too many recipients for one message: recorded once, never counted toward a lock.
if per_message ~= 0 and records and new_message() then
  record('user', per_message, n, 'message', ',"per_message":true')
end

-- (4), (5) A refusal.
if full ~= 0 then
  local c = caps[full]
  local new = records and new_message()
  local extra = (oversize ~= 0 and ',"oversize":true' or '') .. (c.unit == 'msg' and ',"unit":"msg"' or '')
  if new then
    record(c.kind, c.limit, before[c.counter], c.window, extra)
  end
  if enforce and oversize == 0 and not peek and once(KEYS[c.counter], ttls[c.counter]) then
    events = events + FIRST_REFUSAL
    -- At RCPT only the window's first refusal is recorded: END-OF-MESSAGE may never come.
    if not counting then record(c.kind, c.limit, before[c.counter], c.window, extra) end
  end
  if enforce and c.kind == 'user' and oversize == 0 then exclude() end
  if counts_refusals and counts_toward_lock(c.kind, oversize ~= 0, new) then
    local r = redis.call('INCRBY', refusals, 1)
    if not refusals_exist or redis.call('TTL', refusals) == -1 then redis.call('EXPIRE', refusals, day_ttl) end
    if trips_lock(r, lock_after) then lock_now('refused ' .. r .. ' times today', lock_after, r) end
  end
end

-- (6) Count.
if moves then
  for i = 1, k do
    redis.call('INCRBY', KEYS[i], adds[i])
    if not exists[i] then redis.call('EXPIRE', KEYS[i], ttls[i]) end
  end
  -- A new member: the first message of the sender today; give the set a TTL if it has none.
  if tonumber(redis.call('ZINCRBY', top, n, sender)) == n and redis.call('TTL', top) < 0 then
    redis.call('EXPIRE', top, top_ttl)
  end
  if mark ~= '' and network ~= '' then remember() end
end

local reply = {full, events, seen, locked}
for i = 1, k do reply[i + 4] = before[i] end
return reply
