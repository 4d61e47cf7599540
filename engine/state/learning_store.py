"""Redis side of online learning: consuming the logs, model snapshots, leases, reward windows.

All keys of one model share the hash tag `{m:<model>}`, so a snapshot and the bookkeeping it
covers (reward windows settled, stream positions reached) are written in one MULTI/EXEC — on
Redis Cluster too. That is what makes learning exactly-once: a restart resumes from the last
snapshot, and anything learned after it is learned again exactly once, because the stream
entries and windows it covered were not yet marked done.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        positives: dict[str, float],
        version: int,
    ) -> int:
        """Store the learner, settle the windows and record the positives it includes, atomically:
        a crash before this leaves all of it to be learned again, once. With `weights`, also
        publish them as a new served version (returned); without, `version` stays current."""
        if weights is not None:
            version = int(await self.client.incr(keys.model_version(model_id)))
        meta = {**meta, "version": version}
        packed = orjson.dumps(meta)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.model_snapshot(model_id), mapping={"version": version, "learner": learner, "meta": packed})
        if weights is not None:
            pipe.hset(keys.model_served(model_id), mapping={"version": version, "weights": weights, "meta": packed})
        if positives:
            pipe.hset(keys.model_positives(model_id), mapping=positives)
        if settled_windows:
            pipe.zrem(keys.model_due(model_id), *settled_windows)
            pipe.hdel(keys.model_positives(model_id), *settled_windows)
        await pipe.execute()
        if weights is not None:
            await self.client.publish(keys.MODEL_UPDATES_CHANNEL, f"{model_id}:{version}")
        return version

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
