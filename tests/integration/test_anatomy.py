"""The anatomy benchmark's mechanics: its figures are read, not asserted, but what it measures
must be what it says it measures."""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any
from unittest import mock

import numpy as np
import pytest
from redis import Redis
from redis import asyncio as aioredis

import engine.decision.service as service_module
from engine.bootstrap import warm_up_kernels
from engine.clock import FixedClock
from engine.decision.pipeline import DecisionPlan
from engine.decision.service import DecisionService
from engine.domain import DecisionRequest
from engine.rules.registry import RuleRegistry
from engine.state import keys
from engine.state.redis_store import RedisStore
from loadtests import anatomy
from loadtests.bench import DECISION_MIX
from tests.conftest import EXAMPLE_RULES

pytestmark = pytest.mark.anyio


@pytest.fixture
def pipeline_runs() -> Any:
    """Counts runs of the real decision logic, per channel and placement."""
    runs: Counter[tuple[str, str | None]] = Counter()
    real = service_module.decide

    def counting(state: Any, request: DecisionRequest, *args: Any, **kwargs: Any) -> DecisionPlan:
        runs[(request.channel, request.placement)] += 1
        return real(state, request, *args, **kwargs)

    with mock.patch.object(service_module, "decide", counting):
        yield runs


async def test_replayed_logic_runs_the_pipeline_once_per_channel_and_placement(
    redis_async: aioredis.Redis, clock: FixedClock, pipeline_runs: Counter[tuple[str, str | None]]
) -> None:
    warm_up_kernels()
    store = RedisStore(redis_async, decision_ttl_s=86_400, dedup_ttl_s=86_400, recent_limit=10, stream_maxlen=1_000)
    await store.prepare()
    service = DecisionService(store, RuleRegistry.from_directory(EXAMPLE_RULES), clock, rng=np.random.default_rng(1))
    plans: dict[tuple[str, str | None], DecisionPlan] = {}
    try:
        with anatomy.replayed_logic(plans):
            web = [await service.decide(DecisionRequest(f"cust-{i}", "web")) for i in range(5)]
            call = await service.decide(DecisionRequest("cust-x", "call_center", "agent_prompt"))
        assert pipeline_runs == {("web", None): 1, ("call_center", "agent_prompt"): 1}
        assert set(plans) == {("web", None), ("call_center", "agent_prompt")}
        # Replayed answers are served in full: each its own decision, with the plan's treatments.
        assert len({d.decision_id for d in web}) == 5
        assert all(d.treatments == plans[("web", None)].treatments and not d.degraded for d in web)
        assert call.treatments == plans[("call_center", "agent_prompt")].treatments
        await service.decide(DecisionRequest("cust-0", "web"))  # outside the block: the real logic again
        assert pipeline_runs[("web", None)] == 2
    finally:
        await store.aclose()


async def test_every_measurement_serves_real_requests(redis_url: str, redis_sync: Redis) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    figures, model = await anatomy.measure(
        customers=200, rounds=2, duration_s=0.05, concurrency=4, train_decisions=0, redis_url=redis_url
    )
    # It settles the heap as a server does while it measures, and undoes that when done.
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
    assert model is None
    assert all(figures.requests[k] > 0 for k in anatomy.KINDS), figures.requests
    assert not any(figures.failures.values()), figures.failures
    assert all(len(rounds) == 2 and min(rounds) > 0 for rounds in figures.cpu_us.values())
    assert figures.plans_replayed == len({(t["channel"], t.get("placement")) for t in DECISION_MIX})
    data = figures.as_json()
    assert set(data["ratio_to_bare"]) == {anatomy.DECISIONS, anatomy.REPLAYED}
    assert redis_sync.exists(keys.profile("cust-000200"))  # the customers it spread over were seeded
