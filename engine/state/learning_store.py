"""Redis side of online learning: reading the logs, model snapshots, leases, reward windows.

All keys of one model share the hash tag `{m:<model>}`, so a snapshot and the bookkeeping it
covers (reward windows settled, positives recorded, stream positions reached) are written by one
script — on Redis Cluster too. That is what makes learning exactly-once: a restart resumes from
the last snapshot and reads the stream from the position it records, so anything learned after
it is learned again exactly once, and nothing before it is.

The same script refuses a snapshot from a learner that no longer holds the model's lease, or
that did not start from the snapshot now stored: a learner that stalled past its lease would
otherwise overwrite the work of the one that took over.

The stream is read with plain reads from a position, never through the consumer group: the group
only records, once a snapshot is stored, how far learning is done (its last-delivered id, nothing
pending), for what trims or watches the stream. Reading changes nothing in Redis, so a reader
that does not know it lost its lease cannot hide entries from the one that took over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from engine.domain import StoredDecision
from engine.errors import StoreUnavailable
from engine.state import keys

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# KEYS: snapshot, served, version counter, positives, positives expiry, due, lease.
# ARGV: owner ('' = no lease), expected version, learner, weights ('' with has_weights 0), has_weights,
#       meta JSON without its version, now (ms, 0 = no pruning), n settled, n positives,
#       then the settled members, then (member, weight, forget at ms) per positive.
# Returns the version now stored, -1 when the lease is another's, -2 when another snapshot was stored.
_SAVE = """
if ARGV[1] ~= '' and redis.call('get', KEYS[7]) ~= ARGV[1] then return -1 end
local current = tonumber(redis.call('hget', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[2]) then return -2 end
local version = current
if ARGV[5] == '1' then
  version = redis.call('incr', KEYS[3])
  -- A counter behind the snapshot (lost, or reset) would hand out a version serving ignores as old.
  if version <= current then
    version = current + 1
    redis.call('set', KEYS[3], version)
  end
end
-- The version is only known here; splicing it in keeps the caller's JSON as it was encoded.
local rest = string.sub(ARGV[6], 2)
if rest ~= '}' then rest = ',' .. rest end
local meta = '{"version":' .. version .. rest
redis.call('hset', KEYS[1], 'version', version, 'learner', ARGV[3], 'meta', meta)
if ARGV[5] == '1' then redis.call('hset', KEYS[2], 'version', version, 'weights', ARGV[4], 'meta', meta) end
local n_settled, n_positives = tonumber(ARGV[8]), tonumber(ARGV[9])
local at = 10
for i = at, at + n_settled - 1 do redis.call('zrem', KEYS[6], ARGV[i]) end
at = at + n_settled
for i = at, at + 3 * n_positives - 1, 3 do
  redis.call('hset', KEYS[4], ARGV[i], ARGV[i + 1])
  redis.call('zadd', KEYS[5], ARGV[i + 2], ARGV[i])
end
local now = tonumber(ARGV[7])
if now > 0 then
  -- A bounded share per snapshot, so one publication never blocks Redis for long.
  local gone = redis.call('zrangebyscore', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(gone) do
    redis.call('hdel', KEYS[4], member)
    redis.call('zrem', KEYS[5], member)
  end
end
return version
"""

# KEYS: the stream. ARGV: group, position (an entry id), most pending entries to acknowledge.
# One key, so this runs on Redis Cluster too; the group's fields are looked up by name, so the
# script reads XINFO from Redis 6.2 (fewer fields) as well as from later versions.
_ACKNOWLEDGE = """
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
for _, info in ipairs(redis.call('xinfo', 'groups', KEYS[1])) do
  local name, last
  for i = 1, #info, 2 do
    if info[i] == 'name' then name = info[i + 1] elseif info[i] == 'last-delivered-id' then last = info[i + 1] end
  end
  -- A learner that stored an older snapshot may acknowledge after a newer one did: never move back.
  if name == ARGV[1] and before(last, ARGV[2]) then redis.call('xgroup', 'setid', KEYS[1], ARGV[1], ARGV[2]) end
end
local ids = {}
for i, row in ipairs(redis.call('xpending', KEYS[1], ARGV[1], '-', ARGV[2], tonumber(ARGV[3]))) do ids[i] = row[1] end
if #ids > 0 then redis.call('xack', KEYS[1], ARGV[1], unpack(ids)) end
return #ids
"""
ACK_BATCH = 1000


class SnapshotRefused(Exception):
    """Another learner holds the model's lease or has stored a newer snapshot: this one's work
    must not be published, and its entries must not be acknowledged."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    stream: str
    id: str
    fields: dict[bytes, bytes]

    @property
    def order(self) -> tuple[int, int]:
        return stream_order(self.id)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    learner: bytes
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServedWeights:
    version: int
    weights: bytes
    meta: dict[str, Any]


def stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class LearningStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._save = client.register_script(_SAVE)
        self._acknowledge = client.register_script(_ACKNOWLEDGE)

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_after(self, stream: str, after: str, *, count: int, block_ms: int | None) -> list[StreamEntry]:
        """Entries of `stream` after the id `after` (exclusive), oldest first; with `block_ms`, wait
        that long for one when there is none yet. A plain read: it changes nothing in Redis."""
        try:
            reply = await self.client.xread({stream: after}, count=count, block=block_ms)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"reading {stream}: {exc}") from exc
        out: list[StreamEntry] = []
        for name, entries in reply or []:
            name = name.decode() if isinstance(name, bytes) else name
            out.extend(StreamEntry(name, entry_id.decode(), fields) for entry_id, fields in entries)
        return out

    async def acknowledge(self, stream: str, group: str, position: str) -> int:
        """Mark everything up to `position` as done for `group`: its last-delivered id moves forward
        to it (never back), and entries at or before it still pending there are acknowledged, up to
        ACK_BATCH per call. Returns how many were acknowledged."""
        return int(await self._acknowledge(keys=[stream], args=[group, position, ACK_BATCH]))

    async def decisions(self, decision_ids: Sequence[str]) -> list[StoredDecision | None]:
        if not decision_ids:
            return []
        # Not MGET: the records belong to different customers, so to different slots on Redis Cluster.
        pipe = self.client.pipeline(transaction=False)
        for d in decision_ids:
            pipe.get(keys.decision(d))
        return [StoredDecision.from_stored(orjson.loads(r)) if r else None for r in await pipe.execute()]

    async def decisions_with_ttl(self, decision_ids: Sequence[str]) -> list[tuple[StoredDecision | None, int]]:
        """Each record with the ms it has left to live (negative: no expiry set), so what is
        remembered about an impression can be forgotten when its record is."""
        if not decision_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for d in decision_ids:
            pipe.get(keys.decision(d))
            pipe.pttl(keys.decision(d))
        replies = await pipe.execute()
        return [
            (StoredDecision.from_stored(orjson.loads(raw)) if raw else None, int(ttl))
            for raw, ttl in zip(replies[::2], replies[1::2], strict=True)
        ]

    # -- reward windows ----------------------------------------------------------------------

    async def open_windows(self, model_id: str, windows: dict[str, int]) -> None:
        """`decision|treatment` -> ms when an unanswered impression becomes a negative."""
        if windows:
            await self.client.zadd(keys.model_due(model_id), windows, nx=True)

    async def due_windows(self, model_id: str, now_ms: int, limit: int) -> list[tuple[str, int]]:
        rows = await self.client.zrangebyscore(keys.model_due(model_id), "-inf", now_ms, start=0, num=limit, withscores=True)
        return [(m.decode(), int(s)) for m, s in rows]

    async def positive_weights(self, model_id: str, members: Sequence[str]) -> list[float | None]:
        """The strongest positive weight already learned for each impression, if any."""
        if not members:
            return []
        found = await self.client.hmget(keys.model_positives(model_id), list(members))
        return [float(v) if v is not None else None for v in found]

    async def impressions(self, model_id: str, members: Sequence[str]) -> list[tuple[float | None, bool]]:
        """For each impression: the strongest positive weight learned so far, and whether its
        reward window is still open (not yet settled by a snapshot)."""
        if not members:
            return []
        pipe = self.client.pipeline(transaction=True)  # one slot: both answers describe the same moment
        pipe.hmget(keys.model_positives(model_id), list(members))
        for m in members:
            pipe.zscore(keys.model_due(model_id), m)
        found, *scores = await pipe.execute()
        return [(float(v) if v is not None else None, s is not None) for v, s in zip(found, scores, strict=True)]

    # -- snapshots ---------------------------------------------------------------------------

    async def save_snapshot(
        self,
        model_id: str,
        learner: bytes,
        weights: bytes | None,
        meta: dict[str, Any],
        settled_windows: Sequence[str],
        positives: Mapping[str, tuple[float, int]],
        version: int,
        *,
        owner: str | None = None,
        now_ms: int = 0,
    ) -> int:
        """Store the learner, settle the windows and record the positives it includes, atomically:
        a crash before this leaves all of it to be learned again, once. With `weights`, also
        publish them as a new served version (returned); without, `version` stays current.

        `version` is the snapshot version the caller restored or last stored, and `owner` (when
        given) the lease it learns under: if either no longer holds, nothing is written and
        SnapshotRefused is raised. `positives` maps an impression to its strongest weight and the
        time (ms) it may be forgotten — when its decision record is gone, no later feedback can
        be learned for it; those due by `now_ms` are dropped here."""
        body = orjson.dumps({k: v for k, v in meta.items() if k != "version"})
        args: list[str | bytes | int | float] = [
            owner or "",
            version,
            learner,
            weights or b"",
            1 if weights is not None else 0,
            body,
            now_ms,
            len(settled_windows),
            len(positives),
            *settled_windows,
        ]
        for member, (weight, forget_at) in positives.items():
            args += [member, weight, forget_at]
        script_keys = [
            keys.model_snapshot(model_id),
            keys.model_served(model_id),
            keys.model_version(model_id),
            keys.model_positives(model_id),
            keys.model_positives_until(model_id),
            keys.model_due(model_id),
            keys.model_lease(model_id),
        ]
        stored = int(await self._save(keys=script_keys, args=args))
        if stored == -1:
            raise SnapshotRefused(f"model {model_id}: the lease is no longer held by {owner}")
        if stored == -2:
            raise SnapshotRefused(f"model {model_id}: another learner stored a snapshot after version {version}")
        if weights is not None:
            await self.client.publish(keys.MODEL_UPDATES_CHANNEL, f"{model_id}:{stored}")
        return stored

    async def subscribe_updates(self) -> Any:
        """A pub/sub subscription to model announcements (`<model>:<version>` messages)."""
        pubsub = self.client.pubsub()
        await pubsub.subscribe(keys.MODEL_UPDATES_CHANNEL)
        return pubsub

    async def load_snapshot(self, model_id: str) -> Snapshot | None:
        raw = await self.client.hgetall(keys.model_snapshot(model_id))
        if not raw:
            return None
        return Snapshot(int(raw[b"version"]), raw[b"learner"], orjson.loads(raw[b"meta"]))

    async def served_version(self, model_id: str) -> int:
        raw = await self.client.hget(keys.model_served(model_id), "version")
        return int(raw) if raw else 0

    async def load_served(self, model_id: str) -> ServedWeights | None:
        raw = await self.client.hgetall(keys.model_served(model_id))
        if not raw:
            return None
        return ServedWeights(int(raw[b"version"]), raw[b"weights"], orjson.loads(raw[b"meta"]))

    # -- leases: one learner process per model at a time --------------------------------------

    async def acquire_lease(self, model_id: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self.client.set(keys.model_lease(model_id), owner, nx=True, px=ttl_ms))

    async def renew_lease(self, model_id: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[keys.model_lease(model_id)], args=[owner, ttl_ms]))

    async def release_lease(self, model_id: str, owner: str) -> None:
        await self._release(keys=[keys.model_lease(model_id)], args=[owner])
