"""Serving picks up a newly published model version through the follower every serving process runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.domain import Feedback, StoredDecision
from engine.learning.serving import ModelRegistry, follow_models
from engine.learning.spec import ModelSpec, load_model_specs
from engine.learning.worker import LearnerWorker
from engine.state import keys
from engine.state.learning_store import LearningStore
from engine.state.redis_store import RedisStore
from tests.conftest import ROOT, T0

pytestmark = pytest.mark.anyio
PICKUP_BOUND_S = 1.0


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return next(s for s in load_model_specs(ROOT / "models") if s.id == "response")


@pytest.fixture
async def store(redis_async: aioredis.Redis) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_async, decision_ttl_s=7 * 86_400, dedup_ttl_s=600, recent_limit=10, stream_maxlen=100_000)
    await store.prepare()
    yield store
    await store.aclose()


async def accepted(store: RedisStore, spec: ModelSpec, n: int) -> None:
    """A decision scored by `spec` and its accept, as the decision service logs them."""
    decision_id = keys.new_decision_id(f"{n:032x}", "c1")
    treatment = {"id": "a", "group": "sales", "kind": "offer", "score": 1.0, "propensity": 0.1, "selection_probability": 1.0}
    model = {"id": spec.id, "version": 0, "fingerprint": spec.fingerprint, "window_ms": spec.reward.non_response_after_s * 1000}
    inputs = {"customer": {"tier": "gold"}}
    record = StoredDecision(decision_id, "c1", "web", None, T0, "v1", [treatment], model=model, inputs=inputs)
    await store.write_decision(record, [])
    await store.apply_feedback(Feedback(f"f{n}", decision_id, "a", "accept"), "c1", T0)


async def served_within(registry: ModelRegistry, spec: ModelSpec, version: int, timeout_s: float, start: float) -> float:
    """Seconds from `start` until `registry` serves `version`, looked at every few ms."""
    while (served := registry.get(spec.id)) is None or served.version < version:
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"version {version} not served within {timeout_s} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_a_published_version_is_served_within_a_second(
    store: RedisStore, redis_async: aioredis.Redis, spec: ModelSpec, clock: FixedClock
) -> None:
    learning = LearningStore(redis_async)
    registry = ModelRegistry([spec])
    learner = LearnerWorker(learning, spec, clock, consumer="w1", snapshot_every_s=0.0)
    await learner.restore()
    stop = asyncio.Event()
    follower = asyncio.create_task(follow_models(registry, LearningStore(redis_async), stop))
    try:
        await accepted(store, spec, 1)
        await learner.step(block_ms=None)
        assert learner.version == 1
        await served_within(registry, spec, 1, timeout_s=5.0, start=time.monotonic())  # the follower is up and subscribed

        await accepted(store, spec, 2)
        start = time.monotonic()  # the step reads and learns before it publishes: the bound covers more than the pick-up
        report = await learner.step(block_ms=None)
        assert report.published == 2
        elapsed = await served_within(registry, spec, 2, timeout_s=5.0, start=start)
        assert elapsed < PICKUP_BOUND_S, f"version 2 served {elapsed:.3f} s after its publication"
        served = registry.get(spec.id)
        assert served is not None and served.version == 2 and served.evidence == {"a": 2.0}
    finally:
        stop.set()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
