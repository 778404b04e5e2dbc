"""The Lua scripts of the Redis store: one script per atomic step.

Conventions shared by every script (see :mod:`tokenward.store.redis` for the key layout):

* numbers travel as Python ``repr(float)`` strings and are stored as given, so no precision is
  lost in Lua; Lua only parses them (``tonumber``) to compare or to compute a TTL;
* token hashes are lower-case hex everywhere (key names, hash fields, ``current_hash``);
* a token record lives in the family's ``:tok`` hash as fields ``<hex>:c`` (created_at),
  ``<hex>:p`` (parent), ``<hex>:u`` (consumed_at) and ``<hex>:s`` (successor);
* TTLs are relative (``EXPIRE``), computed from the caller's ``now`` — never ``EXPIREAT`` —
  so an injected clock can never make a key vanish early. A family (and its ``:tok`` hash)
  expires ``margin`` seconds after ``min(expires_at, idle_expires_at)``, refreshed on every use;
  a token-hash index key expires ``margin`` seconds after ``expires_at`` (it can never be needed
  later, and a pointer to a vanished family reads as "not found");
* every script touches the keys of one hash slot only (a shard's ``{p:s<n>}`` keys, or the
  global ``{p}`` keys), so the layout runs unchanged on Redis Cluster;
* a family's revocation event is ``XADD *`` on its shard's outbox (fields ``k`` kind, ``v``
  value, ``u`` until, ``a`` at), in the same script as the family change; ``MOVE_EVENT`` then
  appends it to the feed: ``INCR`` on the sequence key, ``XADD <seq>-0`` on the stream and
  ``ZADD`` of ``seq`` scored by ``until`` on the expiry index that :meth:`purge` uses, once per
  outbox entry (a marker key remembers the ``seq`` it got).
"""

from __future__ import annotations

__all__ = [
    "ADD_REVOCATION",
    "CREATE_FAMILY",
    "DPOP_JTI_SEEN",
    "MOVE_EVENT",
    "PURGE_FAMILY",
    "PURGE_STREAM",
    "RATE_HIT",
    "READ_RECORD",
    "REVOKE_FAMILY",
    "ROTATE",
    "SUBJECT_ADD",
]

_COMMON = """
local function ttl_for(deadline, now, margin)
  local t = math.ceil(math.max(deadline - now, 0) + margin)
  if t < 1 then t = 1 end
  return t
end
local function family_ttl(fam, now, margin)
  local f = redis.call('HMGET', fam, 'expires_at', 'idle_expires_at')
  return ttl_for(math.min(tonumber(f[1]), tonumber(f[2])), now, margin)
end
local function append_event(seq_key, stream, revexp, kind, value, untl, at)
  local seq = redis.call('INCR', seq_key)
  redis.call('XADD', stream, seq .. '-0', 'k', kind, 'v', value, 'u', untl, 'a', at)
  redis.call('ZADD', revexp, untl, seq)
  return seq
end
local function outbox_event(outbox, kind, value, untl, at)
  return redis.call('XADD', outbox, '*', 'k', kind, 'v', value, 'u', untl, 'a', at)
end
"""

# The rotation rule of :func:`tokenward.store.base.decide_rotation`, line for line (the
# conformance tests run both on the same cases). Hashes are hex strings here; a missing
# hash field reads as ``false``.
DECIDE_ROTATION = """
local function decide_rotation(revoked, cur, p, consumed, succ, c, now, grace)
  if revoked then return 'revoked' end
  if (not consumed) and p == cur then return 'rotated' end
  if grace > 0 and consumed and succ and now - tonumber(consumed) <= grace
      and succ == cur and succ == c then
    return 'grace'
  end
  return 'reused'
end
"""

CREATE_FAMILY = (
    _COMMON
    + """
-- KEYS: 1 family, 2 tokens, 3 shard deadline index (one shard slot)
-- ARGV: 1 sid, 2 token hex, 3 token created_at, 4 token parent hex or '', 5 now, 6 margin,
--       7 created_at, 8 deadline, 9.. family field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 'family_exists' end
local h = ARGV[2]
local now, margin = tonumber(ARGV[5]), tonumber(ARGV[6])
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], h .. ':c', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], h .. ':p', ARGV[4]) end
local ttl = family_ttl(KEYS[1], now, margin)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
return 'ok'
"""
)

SUBJECT_ADD = (
    _COMMON
    + """
-- KEYS: 1 subject index; ARGV: 1 sid, 2 created_at, 3 expires_at, 4 now, 5 margin
-- Run before the family is created: a crash in between leaves a sid without a family (read as
-- absent), never a family its subject's revocation would miss. The index lives as long as the
-- longest-lived family it lists.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local sttl = ttl_for(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if redis.call('TTL', KEYS[1]) < sttl then redis.call('EXPIRE', KEYS[1], sttl) end
return 1
"""
)

READ_RECORD = """
-- KEYS: 1 family, 2 tokens; ARGV: 1 token hex
-- returns {created_at, parent, consumed_at, successor, family HGETALL...} or {} when absent
local h = ARGV[1]
local rec = redis.call('HMGET', KEYS[2], h .. ':c', h .. ':p', h .. ':u', h .. ':s')
if not rec[1] then return {} end
local fam = redis.call('HGETALL', KEYS[1])
if #fam == 0 then return {} end
return {rec[1], rec[2] or '', rec[3] or '', rec[4] or '', unpack(fam)}
"""

ROTATE = (
    _COMMON
    + DECIDE_ROTATION
    + """
-- KEYS: 1 family, 2 tokens, 3 shard deadline index, 4 shard outbox (one shard slot)
-- ARGV: 1 sid, 2 parent hex, 3 child hex, 4 child created_at, 5 now, 6 grace,
--       7 idle_expires_at, 8 revocation_until, 9 margin
-- returns {outcome, outbox-id-or-'', family HGETALL...}
local fam, tok = KEYS[1], KEYS[2]
if redis.call('EXISTS', fam) == 0 then return {'not_found', ''} end
local p, c = ARGV[2], ARGV[3]
local rec = redis.call('HMGET', tok, p .. ':c', p .. ':u', p .. ':s')
if not rec[1] then return {'not_found', ''} end
local now, grace, margin = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9])
local cur = redis.call('HGET', fam, 'current_hash')
local revoked = redis.call('HEXISTS', fam, 'revoked_at') == 1
local outcome = decide_rotation(revoked, cur, p, rec[2], rec[3], c, now, grace)
if outcome == 'revoked' then
  return {'revoked', '', unpack(redis.call('HGETALL', fam))}
end
local function touch()
  redis.call('HSET', fam, 'last_used_at', ARGV[5], 'idle_expires_at', ARGV[7])
  local ttl = family_ttl(fam, now, margin)
  redis.call('EXPIRE', fam, ttl)
  redis.call('EXPIRE', tok, ttl)
  local f = redis.call('HMGET', fam, 'expires_at', 'idle_expires_at')
  redis.call('ZADD', KEYS[3], math.min(tonumber(f[1]), tonumber(f[2])), ARGV[1])
end
if outcome == 'rotated' then
  if redis.call('HEXISTS', tok, c .. ':c') == 1 then return {'token_exists', ''} end
  redis.call('HSET', tok, p .. ':u', ARGV[5], p .. ':s', c, c .. ':c', ARGV[4], c .. ':p', p)
  redis.call('HSET', fam, 'current_hash', c)
  redis.call('HINCRBY', fam, 'generation', 1)
  touch()
  return {'rotated', '', unpack(redis.call('HGETALL', fam))}
end
if outcome == 'grace' then
  touch()
  return {'grace', '', unpack(redis.call('HGETALL', fam))}
end
redis.call('HSET', fam, 'revoked_at', ARGV[5], 'revoked_reason', 'refresh_token_reuse')
local id = outbox_event(KEYS[4], 'sid', ARGV[1], ARGV[8], ARGV[5])
return {'reused', id, unpack(redis.call('HGETALL', fam))}
"""
)

REVOKE_FAMILY = (
    _COMMON
    + """
-- KEYS: 1 family, 2 shard outbox (one shard slot)
-- ARGV: 1 sid, 2 now, 3 reason, 4 until
-- returns the outbox entry id of the event, or '' when there was nothing to revoke
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return '' end
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2], 'revoked_reason', ARGV[3])
return outbox_event(KEYS[2], 'sid', ARGV[1], ARGV[4], ARGV[2])
"""
)

MOVE_EVENT = (
    _COMMON
    + """
-- KEYS: 1 seq, 2 stream, 3 revexp, 4 the entry's marker (all in the global slot)
-- ARGV: 1 kind, 2 value, 3 until, 4 at, 5 marker TTL
-- Appends one outbox entry to the feed once: a second mover of the same entry (a concurrent
-- one, or a retry after a crash before the entry left the outbox) gets the same seq.
local seq = redis.call('GET', KEYS[4])
if seq then return tonumber(seq) end
seq = append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[4], seq, 'EX', ARGV[5])
return seq
"""
)

ADD_REVOCATION = (
    _COMMON
    + """
-- KEYS: 1 seq, 2 stream, 3 revexp; ARGV: 1 kind, 2 value, 3 until, 4 now
return append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)

PURGE_STREAM = """
-- KEYS: 1 stream, 2 revexp; ARGV: 1 now, 2 batch
-- 1. XTRIM MINID up to the first live entry (the expired prefix, in bulk);
-- 2. XDEL expired entries behind a live one, found through the until-scored index.
-- Returns {trimmed + deleted, more (1 when a batch limit was hit)}.
local now, batch = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed, more, minid, scanned = 0, 0, nil, 0
local start = '-'
while minid == nil and scanned < batch do
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    scanned = scanned + 1
    local f = e[2]
    local u
    for j = 1, #f, 2 do if f[j] == 'u' then u = tonumber(f[j + 1]) end end
    if u == nil or u > now then minid = e[1]; break end
    start = '(' .. e[1]
  end
  if #entries < 100 then break end
end
if minid == nil and start ~= '-' then
  if scanned >= batch then more = 1 end
  local last = string.sub(start, 2)
  local ms = string.match(last, '^(%d+)-')
  minid = (tonumber(ms) + 1) .. '-0'
end
if minid ~= nil then removed = removed + redis.call('XTRIM', KEYS[1], 'MINID', '=', minid) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, batch)
if #expired == batch then more = 1 end
for i = 1, #expired, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #expired) do chunk[#chunk + 1] = expired[j] .. '-0' end
  removed = removed + redis.call('XDEL', KEYS[1], unpack(chunk))
  local members = {}
  for j = i, math.min(i + 499, #expired) do members[#members + 1] = expired[j] end
  redis.call('ZREM', KEYS[2], unpack(members))
end
return {removed, more}
"""

PURGE_FAMILY = """
-- KEYS: 1 family, 2 tokens, 3 shard deadline index (one shard slot); ARGV: 1 sid, 2 cutoff
-- Deletes the family when its deadline is still <= cutoff (it may have been refreshed since the
-- caller read the index). Returns {deleted (0/1), sub, token hex...}.
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return {0, ''} end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return {0, ''}
end
local sub = redis.call('HGET', KEYS[1], 'sub') or ''
local out = {1, sub}
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(field, -2) == ':c' then out[#out + 1] = string.sub(field, 1, -3) end
end
redis.call('DEL', KEYS[1], KEYS[2])
return out
"""

RATE_HIT = """
-- KEYS: 1 the attempts zset; ARGV: 1 now, 2 window, 3 limit, 4 a unique member
-- A moving window: drop attempts older than the window, then record this one when fewer than
-- ``limit`` remain (1) or refuse (0). The zset lives one window after its last attempt.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil(window)))
return 1
"""

DPOP_JTI_SEEN = """
-- KEYS: 1 the replay key; ARGV: 1 now, 2 until
-- Seen (1) when the key holds an ``until`` later than now; else record it (0). The value is the
-- caller's ``until`` and the TTL relative, like every other expiry here.
local untl = redis.call('GET', KEYS[1])
if untl and tonumber(untl) > tonumber(ARGV[1]) then return 1 end
local ttl = math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1]))
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
return 0
"""
