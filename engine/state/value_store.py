"""Redis side of customer value: batch reads of value facts, lifetime models, equity snapshots.

The hot path reads a customer's facts with the rest of the customer (engine.state.redis_store);
this module serves the batch jobs, which walk every customer with SCAN in chunks (never KEYS,
which blocks the server), and the model follower of each serving process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from engine.errors import StoreUnavailable
from engine.state import keys


@contextlib.contextmanager
def _guarded() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise StoreUnavailable(f"state store error: {exc}") from exc


class ValueStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def scan_facts(self, chunk: int = 5_000) -> AsyncIterator[list[tuple[str, dict[str, float]]]]:
        """Every customer's value facts, `chunk` keys at a time (a key seen twice by SCAN, which
        can happen while keys are added, is given once)."""
        seen: set[str] = set()
        batch: list[str] = []
        with _guarded():
            async for raw in self.client.scan_iter(match=keys.VALUE_FACTS_PATTERN, count=chunk):
                key = raw.decode()
                if key in seen:
                    continue
                seen.add(key)
                batch.append(key)
                if len(batch) >= chunk:
                    yield await self._read(batch)
                    batch = []
            if batch:
                yield await self._read(batch)

    async def _read(self, batch: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        pipe = self.client.pipeline(transaction=False)
        for key in batch:
            pipe.hgetall(key)
        rows = await pipe.execute()
        return [
            (keys.customer_of_value_facts(key), {k.decode(): float(v) for k, v in row.items()})
            for key, row in zip(batch, rows, strict=True)
            if row
        ]

    async def save_lifetime_model(self, model: dict[str, Any]) -> int:
        """Store a fitted model under a new version and make it current; returns the version."""
        with _guarded():
            version = int(await self.client.incr(keys.LIFETIME_VERSION))
            payload = orjson.dumps({**model, "version": version})
            pipe = self.client.pipeline(transaction=True)
            pipe.set(keys.lifetime_model_version(version), payload)
            pipe.set(keys.LIFETIME_MODEL, payload)
            await pipe.execute()
        return version

    async def load_lifetime_model(self) -> dict[str, Any] | None:
        with _guarded():
            raw = await self.client.get(keys.LIFETIME_MODEL)
        return orjson.loads(raw) if raw else None

    async def write_equity(self, rows: Sequence[tuple[str, float, str]], at_ms: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for customer_id, equity, tier in rows:
            pipe.hset(keys.equity_snapshot(customer_id), mapping={"equity": repr(equity), "tier": tier, "at": at_ms})
        with _guarded():
            await pipe.execute()

    async def save_equity_summary(self, summary: dict[str, Any]) -> None:
        with _guarded():
            await self.client.set(keys.EQUITY_SUMMARY, orjson.dumps(summary))

    async def load_equity_summary(self) -> dict[str, Any] | None:
        with _guarded():
            raw = await self.client.get(keys.EQUITY_SUMMARY)
        return orjson.loads(raw) if raw else None

    async def read_facts(self, customer_ids: Sequence[str], chunk: int = 5_000) -> dict[str, dict[str, float]]:
        """Value facts of the given customers (absent ones are left out), chunk by chunk."""
        out: dict[str, dict[str, float]] = {}
        ids = list(customer_ids)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with _guarded():
                for cid, facts in await self._read([keys.value_facts(c) for c in part]):
                    out[cid] = facts
        return out
