"""Reading every customer from a real Redis for a simulation: chunked, pipelined, read-only, and
the same state a decision reads one customer at a time."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.decision.events import effects_of
from engine.decision.pipeline import eval_context
from engine.domain import DecisionRequest, Event
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.rules.triggers import effects_of_event
from engine.seed import demo_profiles, demo_value_facts
from engine.simulation.customers import load_customers
from engine.simulation.rules import simulate
from engine.state import keys
from engine.state.customer_scan import CustomerScan, customer_of_profile
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_RULES, T0

pytestmark = pytest.mark.anyio

CUSTOMERS = 60
RECENT = 10


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_ruleset(EXAMPLE_RULES)


def _events(cid: str, n: int) -> list[Event]:
    """A varied history: every customer a little different."""
    out = [
        Event(f"{cid}-pv{k}", cid, "page_view", T0 - (k + 1) * MS_PER_HOUR, "web", {"page": "premium_seats"})
        for k in range(n % 5)
    ]
    if n % 3 == 0:
        out.append(Event(f"{cid}-c", cid, "complaint", T0 - (n % 9) * MS_PER_DAY, "email", {"topic": " WiFi "}))
    if n % 4 == 0:
        out.append(Event(f"{cid}-d", cid, "flight_delayed", T0 - MS_PER_HOUR, "mobile_app", {"delay_minutes": 60}))
    if n % 5 == 1:
        out.append(Event(f"{cid}-a", cid, "cart_add", T0 - 10 * 60_000, "web", {"sku": "s1", "qty": 2, "price": 120.0}))
    if n % 7 == 2:
        out.append(Event(f"{cid}-p", cid, "purchase", T0 - 3 * MS_PER_DAY, "web", {"amount": 250.0}))
    if n % 6 == 5:
        out.append(Event(f"{cid}-e", cid, "email_received", T0 - 2 * MS_PER_DAY, "email", {}))
    return out


@pytest.fixture
async def store(redis_async: aioredis.Redis, rules: RuleSet) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_async, decision_ttl_s=3600, dedup_ttl_s=600, recent_limit=RECENT, stream_maxlen=10_000)
    await s.prepare()
    profiles = list(itertools.islice(demo_profiles(CUSTOMERS - 4, seed=3), CUSTOMERS))
    await s.seed_profiles(profiles)
    ids = [cid for cid, _ in profiles]
    await s.seed_value_facts(list(demo_value_facts(ids, T0, rules.equity, seed=3)))
    effects = []
    for n, cid in enumerate(ids):
        for event in _events(cid, n):
            fx = effects_of(event, rules.vocabulary, T0, equity=rules.equity)
            effects.append(replace(fx, triggers=effects_of_event(event, fx.ts, rules.triggers_by_event, rules.timer_cancels)))
    await s.apply_events(effects)
    yield s
    await s.aclose()


async def test_the_scan_reads_what_read_customer_reads(store: RedisStore, redis_async: aioredis.Redis, rules: RuleSet) -> None:
    scan = CustomerScan(redis_async, recent_limit=RECENT, counters=rules.counters)
    chunks = [chunk async for chunk in scan.scan(T0, chunk=7)]
    states = [s for chunk in chunks for s in chunk]
    assert len(states) == CUSTOMERS and len(chunks) > 1
    assert len({s.customer_id for s in states}) == CUSTOMERS
    for state in states:
        one = await store.read_customer(state.customer_id, T0, with_recent=True, counters=rules.counters)
        assert state == one
    assert any(s.flags for s in states) and any(s.counters["premium_seat_views"] for s in states)
    assert any(s.cart for s in states) and any(s.topics for s in states) and all(s.facts for s in states)


async def test_a_customer_without_a_profile_is_not_read_and_the_limit_is_kept(
    store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis
) -> None:
    redis_sync.hset(keys.flags("ghost"), "delayed_flight", T0 + MS_PER_DAY)
    scan = CustomerScan(redis_async, recent_limit=RECENT)
    seen = [s.customer_id async for chunk in scan.scan(T0, chunk=5) for s in chunk]
    assert "ghost" not in seen
    limited = [s async for chunk in scan.scan(T0, chunk=5, limit=12) for s in chunk]
    assert len(limited) == 12
    assert customer_of_profile(keys.profile("a:b-c")) == "a:b-c"


async def test_the_scan_reads_after_redis_forgot_the_read_script(
    store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis
) -> None:
    redis_sync.script_flush()
    scan = CustomerScan(redis_async, recent_limit=RECENT)
    (chunk,) = [c async for c in scan.scan(T0, chunk=CUSTOMERS * 2)]
    assert len(chunk) == CUSTOMERS and all(s.known for s in chunk)


async def test_the_scan_only_reads(store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis) -> None:
    def everything() -> dict[bytes, bytes]:
        return {k: redis_sync.dump(k) for k in redis_sync.scan_iter()}  # type: ignore[misc]

    before = everything()
    await load_customers(redis_async, now_ms=T0, recent_limit=RECENT, counters=("premium_seat_views",))
    assert len(before) > CUSTOMERS and everything() == before


async def test_simulating_over_redis_customers_matches_their_scalar_eligibility(
    store: RedisStore, redis_async: aioredis.Redis, rules: RuleSet
) -> None:
    added: list[int] = []
    batch = await load_customers(
        redis_async, now_ms=T0, recent_limit=RECENT, counters=rules.counters, chunk=9, progress=added.append
    )
    assert len(batch) == CUSTOMERS == sum(added)
    report = simulate(rules, batch, channel="web", now_ms=T0)
    assert report.outcomes.scalar_rows == 0
    request = DecisionRequest("", "web")
    contexts = [
        eval_context(s, request, T0, rules.value_model.evaluate(s.facts, T0)) for s in map(batch.state, range(len(batch)))
    ]
    by_id = {t.id: t for t in report.treatments}
    for t in rules.treatments:
        if t.eligibility is not None:
            expected = sum(t.eligibility(ctx) for ctx in contexts) / len(batch)
            assert by_id[t.id].current.match_share == expected, t.id  # type: ignore[union-attr]
    for tid in ("apology_upgrade", "service_recovery", "premium_seat_upgrade", "wifi_fixed_announcement"):
        current = by_id[tid].current
        assert current is not None and 0 < current.match_share < 1, tid
