"""Every customer's state, read in chunks: what a simulation over real customers starts from.

`RedisStore.read_customer` is one customer per round trip, the right shape for a decision. A
batch job wants thousands: this module walks the profile keys with SCAN (never KEYS, which
blocks the server) and reads each chunk of customers in one pipeline of the same read script,
decoded by the same code as `read_customer`. It only reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from engine.domain import CustomerState
from engine.errors import StoreUnavailable
from engine.state import keys
from engine.state.redis_store import customer_state
from engine.state.scripts import READ_CUSTOMER, script_sha

PROFILE_PATTERN = keys.profile("*")
"""SCAN pattern of every customer's profile: a customer is one who has a profile."""
_PREFIX, _SUFFIX = keys.profile("\0").split("\0")
_READ_SHA = script_sha(READ_CUSTOMER)


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
        """These customers' states in one round trip (the script is loaded first in the same
        pipeline, so a Redis that forgot it is no failure)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.script_load(READ_CUSTOMER)
        for cid in customer_ids:
            names = keys.state_keys(cid, now_ms, self.counters)
            pipe.evalsha(_READ_SHA, len(names), *names, self.recent_limit)
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc
        return [
            customer_state(cid, document, now_ms, self.counters) for cid, document in zip(customer_ids, replies[1:], strict=True)
        ]
