"""Lua scripts for the hot path, and running them without an extra round trip.

A decision's read is five hashes and a list; its write-back is counters for every treatment
shown plus the record. As separate commands that is ~15 commands to pack and parse per
decision, which costs more CPU in the client than the decision itself. One script per side
keeps it to one command each, and makes the write-back atomic (counters and record together).
All keys a script touches belong to one customer (one hash slot), so this works on Redis
Cluster too.

Scripts are called by SHA (EVALSHA) and loaded again only when Redis answers NOSCRIPT (after a
restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError

# KEYS: profile, cart, last, day caps, week caps, recent, flags, lifetime caps, topics, value
# facts, counters... ARGV: how many recent interactions (0: none).
# Returns one JSON document, an array in KEYS order, so the engine parses a customer with one
# C call instead of a dozen reply lists and a conversion per field. Every hash value the engine
# stores is JSON text already: JSON documents (profile fields, cart lines, newest event per
# type), or numbers (cap and cart quantities, flag expiries, topic times, value facts, all
# written by HINCRBY, HINCRBYFLOAT or from a Python number). So values are embedded as they
# are, and arrive parsed, numbers as numbers: the engine converts nothing field by field. Field
# names go through cjson.encode. A counter entry `<ts>:<cause>` is reduced to its time. A value
# written around the engine that is not JSON makes the document unreadable, which the engine
# reports as a store error naming the customer, and answers that decision from fallbacks.
READ_CUSTOMER = """
local enc = cjson.encode
local function hash(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[#t + 1] = enc(flat[i]) .. ':' .. flat[i + 1] end
  return '{' .. table.concat(t, ',') .. '}'
end
local function times(list)
  local t = {}
  for i = 1, #list do t[i] = string.match(list[i], '^%-?%d+') or '0' end
  return '[' .. table.concat(t, ',') .. ']'
end
local out = {hash(KEYS[1]), hash(KEYS[2]), hash(KEYS[3]), hash(KEYS[4]), hash(KEYS[5])}
local n = tonumber(ARGV[1])
if n > 0 then out[6] = '[' .. table.concat(redis.call('LRANGE', KEYS[6], 0, n - 1), ',') .. ']' else out[6] = '[]' end
for i = 7, 10 do out[i] = hash(KEYS[i]) end
for i = 11, #KEYS do out[i] = times(redis.call('ZRANGE', KEYS[i], 0, -1)) end
return '[' .. table.concat(out, ',') .. ']'
"""

# Value facts. KEYS: the facts hash. ARGV: (op, field, value) triples; op `+` adds, `<` keeps the
# smaller, `>` the larger (a missing field takes the value). Min and max need the old value, so
# they run here, next to the data, rather than as a read and a write from the engine.
APPLY_FACTS = """
for i = 1, #ARGV, 3 do
  local op, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == '+' then
    redis.call('HINCRBYFLOAT', KEYS[1], f, v)
  else
    local old = tonumber(redis.call('HGET', KEYS[1], f))
    local new = tonumber(v)
    if old == nil or old <= 0 or (op == '<' and new < old) or (op == '>' and new > old) then
      redis.call('HSET', KEYS[1], f, v)
    end
  end
end
return 1
"""

# Timers. KEYS: due, inflight, data. ARGV: now, limit, lease until.
# Claims what is due, and what an earlier worker claimed but never completed (its lease lapsed),
# moving each to `inflight`: a timer is handed to one worker at a time, and retried if it dies.
# A lapsed claim whose timer a new event started again (it waits in `due`, later) is dropped
# instead: taking it would fire the new schedule before its time. (SCHEDULE_TIMERS drops such a
# claim as it starts the timer again; this covers claims left by writers that did not.)
CLAIM_TIMERS = """
local out = {}
local function take(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[3], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[3], id) or '')
end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)) do
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) > now then redis.call('ZREM', KEYS[2], id) else take(id) end
end
local room = limit - #out / 2
if room > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, room)) do take(id) end
end
return out
"""

# KEYS: due, inflight, data. ARGV: how many to start, then (id, due, payload) per timer started
# and (id, latest due) per timer cancelled. Starting or cancelling a timer removes the claim on
# it, if a worker holds one: that is how the worker, which checks its claim just before it
# applies (HELD_TIMERS), learns that what it claimed was cancelled or started again. One script,
# so a worker never sees the claim still held next to a timer already changed. An event sent
# late leaves alone a timer that a newer one started: a start never moves it earlier, and a
# cancel reaches only a timer due by its latest due, one started no later than the cancelling
# event (SET_TIMER_MARK and CANCEL_TIMER_MARK treat its mark alike). A stored timer without a
# due is cancelled whatever the bound.
SCHEDULE_TIMERS = """
local function stored_later_than(id, due)
  local stored = redis.call('HGET', KEYS[3], id)
  local ok, held = false, nil
  if stored then ok, held = pcall(cjson.decode, stored) end
  local at = ok and type(held) == 'table' and tonumber(held.due)
  return at and at > tonumber(due) or false
end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local id, due = ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  if not stored_later_than(id, due) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[1], due, id)
    redis.call('HSET', KEYS[3], id, ARGV[4 + 3 * i])
  end
end
for i = 2 + 3 * n, #ARGV, 2 do
  local id = ARGV[i]
  if not stored_later_than(id, ARGV[i + 1]) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return 1
"""

# KEYS: inflight. ARGV: lease until, timer ids claimed with it.
# The ids still claimed under that lease: neither cancelled, nor started again, nor taken over by
# another worker after the lease lapsed. The worker applies only these.
HELD_TIMERS = """
local out = {}
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then table.insert(out, ARGV[i]) end
end
return out
"""

# KEYS: due, inflight, data. ARGV: lease until, timer ids fired. A claim that is no longer this
# worker's stays (another worker took it over and completes it); the payload stays while the
# timer waits in `due` again or someone holds a claim on it.
COMPLETE_TIMERS = """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score and tonumber(score) == lease then
    redis.call('ZREM', KEYS[2], id)
    score = false
  end
  if not score and not redis.call('ZSCORE', KEYS[1], id) then redis.call('HDEL', KEYS[3], id) end
end
return #ARGV - 1
"""

# KEYS: day caps, week caps, decision record, lifetime caps (treatment fields only).
# ARGV: day ttl, week ttl, record ttl, record, counter fields joined by spaces (one argument:
# every argument costs the client an encode, and there can be a dozen fields).
WRITE_DECISION = """
if ARGV[5] ~= '' then
  for f in string.gmatch(ARGV[5], '%S+') do
    redis.call('HINCRBY', KEYS[1], f, 1)
    redis.call('HINCRBY', KEYS[2], f, 1)
    if string.sub(f, 1, 2) == 't:' then redis.call('HINCRBY', KEYS[4], f, 1) end
  end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
return 1
"""

# A customer's topics. KEYS: the topics hash (`<liked|disliked|idea>:<topic>` -> newest time).
# ARGV: field, time, most fields kept. Every decision reads this hash whole, and topics are free
# text, so it keeps the newest time per topic and drops the topic heard of longest ago once it
# holds more than the limit.
REMEMBER_TOPIC = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if old == nil or tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then
  local flat = redis.call('HGETALL', KEYS[1])
  local oldest, at = nil, nil
  for i = 1, #flat, 2 do
    local t = tonumber(flat[i + 1])
    if at == nil or t < at then oldest, at = flat[i], t end
  end
  redis.call('HDEL', KEYS[1], oldest)
end
return 1
"""

# An occurrence added to a windowed counter (a sorted set of `<ts>:<cause>` by ts): entries from
# before `since` go, at most `kept` newest stay, and the key lapses `window` ms after its last
# entry. Shared, as text, by COUNT_OCCURRENCE, INCREMENT and FIRE_TIMER, which add it in their own
# scripts.
# Whether a timer's mark (its due, or `fired:<due>`) is for a later due than ARGV's: a newer start
# stands against an older start or cancel. Shared by SET_TIMER_MARK and CANCEL_TIMER_MARK.
_MARK_LATER_THAN = """
local function mark_later_than(key, due)
  local cur = redis.call('GET', key)
  local at = cur and tonumber((string.gsub(cur, '^fired:', '')))
  if not at then return false end
  return at > tonumber(due)
end
"""

_ADD_OCCURRENCE = """
local function add_occurrence(key, member, ts, since, window, kept)
  redis.call('ZADD', key, ts, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. since)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(kept) + 1))
  redis.call('PEXPIRE', key, window)
end
"""

# An occurrence counted against a threshold. KEYS: the counter (sorted set of `<ts>:<cause>`), the
# customer's flags (one customer: one slot), and, when `then` sends messages, the mark of the
# timer that sends them should the engine stop before it does (set here on the crossing, so the
# timer sends only what was reached). ARGV: member, its time, the engine's time now, window ms,
# most entries kept, at, flag to set ('' for none), its expiry, the mark's value and lifetime ms
# ('' and 0 for none), flags to clear...
# Returns the count within the window of now after this occurrence, or 0 for an occurrence from
# before that window (it completes nothing). Counting and acting happen in one script, so of
# concurrent events exactly one sees the count reach `at`, and `then`'s flags change with it or
# not at all. A retried event adds the same member again: the count does not move.
COUNT_OCCURRENCE = (
    _ADD_OCCURRENCE
    + """
local ts, now, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local since = now - window
add_occurrence(KEYS[1], ARGV[1], ts, since, window, ARGV[5])
if ts < since then return 0 end
local n = redis.call('ZCARD', KEYS[1])
if n == tonumber(ARGV[6]) then
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], ARGV[7], ARGV[8]) end
  if ARGV[9] ~= '' then redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[10]) end
  for i = 11, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return n
"""
)

# KEYS: a timer's mark in its customer's slot (keys.timer_mark). ARGV: the timer's due time, how
# long to keep the mark (ms). Set unless the mark already names a later due time, pending or fired:
# a late event must not restart the timer a newer one started, nor again one that fired since.
SET_TIMER_MARK = (
    _MARK_LATER_THAN
    + """
if mark_later_than(KEYS[1], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
)

# KEYS: a timer's mark. ARGV: the latest due the cancel reaches (see SCHEDULE_TIMERS).
CANCEL_TIMER_MARK = (
    _MARK_LATER_THAN
    + """
if mark_later_than(KEYS[1], ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
)

# KEYS: the customer's `last` hash. ARGV: event type, the event's time, its entry (JSON with
# `ts`), the engine's time now ('' for none). Keeps the newest event of each type by its own time,
# not by arrival: a backfilled complaint from last month must not replace yesterday's, which a
# 7-day suppression counts from. An entry dated after now (a clock or unit mistake) is no newer
# than now, so it does not stand against every real event for years.
SET_LAST = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  local at, now = ok and type(old) == 'table' and tonumber(old.ts), tonumber(ARGV[4])
  if at and at > tonumber(ARGV[2]) and (now == nil or at <= now) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: a counter (sorted set of `<ts>:<cause>` by ts). ARGV: member, its time, the start of the
# window (entries before it go), the window ms (the key lapses that long after its last entry),
# most entries kept. One command rather than four: page views are counted by the thousand.
INCREMENT = (
    _ADD_OCCURRENCE
    + """
add_occurrence(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""
)

# KEYS: the customer's profile, its field times. ARGV: the event's time, the engine's time now
# ('' for none), then field, value pairs. Each field keeps the value of the newest event by its own
# time (equal times: the later arrival): a nightly import of yesterday's profile must not undo what
# the customer changed this morning. A time after now counts as now, as in SET_LAST.
SET_PROFILE = """
local ts, now = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local at = tonumber(redis.call('HGET', KEYS[2], ARGV[i]))
  if at == nil or at <= ts or (now ~= nil and at > now) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
  end
end
return 1
"""

# A fired timer's writes to its customer, made only if the timer is still the customer's own:
# its mark (KEYS[1], set with the timer, deleted by a cancel, overwritten by a restart) must
# still name this due time (ARGV[1]), or name it as fired already (a retry after a worker died
# before completing). A cancel and this script run on the same slot, so one of them is first:
# either the timer's flags land and the cancelling event's writes come after them, or the mark
# is gone and nothing is written. KEYS: mark, flags, then the counters of the increments, in
# order. ARGV: due, how long the fired mark is kept (ms), the writes as JSON with every number
# as a string, which Lua keeps exact ({set: {flag: expiry}, clear: [...], inc: [[member, ts,
# since, window ms, most entries kept], ...]}). A timer's `then` cannot count to a threshold
# (the rules refuse it), so there is none here. Returns 1 when written, 0 when the timer is no
# longer the customer's.
FIRE_TIMER = (
    _ADD_OCCURRENCE
    + """
local mark = redis.call('GET', KEYS[1])
if mark ~= ARGV[1] and mark ~= 'fired:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'fired:' .. ARGV[1], 'PX', ARGV[2])
local fx = cjson.decode(ARGV[3])
for name, expiry in pairs(fx.set) do redis.call('HSET', KEYS[2], name, expiry) end
for _, name in ipairs(fx.clear) do redis.call('HDEL', KEYS[2], name) end
for i, inc in ipairs(fx.inc) do add_occurrence(KEYS[2 + i], inc[1], inc[2], inc[3], inc[4], inc[5]) end
return 1
"""
)

SCRIPTS: Mapping[str, str] = {
    "read": READ_CUSTOMER,
    "write_decision": WRITE_DECISION,
    "claim_timers": CLAIM_TIMERS,
    "apply_facts": APPLY_FACTS,
    "complete_timers": COMPLETE_TIMERS,
    "schedule_timers": SCHEDULE_TIMERS,
    "held_timers": HELD_TIMERS,
}


def script_sha(source: str) -> str:
    """Redis names a script by the SHA-1 of its source (what EVALSHA takes)."""
    return hashlib.sha1(source.encode()).hexdigest()


class Scripts:
    def __init__(self, client: aioredis.Redis, sources: Mapping[str, str]) -> None:
        self.client = client
        self.sources = dict(sources)
        self.shas = {name: script_sha(src) for name, src in sources.items()}

    async def load_all(self) -> None:
        """Load every script up front, so the first decisions do not pay for NOSCRIPT."""
        for name in self.sources:
            await self._load(name)

    async def _load(self, name: str) -> None:
        await self.client.script_load(self.sources[name])

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.client.evalsha(self.shas[name], len(keys), *keys, *args)
        except NoScriptError:
            await self._load(name)
            return await self.client.evalsha(self.shas[name], len(keys), *keys, *args)
