"""Serving a customer leaves no cyclic garbage: the premise of the serving process's sparse
young garbage collections (engine.api.process.settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from redis import asyncio as aioredis

from engine.bootstrap import warm_up_kernels
from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.domain import DecisionRequest, Event, Feedback
from engine.rules.registry import RuleRegistry
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_RULES

pytestmark = pytest.mark.anyio


@pytest.fixture
async def service(redis_async: aioredis.Redis, clock: FixedClock) -> AsyncIterator[DecisionService]:
    warm_up_kernels()  # as a serving process does before it is ready: compiling makes cycles of its own
    store = RedisStore(redis_async, decision_ttl_s=86_400, dedup_ttl_s=86_400, recent_limit=10, stream_maxlen=100_000)
    await store.prepare()
    yield DecisionService(store, RuleRegistry.from_directory(EXAMPLE_RULES), clock, rng=np.random.default_rng(1))
    await store.aclose()


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """Collection off, and what a collection finds kept in gc.garbage instead of freed."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


async def test_events_decisions_and_feedback_leave_no_cycles(service: DecisionService, saved_garbage: list[object]) -> None:
    async def walk(i: int) -> None:
        await service.record_events([Event(f"cycles-{i}", "ben", "cart_add", None, "web", {"sku": f"s{i}", "price": 10.0})])
        await service.record_events([Event(f"cycles-d{i}", "dana", "flight_delayed", None, None, {"delay_minutes": 90})])
        for customer, channel, placement, context in (
            ("ben", "web", None, {"device": "desktop"}),
            ("ben", "web", "event_tickets", {"companion": "child"}),
            ("dana", "mobile_app", None, {}),
        ):
            decision = await service.decide(DecisionRequest(customer, channel, placement, context))
            assert decision.treatments and not decision.degraded
            fb = Feedback(f"cycles-fb-{i}-{placement}-{customer}", decision.decision_id, decision.treatments[0].id, "click")
            assert (await service.record_feedback(fb)).accepted
        # (Not `explain`: each condition's explainer is compiled on its first use, a cycle per
        # condition once, not per request.)
        await service.decide(DecisionRequest("carla", "call_center", "agent_prompt", {"reason": "booking_change"}))

    for i in range(3):  # opens the connections and fills the caches
        await walk(-i)
    gc.collect()
    saved_garbage.clear()
    for i in range(1, 31):
        await walk(i)
    gc.collect()
    kinds = sorted({type(o).__qualname__ for o in saved_garbage})
    assert saved_garbage == [], f"{len(saved_garbage)} objects in reference cycles: {kinds}"
