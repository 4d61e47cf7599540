"""Customer value against a real Redis: batch scans, lifetime models, and the service using them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.bootstrap import refresh_lifetime
from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.domain import DecisionRequest
from engine.equity.batch import fit_lifetime, recompute_equity
from engine.equity.config import EquityConfig
from engine.rules.registry import RuleRegistry
from engine.seed import demo_value_facts
from engine.state import keys
from engine.state.redis_store import RedisStore
from engine.state.value_store import ValueStore
from tests.conftest import EXAMPLE_RULES, T0

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(redis_async: aioredis.Redis) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_async, decision_ttl_s=3600, dedup_ttl_s=600, recent_limit=10, stream_maxlen=10_000)
    await s.prepare()
    ids = [f"v{i}" for i in range(700)]
    await s.seed_value_facts(list(demo_value_facts(ids, T0, EquityConfig.default(), seed=3)))
    yield s
    await s.aclose()


async def test_a_scan_in_small_chunks_sees_every_customer_once(store: RedisStore, redis_async: aioredis.Redis) -> None:
    values = ValueStore(redis_async)
    seen = [cid async for rows in values.scan_facts(chunk=64) for cid, _ in rows]
    assert sorted(seen) == sorted(f"v{i}" for i in range(700))
    facts = await values.read_facts(["v1", "v2", "nobody"])
    assert set(facts) == {"v1", "v2"} and facts["v1"]["order_count"] >= 1


async def test_recompute_writes_snapshots_and_a_summary_that_match_the_hot_path(
    store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis
) -> None:
    rules = RuleRegistry.from_directory(EXAMPLE_RULES).current
    summary = await recompute_equity(ValueStore(redis_async), rules.value_model, T0, chunk=100)
    assert summary.customers == 700 and sum(summary.per_tier.values()) == 700
    assert summary.p10 is not None and summary.p90 is not None and summary.p10 <= summary.p50 <= summary.p90
    state = await store.read_customer("v5", T0, with_recent=False)
    one = rules.value_model.evaluate(state.facts, T0)
    snapshot = redis_sync.hgetall(keys.equity_snapshot("v5"))
    assert float(snapshot[b"equity"]) == pytest.approx(one.equity, rel=1e-12), "batch and hot path agree"
    assert snapshot[b"tier"].decode() == one.tier


async def test_a_fitted_lifetime_model_reaches_the_service_and_its_decisions(
    store: RedisStore, redis_async: aioredis.Redis
) -> None:
    values = ValueStore(redis_async)
    fit = await fit_lifetime(values, T0, chunk=200)
    assert fit.model.version == 1 and fit.model.customers == 700
    assert fit.purchases.converged and fit.spend.converged
    rules = RuleRegistry.from_directory(EXAMPLE_RULES)
    service = DecisionService(store, rules, FixedClock(T0), rng=np.random.default_rng(1))
    decision = await service.decide(DecisionRequest("v7", "web"))
    assert decision.customer_value is not None and decision.customer_value["clv"] is None
    await refresh_lifetime(service, values)
    assert service.lifetime is not None and service.lifetime.version == 1
    decision = await service.decide(DecisionRequest("v7", "web"))
    value = decision.customer_value
    assert value is not None and value["clv"] is not None and value["clv"] >= 0
    assert 0 < value["p_alive"] <= 1 and value["expected_purchases"] >= 0
    record = await store.claim_feedback("fb-x", decision.decision_id)
    assert record[0] is not None and record[0].value == {"equity": value["equity"], "tier": value["tier"], "clv": value["clv"]}
