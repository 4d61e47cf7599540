"""Redis side of online learning: consuming the logs, model snapshots, leases, reward windows.

All keys of one model share the hash tag `{m:<model>}`, so a snapshot and the bookkeeping it
covers (reward windows settled, positives recorded, stream positions reached) are written by one
script — on Redis Cluster too. That is what makes learning exactly-once: a restart resumes from
the last snapshot, and anything learned after it is learned again exactly once, because the
stream entries and windows it covered were not yet marked done.

The same script refuses a snapshot from a learner that no longer holds the model's lease, or
that did not start from the snapshot now stored: a learner that stalled past its lease would
otherwise overwrite the work of the one that took over, whose entries are already acknowledged.
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

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, streams: dict[str, str], group: str, consumer: str, *, count: int, block_ms: int | None
    ) -> list[StreamEntry]:
        """Entries per stream after the given id: `>` for new ones, an id to page through this
        consumer's delivered-but-unacknowledged ones (`0` from the start)."""
        try:
            reply = await self.client.xreadgroup(group, consumer, streams, count=count, block=block_ms)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"reading {', '.join(streams)}: {exc}") from exc
        out: list[StreamEntry] = []
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in entries:
                if fields:  # a pending entry trimmed from the stream comes back empty
                    out.append(StreamEntry(name, entry_id.decode(), fields))
        return out

    async def ack(self, group: str, entries: Sequence[StreamEntry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.id)
        if by_stream:
            pipe = self.client.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xack(stream, group, *ids)
            await pipe.execute()

    async def decisions(self, decision_ids: Sequence[str]) -> list[StoredDecision | None]:
        if not decision_ids:
            return []
        raw = await self.client.mget([keys.decision(d) for d in decision_ids])
        return [StoredDecision(**orjson.loads(r)) if r else None for r in raw]

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
            (StoredDecision(**orjson.loads(raw)) if raw else None, int(ttl))
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

    async def claim_stale(self, stream: str, group: str, consumer: str) -> int:
        """Take over entries delivered to consumers that died, so they are learned (once) here."""
        claimed, cursor = 0, "0-0"
        while True:
            reply = await self.client.xautoclaim(stream, group, consumer, min_idle_time=0, start_id=cursor, count=1000)
            cursor, ids = reply[0], reply[1]
            claimed += len(ids)
            if cursor in (b"0-0", "0-0"):
                return claimed

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
