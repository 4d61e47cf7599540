"""Durable timers against real Redis: fire once, survive a dead worker, cancel, catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.decision.timers import TimerWorker
from engine.domain import Event
from engine.rules.registry import RuleRegistry
from engine.state import keys
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_RULES, T0

pytestmark = pytest.mark.anyio
MINUTE = 60_000


@pytest.fixture
async def world(redis_async: aioredis.Redis, clock: FixedClock) -> AsyncIterator[tuple[DecisionService, TimerWorker, RedisStore]]:
    store = RedisStore(redis_async, decision_ttl_s=86_400, dedup_ttl_s=86_400, recent_limit=10, stream_maxlen=100_000)
    await store.prepare()
    rules = RuleRegistry.from_directory(EXAMPLE_RULES)
    yield DecisionService(store, rules, clock), TimerWorker(store, rules, clock, batch=7, lease_ms=MINUTE), store
    await store.aclose()


World = tuple[DecisionService, TimerWorker, RedisStore]
_n = iter(range(10**6))


async def cart_add(service: DecisionService, customer: str) -> None:
    await service.record_events([Event(f"e{next(_n)}", customer, "cart_add", attributes={"sku": "A", "price": 5})])


def flag(redis_sync: Redis, customer: str) -> int | None:
    raw = redis_sync.hget(keys.flags(customer), "cart_abandoned")
    return int(raw) if raw else None


async def test_a_timer_fires_once_when_due_and_sets_the_flag_from_its_due_time(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, worker, _ = world
    await cart_add(service, "c1")
    assert await worker.fire_due() == 0
    clock.advance(minutes=45)  # fired late: the flag still runs from the due time
    assert await worker.fire_due() == 1
    assert flag(redis_sync, "c1") == T0 + 30 * MINUTE + 3 * 86_400_000
    assert await worker.fire_due() == 0
    assert redis_sync.hlen(keys.timer_data(keys.timer_shard("c1"))) == 0, "nothing left behind"


async def test_a_cancelled_timer_never_fires(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, _ = world
    await cart_add(service, "c1")
    await service.record_events([Event("co", "c1", "checkout")])
    clock.advance(hours=1)
    assert await worker.fire_due() == 0
    assert flag(redis_sync, "c1") is None


async def test_a_timer_claimed_by_a_dead_worker_fires_after_its_lease(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)
    shard = keys.timer_shard("c1")
    claimed = await store.claim_timers(shard, clock.now_ms(), 10, MINUTE)  # ... and the worker dies here
    assert [tid for tid, _ in claimed] == ["cart_abandonment|c1"]
    assert await worker.fire_due() == 0, "claimed and leased: not fired twice at once"
    assert flag(redis_sync, "c1") is None
    clock.advance(minutes=2)
    assert await worker.fire_due() == 1, "the lease lapsed: another worker fires it"
    assert flag(redis_sync, "c1") is not None


async def test_a_worker_that_fell_behind_catches_up(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, _ = world
    customers = [f"c{i}" for i in range(60)]
    for c in customers:
        await cart_add(service, c)
    clock.advance(days=1)  # nobody fired anything for a day
    assert await worker.fire_due() == 60, "more than one batch per shard"
    assert all(flag(redis_sync, c) for c in customers)


async def test_timers_survive_a_restart(
    world: World, clock: FixedClock, redis_url: str, redis_sync: Redis, tmp_path: Path
) -> None:
    service, _, _ = world
    await cart_add(service, "c1")
    # A new process: new client, new store, new worker; the timer is in Redis, not in memory.
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = RedisStore(client, decision_ttl_s=60, dedup_ttl_s=60, recent_limit=10, stream_maxlen=1000)
        fresh = TimerWorker(store, RuleRegistry.from_directory(EXAMPLE_RULES), clock)
        clock.advance(minutes=31)
        assert await fresh.fire_due() == 1
        await store.aclose()
    finally:
        await client.aclose()
    assert flag(redis_sync, "c1") is not None


async def test_flight_delay_emits_one_outbound_message(world: World, redis_sync: Redis) -> None:
    service, _, _ = world
    event = Event("fd1", "c1", "flight_delayed", attributes={"delay_minutes": 60})
    await service.record_events([event])
    await service.record_events([event])  # a retry is a duplicate: no second message
    messages = [orjson.loads(f[b"m"]) for _, f in redis_sync.xrange(keys.STREAM_OUTBOUND)]
    assert [(m["id"], m["channel"], m["treatment"]) for m in messages] == [
        ("flight_delay_apology:fd1", "push", "apology_upgrade")
    ]
