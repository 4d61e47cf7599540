"""The outbound stream, read by webhook senders through a Redis consumer group.

Triggers append messages to `s:outbound` (engine.state.redis_store); anything may read that
stream. A webhook sender reads it through its own consumer group so that any number of senders
(serving processes, `nba worker`) share the messages, each delivered by one of them, and a
message whose sender died or whose POST failed stays pending until it is delivered again or
given up and moved to the dead-letter stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from engine.errors import StoreUnavailable
from engine.state import keys

GROUP = "webhook"


@dataclass(frozen=True, slots=True)
class OutboundEntry:
    entry_id: str
    """The stream entry's id: what is acknowledged."""
    message: dict[str, Any]
    """The message as the trigger emitted it; its `id` is the same however often it is emitted."""
    attempts: int
    """Deliveries of this entry so far, this one included."""


def _entries(rows: list[Any], attempts: dict[str, int]) -> list[OutboundEntry]:
    out = []
    for entry_id, fields in rows:
        if not fields:  # deleted from the stream (trimmed) while pending: nothing left to send
            continue
        eid = entry_id.decode()
        out.append(OutboundEntry(eid, orjson.loads(fields[b"m"]), attempts.get(eid, 1)))
    return out


class OutboundStore:
    def __init__(self, client: aioredis.Redis, *, stream_maxlen: int = 1_000_000) -> None:
        self.client = client
        self.stream_maxlen = stream_maxlen

    async def ensure_group(self) -> None:
        """Create the senders' group at the stream's end, once: messages emitted before any
        webhook was configured were not meant for it. After that the group keeps its place, so
        messages emitted while every sender is down are delivered when one comes back."""
        try:
            await self.client.xgroup_create(keys.STREAM_OUTBOUND, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreUnavailable(f"state store error: {exc}") from exc
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[OutboundEntry]:
        try:
            reply = await self.client.xreadgroup(GROUP, consumer, {keys.STREAM_OUTBOUND: ">"}, count=count, block=block_ms)
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc
        return _entries(reply[0][1], {}) if reply else []

    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[OutboundEntry]:
        """Pending entries nobody acknowledged for `idle_ms` (a failed POST, or a sender that
        died), taken over by `consumer`, with how many times each has now been delivered."""
        try:
            pending = await self.client.xpending_range(keys.STREAM_OUTBOUND, GROUP, "-", "+", count, idle=idle_ms)
            if not pending:
                return []
            ids = [p["message_id"] for p in pending]
            rows = await self.client.xclaim(keys.STREAM_OUTBOUND, GROUP, consumer, idle_ms, ids)
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc
        # XCLAIM counts this claim as one more delivery.
        attempts = {p["message_id"].decode(): int(p["times_delivered"]) + 1 for p in pending}
        return _entries(rows, attempts)

    async def ack(self, entry_ids: list[str]) -> None:
        if entry_ids:
            try:
                await self.client.xack(keys.STREAM_OUTBOUND, GROUP, *entry_ids)
            except RedisError as exc:
                raise StoreUnavailable(f"state store error: {exc}") from exc

    async def dead_letter(self, entry: OutboundEntry, reason: str) -> None:
        """Keep a message given up on where an operator can see and replay it, then let it go."""
        record = {"m": orjson.dumps(entry.message), "entry_id": entry.entry_id, "attempts": entry.attempts, "reason": reason}
        try:
            # Not a transaction: the two streams may live on different cluster nodes. A crash
            # in between leaves the message both kept and pending, so it is sent again; the
            # receiver de-duplicates by the message id as it must anyway.
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(keys.STREAM_OUTBOUND_DEAD, record, maxlen=self.stream_maxlen, approximate=True)
            pipe.xack(keys.STREAM_OUTBOUND, GROUP, entry.entry_id)
            await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc
