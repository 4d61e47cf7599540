"""The learner against real Redis: labels, exactly-once learning across restarts, leases."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator

import numpy as np
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.domain import Feedback, StoredDecision
from engine.learning.serving import unpack_weights
from engine.learning.spec import ModelSpec, load_model_specs
from engine.learning.worker import LearnerWorker, learn_model, window_member
from engine.state import keys
from engine.state.keys import model_due
from engine.state.learning_store import LearningStore
from engine.state.redis_store import RedisStore
from tests.conftest import ROOT, T0

pytestmark = pytest.mark.anyio
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return next(s for s in load_model_specs(ROOT / "models") if s.id == "response")


@pytest.fixture
async def stores(redis_async: aioredis.Redis) -> AsyncIterator[tuple[RedisStore, LearningStore]]:
    store = RedisStore(redis_async, decision_ttl_s=7 * 86_400, dedup_ttl_s=600, recent_limit=10, stream_maxlen=100_000)
    await store.prepare()
    yield store, LearningStore(redis_async)
    await store.aclose()


_n = iter(range(10**6))


async def shown(store: RedisStore, spec: ModelSpec, ts: int, *treatments: str, tier: str = "gold") -> str:
    """Log a decision scored by `spec`, as the decision service does."""
    decision_id = keys.new_decision_id(f"{next(_n):032x}", "c1")
    record = StoredDecision(
        decision_id,
        "c1",
        "web",
        None,
        ts,
        "v1",
        [
            {"id": t, "group": "sales", "kind": "offer", "score": 1.0, "propensity": 0.1, "selection_probability": 1.0}
            for t in treatments
        ],
        model={
            "id": spec.id,
            "version": 0,
            "fingerprint": spec.fingerprint,
            "window_ms": spec.reward.non_response_after_s * 1000,
        },
        inputs={"customer": {"tier": tier}, "context": {"device": "ios"}},
    )
    await store.write_decision(record, [])
    return decision_id


async def respond(store: RedisStore, decision_id: str, treatment: str, outcome: str, value: float | None = None) -> None:
    await store.apply_feedback(Feedback(f"f{next(_n)}", decision_id, treatment, outcome, value), "c1", T0)


def worker(learning: LearningStore, spec: ModelSpec, clock: FixedClock, name: str = "w1") -> LearnerWorker:
    return LearnerWorker(learning, spec, clock, consumer=name, snapshot_every_s=0.0)


async def drain(w: LearnerWorker) -> None:
    for _ in range(5):
        await w.step(block_ms=None)


async def test_positive_is_learned_at_once_and_negative_when_the_window_closes(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_sync: Redis
) -> None:
    store, learning = stores
    w = worker(learning, spec, clock)
    await w.restore()
    d1 = await shown(store, spec, T0, "a", "b")
    await respond(store, d1, "a", "accept")
    await drain(w)
    assert w.state.evidence == {"a": 1.0}, "the accept is learned without waiting for the window"
    assert w.version >= 1
    assert redis_sync.zcard(model_due(spec.id)) == 2

    clock.advance(days=1, minutes=1)
    await drain(w)
    assert w.state.evidence == {"a": 1.0, "b": spec.reward.negative_weight}, "b got no response: one negative"
    assert redis_sync.zcard(model_due(spec.id)) == 0
    examples = w.state.examples
    await drain(w)
    assert w.state.examples == examples, "nothing is learned twice"


async def test_stronger_outcome_adds_only_the_difference(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    w = worker(learning, spec, clock)
    await w.restore()
    d1 = await shown(store, spec, T0, "a")
    await respond(store, d1, "a", "click")
    await drain(w)
    await respond(store, d1, "a", "purchase", 500.0)
    await respond(store, d1, "a", "click")
    await drain(w)
    strongest = spec.reward.outcome_weight("purchase", 500.0)
    assert w.state.evidence["a"] == pytest.approx(strongest)
    clock.advance(days=2)
    await drain(w)
    assert w.state.evidence["a"] == pytest.approx(strongest), "a responded impression is not also a negative"


async def test_restart_resumes_from_the_snapshot_without_relearning(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    first = worker(learning, spec, clock)
    await first.restore()
    for _ in range(3):
        d = await shown(store, spec, T0, "a")
        await respond(store, d, "a", "accept")
    await drain(first)
    learned = first.state.examples
    probe = first.featurizer.featurize({"tier": "gold"}, {"device": "ios"}, ("a", "sales", "offer"))
    before = first.state.learner.predict_proba_one(probe)

    # More feedback arrives, is read and learned, but the process dies before its snapshot.
    d = await shown(store, spec, T0, "a")
    await respond(store, d, "a", "purchase", 100.0)
    first.snapshot_every_s = 3600.0
    await drain(first)
    assert first.state.examples == learned + 1
    del first

    second = worker(learning, spec, clock, name="w2")
    await second.restore()
    assert second.state.examples == learned
    assert second.state.learner.predict_proba_one(probe) == pytest.approx(before)
    await drain(second)
    assert second.state.examples == learned + 1, "the unsnapshotted entry is learned again, once"
    await drain(second)
    assert second.state.examples == learned + 1


async def test_expired_decision_is_skipped_and_other_models_are_ignored(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_sync: Redis
) -> None:
    store, learning = stores
    w = worker(learning, spec, clock)
    await w.restore()
    d = await shown(store, spec, T0, "a")
    redis_sync.delete(keys.decision(d))
    await respond(store, d, "a", "accept")
    await drain(w)
    assert w.state.examples == 0


async def test_only_the_lease_holder_learns(stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock) -> None:
    store, learning = stores
    d = await shown(store, spec, T0, "a")
    await respond(store, d, "a", "accept")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(learn_model(learning, spec, clock, f"p{i}", stop, idle_s=0.05)) for i in range(2)]
    for _ in range(100):
        snapshot = await learning.load_snapshot(spec.id)
        if snapshot is not None and pickle.loads(snapshot.learner).examples:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None
    assert pickle.loads(snapshot.learner).examples == 1, "two processes, one example learned once"
    served = await learning.load_served(spec.id)
    assert served is not None and served.meta["evidence"] == {"a": 1.0}
    dense = unpack_weights(served.weights, spec.dimension)
    assert dense.shape == (spec.dimension,) and 0 < np.count_nonzero(dense) < 100
    assert window_member(d, "a")


async def test_closing_windows_is_not_limited_by_snapshots(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    w = LearnerWorker(learning, spec, clock, consumer="w1", snapshot_every_s=3600.0, batch=5)
    await w.restore()
    for _ in range(12):
        await shown(store, spec, T0, "a")
    await drain(w)
    clock.advance(days=1, minutes=1)
    for _ in range(4):
        await w.step(block_ms=None)
    assert w.state.evidence["a"] == 12 * spec.reward.negative_weight, "every due window closed, five per step"
