"""Durable timers against real Redis: fire once, survive a dead worker, cancel (also after a claim), catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.decision.timers import TimerWorker
from engine.domain import Event
from engine.rules.registry import RuleRegistry
from engine.rules.triggers import TriggerEffects
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


async def fires_nothing_yet(worker: TimerWorker, redis_sync: Redis, why: str = "") -> None:
    """No timer fires now, and c1 has no flag yet."""
    assert await worker.fire_due() == 0, why
    assert flag(redis_sync, "c1") is None


async def fires_when_due(world: World, clock: FixedClock, redis_sync: Redis, due: int) -> None:
    """c1's cart wait is pending until `due`, fires once the clock gets there, and its flag runs from `due`."""
    _, worker, store = world
    assert await store.pending_timers(keys.timer_shard("c1")) == {"cart_abandonment|c1": due}
    clock.set(due)
    assert await worker.fire_due() == 1
    assert flag(redis_sync, "c1") == due + 3 * 86_400_000


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
    await fires_nothing_yet(worker, redis_sync)


async def test_a_timer_claimed_by_a_dead_worker_fires_after_its_lease(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)
    shard = keys.timer_shard("c1")
    claimed = await store.claim_timers(shard, clock.now_ms(), 10, clock.now_ms() + MINUTE)  # ... and the worker dies here
    assert [tid for tid, _ in claimed] == ["cart_abandonment|c1"]
    await fires_nothing_yet(worker, redis_sync, "claimed and leased: not fired twice at once")
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
        ("flight_delay_apology:c1:fd1", "push", "apology_upgrade")
    ]


async def test_outbound_ids_differ_between_customers_whose_events_share_an_id(world: World, redis_sync: Redis) -> None:
    service, _, _ = world
    # Event ids are unique per customer only: two channels may well both send `fd1`.
    for customer in ("c1", "c2"):
        await service.record_events([Event("fd1", customer, "flight_delayed", attributes={"delay_minutes": 60})])
    messages = [orjson.loads(f[b"m"]) for _, f in redis_sync.xrange(keys.STREAM_OUTBOUND)]
    assert sorted((m["customer_id"], m["id"]) for m in messages) == [
        ("c1", "flight_delay_apology:c1:fd1"),
        ("c2", "flight_delay_apology:c2:fd1"),
    ]


class ActsAfterClaim:
    """The real store, with the customer acting once between a worker's claim and the rest of its
    firing (or, `after="held"`, between its check of the claim and its effects): the
    interleavings a busy worker meets in production, made deterministic."""

    def __init__(self, store: RedisStore, act: Callable[[], Awaitable[None]], after: str = "claim") -> None:
        self.store = store
        self.act: Callable[[], Awaitable[None]] | None = act
        self.after = after

    async def _acting(self, step: str) -> None:
        if step == self.after and self.act is not None:
            act, self.act = self.act, None
            await act()

    async def claim_timers(
        self, shard: int, now_ms: int, limit: int, lease_until_ms: int
    ) -> list[tuple[str, dict[str, Any] | None]]:
        claimed = await self.store.claim_timers(shard, now_ms, limit, lease_until_ms)
        if claimed:
            await self._acting("claim")
        return claimed

    async def held_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> set[str]:
        held = await self.store.held_timers(shard, timer_ids, lease_until_ms)
        if held:
            await self._acting("held")
        return held

    async def complete_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> None:
        await self.store.complete_timers(shard, timer_ids, lease_until_ms)

    async def apply_trigger_effects(self, effects: Sequence[tuple[str, TriggerEffects]]) -> None:
        await self.store.apply_trigger_effects(effects)

    async def fire_timers(self, timers: Sequence[tuple[str, str, int, TriggerEffects]]) -> list[bool]:
        return await self.store.fire_timers(timers)


def busy_worker(store: RedisStore, clock: FixedClock, act: Callable[[], Awaitable[None]], after: str = "claim") -> TimerWorker:
    return TimerWorker(ActsAfterClaim(store, act, after), RuleRegistry.from_directory(EXAMPLE_RULES), clock, lease_ms=MINUTE)


# After the claim, or after the worker's check of it and before its effects: the mark in the
# customer's slot is gone by the time the effects run, so they write nothing.
AFTER = pytest.mark.parametrize("after", ["claim", "held"])


@AFTER
async def test_a_timer_cancelled_after_its_claim_does_not_fire(
    world: World, clock: FixedClock, redis_sync: Redis, after: str
) -> None:
    service, _, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)

    async def checkout() -> None:
        await service.record_events([Event("co", "c1", "checkout")])

    assert await busy_worker(store, clock, checkout, after).fire_due() == 0
    assert flag(redis_sync, "c1") is None, "the checkout came before the timer fired"
    shard = keys.timer_shard("c1")
    assert redis_sync.zcard(keys.timer_inflight(shard)) == redis_sync.hlen(keys.timer_data(shard)) == 0
    assert not redis_sync.exists(keys.timer_mark("c1", "cart_abandonment|c1"))


@AFTER
async def test_a_timer_restarted_after_its_claim_fires_at_its_new_due_time(
    world: World, clock: FixedClock, redis_sync: Redis, after: str
) -> None:
    service, _, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)

    async def another_cart_add() -> None:
        await cart_add(service, "c1")  # at T0 + 31 min: now due at T0 + 61 min

    assert await busy_worker(store, clock, another_cart_add, after).fire_due() == 0
    assert flag(redis_sync, "c1") is None, "the wait started again before the timer fired"
    await fires_when_due(world, clock, redis_sync, T0 + 61 * MINUTE)


async def test_a_timer_restarted_while_a_dead_worker_held_it_waits_for_its_new_due_time(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, worker, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)
    shard = keys.timer_shard("c1")
    assert await store.claim_timers(shard, clock.now_ms(), 10, clock.now_ms() + MINUTE)  # ... and the worker dies here
    await cart_add(service, "c1")  # due again at T0 + 61 min
    clock.advance(minutes=2)  # the dead worker's lease has lapsed
    await fires_nothing_yet(worker, redis_sync, "not before its new due time")
    await fires_when_due(world, clock, redis_sync, T0 + 61 * MINUTE)


async def test_a_lapsed_claim_beside_a_later_schedule_is_dropped_not_fired(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    """State as left by a writer that restarted a timer without removing the claim on it."""
    _, worker, _ = world
    shard, tid = keys.timer_shard("c1"), "cart_abandonment|c1"
    later = T0 + 30 * MINUTE
    redis_sync.zadd(keys.timer_inflight(shard), {tid: T0 - MINUTE})
    redis_sync.zadd(keys.timer_due(shard), {tid: later})
    payload = {"trigger": "cart_abandonment", "customer_id": "c1", "due": later, "event_id": "e-late"}
    redis_sync.hset(keys.timer_data(shard), tid, orjson.dumps(payload))
    await fires_nothing_yet(worker, redis_sync)
    assert redis_sync.zcard(keys.timer_inflight(shard)) == 0, "the stale claim is gone"
    await fires_when_due(world, clock, redis_sync, later)


async def test_a_worker_whose_claim_was_taken_over_neither_fires_nor_completes_it(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, _, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=31)
    shard, tid = keys.timer_shard("c1"), "cart_abandonment|c1"
    slow_lease = clock.now_ms() + MINUTE
    assert [t for t, _ in await store.claim_timers(shard, clock.now_ms(), 10, slow_lease)] == [tid]
    clock.advance(minutes=2)  # the slow worker's lease lapses and another worker takes the timer
    new_lease = clock.now_ms() + MINUTE
    assert [t for t, _ in await store.claim_timers(shard, clock.now_ms(), 10, new_lease)] == [tid]
    assert await store.held_timers(shard, [tid], slow_lease) == set()
    await store.complete_timers(shard, [tid], slow_lease)
    assert redis_sync.zscore(keys.timer_inflight(shard), tid) == new_lease, "still claimed by the other worker"
    assert redis_sync.hexists(keys.timer_data(shard), tid)
    assert await store.held_timers(shard, [tid], new_lease) == {tid}


async def test_a_timer_stored_without_a_mark_still_fires(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    """Timers scheduled before marks existed carry no `marked` in their payload: they fire as they always did."""
    _, worker, _ = world
    shard, tid = keys.timer_shard("c1"), "cart_abandonment|c1"
    redis_sync.zadd(keys.timer_due(shard), {tid: T0})
    payload = {"trigger": "cart_abandonment", "customer_id": "c1", "due": T0, "event_id": "e-old"}
    redis_sync.hset(keys.timer_data(shard), tid, orjson.dumps(payload))
    assert await worker.fire_due() == 1
    assert flag(redis_sync, "c1") == T0 + 3 * 86_400_000


NUDGE_RULES = """
fields:
  customer:
    tier: string
treatments:
  - id: a
    kind: offer
    channels: [web]
triggers:
  - id: nudge
    event: cart_add
    schedule:
      after: {minutes: 30}
      cancel_on: [checkout]
      then:
        set_flag: {name: nudged, expires_after: {days: 1}}
        increment: {counter: nudges, window: {days: 7}}
        emit: {channel: push, message: "Still thinking about it?"}
"""


@pytest.fixture
async def nudging(tmp_path: Path, redis_async: aioredis.Redis, clock: FixedClock) -> AsyncIterator[World]:
    (tmp_path / "rules.yaml").write_text(NUDGE_RULES)
    store = RedisStore(redis_async, decision_ttl_s=86_400, dedup_ttl_s=86_400, recent_limit=10, stream_maxlen=100_000)
    await store.prepare()
    rules = RuleRegistry.from_directory(tmp_path)
    yield DecisionService(store, rules, clock), TimerWorker(store, rules, clock, lease_ms=MINUTE), store
    await store.aclose()


def outbound(redis_sync: Redis) -> list[str]:
    return [orjson.loads(f[b"m"])["id"] for _, f in redis_sync.xrange(keys.STREAM_OUTBOUND)]


async def test_a_fired_timer_sets_its_flag_counts_and_sends_its_message(
    nudging: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, worker, _ = nudging
    for _ in range(2):
        await cart_add(service, "c1")
        clock.advance(minutes=31)
        assert await worker.fire_due() == 1
    first, second = T0 + 30 * MINUTE, T0 + 61 * MINUTE
    assert outbound(redis_sync) == [f"nudge:c1:timer@{first}", f"nudge:c1:timer@{second}"]
    assert redis_sync.zrange(keys.counter("c1", "nudges"), 0, -1, withscores=True) == [
        (f"{first}:timer@{first}".encode(), first),
        (f"{second}:timer@{second}".encode(), second),
    ]
    assert int(redis_sync.hget(keys.flags("c1"), "nudged")) == second + 86_400_000


async def test_a_timer_fired_again_after_a_worker_died_sends_the_same_message_unless_cancelled(
    nudging: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, worker, store = nudging
    await cart_add(service, "c1")
    await cart_add(service, "c2")
    clock.advance(minutes=31)
    due = T0 + 30 * MINUTE
    shards = {keys.timer_shard(c) for c in ("c1", "c2")}
    for shard in shards:  # a worker claims, applies ... and dies before completing
        lease = clock.now_ms() + MINUTE
        claimed = await store.claim_timers(shard, clock.now_ms(), 10, lease)
        fired = [(p["customer_id"], tid, due, TriggerEffects(flags_set={"nudged": due + 86_400_000})) for tid, p in claimed if p]
        assert all(await store.fire_timers(fired))
    await service.record_events([Event("co", "c2", "checkout")])  # c2 checks out before the retry
    clock.advance(minutes=2)  # the claims lapse
    assert await worker.fire_due() == 1, "c1 fires again; c2's mark was deleted by the checkout"
    assert outbound(redis_sync) == [f"nudge:c1:timer@{due}"]
    assert redis_sync.hexists(keys.flags("c1"), "nudged")


async def test_a_timer_fired_after_its_flag_lapsed_sends_no_message(nudging: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, _ = nudging
    await cart_add(service, "c1")
    clock.advance(days=2)  # the worker was down; `nudged` would have lapsed a day ago
    assert await worker.fire_due() == 1
    assert outbound(redis_sync) == [], "a nudge about a flag that no decision sees any more"
    assert redis_sync.zcard(keys.counter("c1", "nudges")) == 1, "what it counts still counts"


async def test_a_cart_add_sent_late_does_not_pull_the_wait_earlier(world: World, clock: FixedClock, redis_sync: Redis) -> None:
    service, worker, _ = world
    await cart_add(service, "c1")  # now: due in 30 minutes
    late = Event("late-add", "c1", "cart_add", T0 - 2 * 60 * MINUTE, attributes={"sku": "B", "price": 5})
    await service.record_events([late])  # from two hours ago: its wait ended long since
    clock.advance(minutes=1)
    await fires_nothing_yet(worker, redis_sync, "the customer is still shopping")
    await fires_when_due(world, clock, redis_sync, T0 + 30 * MINUTE)


async def test_a_checkout_sent_late_dated_before_the_latest_cart_add_leaves_its_wait_running(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, _, _ = world
    await cart_add(service, "c1")
    clock.advance(minutes=20)
    await cart_add(service, "c1")  # the wait starts again: due at T0 + 50 minutes
    late = Event("late-co", "c1", "checkout", T0 + 10 * MINUTE)  # the checkout of the first cart, sent late
    await service.record_events([late])
    assert redis_sync.get(keys.timer_mark("c1", "cart_abandonment|c1")) == str(T0 + 50 * MINUTE).encode()
    await fires_when_due(world, clock, redis_sync, T0 + 50 * MINUTE)  # the second cart was never checked out


async def test_a_checkout_dated_after_the_wait_still_stops_a_timer_not_yet_fired(
    world: World, clock: FixedClock, redis_sync: Redis
) -> None:
    service, worker, store = world
    await cart_add(service, "c1")
    clock.advance(minutes=45)  # due 15 minutes ago; the worker has not run
    await service.record_events([Event("co", "c1", "checkout")])
    await fires_nothing_yet(worker, redis_sync, "no reminder of a cart the customer has checked out")
    assert await store.pending_timers(keys.timer_shard("c1")) == {}
