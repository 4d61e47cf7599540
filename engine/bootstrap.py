"""The composition root: builds the engine once, for every front end in the process.

HTTP and gRPC share what this builds (one Redis pool, one rule registry, one clock), so both
answer from the same state and the same rules.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis import asyncio as aioredis

from engine.clock import Clock, SystemClock
from engine.decision.service import DecisionService
from engine.errors import StoreUnavailable
from engine.rules.registry import RuleRegistry
from engine.settings import Settings
from engine.state.connect import open_redis, store_for
from engine.state.embedded import EmbeddedRedis
from engine.state.redis_store import RedisStore


@dataclass
class Engine:
    settings: Settings
    service: DecisionService
    store: RedisStore
    rules: RuleRegistry
    clock: Clock
    redis_location: str

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        redis_ok = await self.store.ping()
        detail: dict[str, object] = {
            "redis": "ok" if redis_ok else "unreachable",
            "rules_version": self.rules.current.version,
            "treatments": len(self.rules.current.treatments),
        }
        return redis_ok, detail


@asynccontextmanager
async def open_engine(
    settings: Settings, *, clock: Clock | None = None, client: aioredis.Redis | None = None
) -> AsyncIterator[Engine]:
    """Load the rules first (a bad rule set refuses to start before any connection is made)."""
    rules = RuleRegistry.from_directory(settings.rules_dir)
    embedded: EmbeddedRedis | None = None
    owns_client = client is None
    if client is None:
        client, embedded = open_redis(settings)
    location = embedded.url if embedded else (settings.redis_url or "injected client")
    store = store_for(client, settings)
    clock = clock or SystemClock()
    service = DecisionService(store, rules, clock, max_batch_events=settings.max_batch_events)
    with contextlib.suppress(StoreUnavailable):
        await store.prepare()  # Redis may come up later; scripts then load on first use
    try:
        yield Engine(settings, service, store, rules, clock, location)
    finally:
        if owns_client:
            await client.aclose()
        if embedded is not None:
            embedded.close()
