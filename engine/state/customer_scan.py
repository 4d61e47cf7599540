"""Every customer's state, read in chunks: what a simulation over real customers starts from.

`RedisStore.read_customer` is one customer per round trip, the right shape for a decision. A
batch job wants thousands: this module walks the profile keys with SCAN (never KEYS, which
blocks the server) and reads each chunk of customers in one pipeline, decoding the replies
exactly as `read_customer` does. It only reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from engine.domain import CustomerState
from engine.errors import StoreUnavailable
from engine.state import keys
from engine.state.redis_store import _cart, _floats, _ints, _loads_hash

PROFILE_PATTERN = keys.profile("*")
"""SCAN pattern of every customer's profile: a customer is one who has a profile."""
_PREFIX, _SUFFIX = keys.profile("\0").split("\0")


def customer_of_profile(key: str) -> str:
    return key[len(_PREFIX) : len(key) - len(_SUFFIX)]


class CustomerScan:
    """Reads customers as `read_customer` would at `now_ms`, with `recent_limit` interactions
    and the given counters, `chunk` customers per round trip."""

    def __init__(self, client: aioredis.Redis, *, recent_limit: int, counters: Sequence[str] = ()) -> None:
        self.client = client
        self.recent_limit = recent_limit
        self.counters = tuple(counters)

    async def scan(self, now_ms: int, *, chunk: int = 1_000, limit: int | None = None) -> AsyncIterator[list[CustomerState]]:
        """Customers with a profile, chunk by chunk, at most `limit` of them (a key SCAN returns
        twice, which can happen while keys are added, is read once)."""
        seen: set[str] = set()
        batch: list[str] = []
        try:
            async for raw in self.client.scan_iter(match=PROFILE_PATTERN, count=chunk):
                cid = customer_of_profile(raw.decode())
                if cid in seen:
                    continue
                if limit is not None and len(seen) >= limit:
                    break
                seen.add(cid)
                batch.append(cid)
                if len(batch) >= chunk:
                    yield await self.read(batch, now_ms)
                    batch = []
            if batch:
                yield await self.read(batch, now_ms)
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc

    async def read(self, customer_ids: Sequence[str], now_ms: int) -> list[CustomerState]:
        """These customers' states in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cid in customer_ids:
            self._queue(pipe, cid, now_ms)
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc
        per = 10 + len(self.counters)
        return [self._decode(cid, replies[i * per : (i + 1) * per], now_ms) for i, cid in enumerate(customer_ids)]

    def _queue(self, pipe: Any, cid: str, now_ms: int) -> None:
        for key in (keys.profile(cid), keys.cart(cid), keys.last(cid), keys.caps_day(cid, now_ms), keys.caps_week(cid, now_ms)):
            pipe.hgetall(key)
        pipe.lrange(keys.recent(cid), 0, self.recent_limit - 1)
        for key in (keys.flags(cid), keys.caps_total(cid), keys.topics(cid), keys.value_facts(cid)):
            pipe.hgetall(key)
        for name in self.counters:
            pipe.zrange(keys.counter(cid, name), 0, -1)

    def _decode(self, cid: str, res: list[Any], now_ms: int) -> CustomerState:
        return CustomerState(
            customer_id=cid,
            profile=_loads_hash(res[0]),
            cart=_cart(res[1]),
            last=_loads_hash(res[2]),
            caps_day=_ints(res[3]),
            caps_week=_ints(res[4]),
            recent=[orjson.loads(x) for x in res[5]],
            flags={k: v for k, v in _ints(res[6]).items() if v > now_ms},
            caps_total=_ints(res[7]),
            topics=_ints(res[8]),
            facts=_floats(res[9]),
            counters={name: [int(m.split(b":", 1)[0]) for m in res[10 + i]] for i, name in enumerate(self.counters)},
        )
