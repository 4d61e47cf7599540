"""The learner against real Redis: labels, exactly-once learning across restarts, leases and takeovers."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.domain import Feedback, StoredDecision
from engine.learning.serving import unpack_weights
from engine.learning.spec import ModelSpec, load_model_specs
from engine.learning.worker import LearnerWorker, group_name, learn_model, window_member
from engine.state import keys
from engine.state.keys import model_due
from engine.state.learning_store import LearningStore, SnapshotRefused
from engine.state.redis_store import RedisStore
from tests.conftest import ROOT, T0

pytestmark = pytest.mark.anyio
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


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


async def respond(
    store: RedisStore, decision_id: str, treatment: str, outcome: str, value: float | None = None, *, ts: int = T0
) -> None:
    """Feedback as the service logs it; `ts` is when the outcome happened."""
    await store.apply_feedback(Feedback(f"f{next(_n)}", decision_id, treatment, outcome, value), "c1", ts)


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


async def test_labels_follow_when_the_feedback_happened_not_when_it_is_read(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    d = await shown(store, spec, T0, "a")
    await respond(store, d, "a", "accept", ts=T0 + HOUR_MS)
    clock.advance(days=1, minutes=1)  # the learner was down past the window
    w = worker(learning, spec, clock)
    await w.restore()
    await drain(w)
    assert w.state.evidence == {"a": 1.0}, "accepted within its window: one positive, no negative"
    assert w.state.failures == {}


async def test_a_backlog_longer_than_the_window_closes_no_window_before_its_feedback_is_read(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    for i in range(3):
        d = await shown(store, spec, T0, f"t{i}")
        await respond(store, d, f"t{i}", "accept", ts=T0 + (i + 1) * HOUR_MS)
    clock.advance(days=2)
    w = LearnerWorker(learning, spec, clock, consumer="w1", snapshot_every_s=0.0, batch=1)
    await w.restore()
    await drain(w)
    assert w.state.evidence == {"t0": 1.0, "t1": 1.0, "t2": 1.0}
    assert w.state.failures == {}, "each window had its accept, read one page at a time"


async def test_late_outcomes_count_up_to_the_strongest_whenever_they_are_read(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_sync: Redis
) -> None:
    store, learning = stores
    strongest = spec.reward.outcome_weight("purchase", 500.0)
    negative = spec.reward.negative_weight
    w = worker(learning, spec, clock)
    await w.restore()

    # Read as they happen: the window closes unanswered, then a late click and a late purchase.
    punctual = await shown(store, spec, T0, "a")
    clock.advance(days=1, minutes=1)
    await drain(w)
    assert w.state.failures == {"a": negative}
    await respond(store, punctual, "a", "click", ts=T0 + 25 * HOUR_MS)
    clock.advance(hours=1)
    await drain(w)
    await respond(store, punctual, "a", "purchase", 500.0, ts=T0 + 26 * HOUR_MS)
    clock.advance(hours=1)
    await drain(w)
    assert w.state.successes == {"a": pytest.approx(strongest)}, "late rewards count, up to the strongest outcome"
    assert w.state.failures == {"a": negative}
    await respond(store, punctual, "a", "reject", ts=T0 + 27 * HOUR_MS)
    await drain(w)
    assert w.state.failures == {"a": negative}, "a settled impression is not a negative twice"

    # The same story read in one go after the learner was down: the same labels.
    late = await shown(store, spec, clock.now_ms(), "b")
    shown_at = clock.now_ms()
    await respond(store, late, "b", "click", ts=shown_at + 25 * HOUR_MS)
    await respond(store, late, "b", "purchase", 500.0, ts=shown_at + 26 * HOUR_MS)
    clock.advance(days=2)
    await drain(w)
    assert w.state.successes["b"] == pytest.approx(strongest)
    assert w.state.failures["b"] == negative
    assert w.state.evidence["b"] == pytest.approx(strongest + negative)

    # What is remembered about an impression is forgotten with its decision record.
    positives = keys.model_positives(spec.id)
    assert redis_sync.hexists(positives, window_member(punctual, "a"))
    clock.advance(days=8)
    await w.publish()
    assert redis_sync.hlen(positives) == 0


async def test_a_holder_that_stalled_past_its_lease_cannot_publish_over_its_successor(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    assert await learning.acquire_lease(spec.id, "A", 200)
    a = LearnerWorker(learning, spec, clock, consumer="A", snapshot_every_s=3600.0, lease="A")
    await a.restore()
    e1 = await shown(store, spec, T0, "t1")
    await respond(store, e1, "t1", "accept")
    await drain(a)
    assert a.state.examples == 1, "A learned E1 and has not published it"

    await asyncio.sleep(0.3)  # A stalls past its lease
    assert await learning.acquire_lease(spec.id, "B", 5_000)
    b = LearnerWorker(learning, spec, clock, consumer="B", snapshot_every_s=0.0, lease="B")
    await b.restore()
    e2 = await shown(store, spec, T0, "t2")
    await respond(store, e2, "t2", "accept")
    await drain(b)
    assert b.state.evidence == {"t1": 1.0, "t2": 1.0}

    with pytest.raises(SnapshotRefused):
        await a.publish()

    c = worker(learning, spec, clock, name="C")
    await c.restore()
    await drain(c)
    assert c.state.evidence == {"t1": 1.0, "t2": 1.0}, "B's work survives A waking up"
    assert c.state.examples == 2


async def test_a_snapshot_must_replace_the_one_its_learner_started_from(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    store, learning = stores
    first, second = worker(learning, spec, clock, "w1"), worker(learning, spec, clock, "w2")
    await first.restore()
    await second.restore()
    d = await shown(store, spec, T0, "a")
    await respond(store, d, "a", "accept")
    await drain(first)
    assert first.version == 1
    second.state.examples += 1  # anything to publish, from a state that no longer is the stored one
    with pytest.raises(SnapshotRefused):
        await second.publish()
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None and snapshot.version == 1 and pickle.loads(snapshot.learner).examples == 1


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def snapshot_examples(learning: LearningStore, spec: ModelSpec) -> int:
    snapshot = await learning.load_snapshot(spec.id)
    return pickle.loads(snapshot.learner).examples if snapshot is not None else 0


async def pending(redis: aioredis.Redis, spec: ModelSpec, consumer: str) -> int:
    """Feedback entries delivered to `consumer` and not acknowledged."""
    rows = await redis.xpending_range(keys.STREAM_FEEDBACK, group_name(spec.id), "-", "+", 1000, consumername=consumer)
    return len(rows)


async def snapshot_examples_is(learning: LearningStore, spec: ModelSpec, n: int) -> bool:
    return await snapshot_examples(learning, spec) == n


async def pending_is(redis: aioredis.Redis, spec: ModelSpec, consumer: str, n: int) -> bool:
    return await pending(redis, spec, consumer) == n


async def test_a_refused_holder_stands_by_without_acknowledging(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_async: aioredis.Redis
) -> None:
    store, learning = stores
    stop = asyncio.Event()
    task = asyncio.create_task(learn_model(learning, spec, clock, "p0", stop, lease_ttl_ms=60_000, idle_s=0.05))
    d1 = await shown(store, spec, T0, "t1")
    await respond(store, d1, "t1", "accept")
    await wait_until(lambda: snapshot_examples_is(learning, spec, 1))

    await redis_async.set(keys.model_lease(spec.id), "intruder", px=60_000)  # p0 has not noticed yet
    d2 = await shown(store, spec, T0, "t2")
    await respond(store, d2, "t2", "accept")
    await wait_until(lambda: pending_is(redis_async, spec, "p0", 1))
    await asyncio.sleep(1.0)  # twice the publishing interval
    assert await snapshot_examples(learning, spec) == 1, "p0's snapshot was refused"
    assert await pending(redis_async, spec, "p0") == 1, "and it acknowledged nothing"
    assert not task.done()

    await redis_async.delete(keys.model_lease(spec.id))
    await wait_until(lambda: snapshot_examples_is(learning, spec, 2))
    stop.set()
    await task
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None and snapshot.meta["evidence"] == {"t1": 1.0, "t2": 1.0}


async def test_a_second_learner_takes_over_midway_and_every_entry_is_learned_once(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_async: aioredis.Redis
) -> None:
    store, learning = stores
    stop = asyncio.Event()
    names = ("p0", "p1")
    # A second between snapshots leaves time to stop the holder after it read entries it has not published.
    tasks = {
        n: asyncio.create_task(learn_model(learning, spec, clock, n, stop, lease_ttl_ms=1_000, idle_s=0.05, snapshot_every_s=1.0))
        for n in names
    }

    async def feed(first: int, count: int) -> None:
        for i in range(first, first + count):
            d = await shown(store, spec, T0, f"t{i}")
            await respond(store, d, f"t{i}", "accept")

    await feed(0, 3)
    await wait_until(lambda: snapshot_examples_is(learning, spec, 3))
    holder = (await redis_async.get(keys.model_lease(spec.id))).decode()
    await wait_until(lambda: pending_is(redis_async, spec, holder, 0))  # the published entries are acknowledged
    await feed(3, 3)
    await wait_until(lambda: pending_is(redis_async, spec, holder, 3))
    tasks[holder].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await tasks[holder]
    assert await snapshot_examples(learning, spec) == 3, "the holder stopped with three entries read, learned, unpublished"

    (other,) = (n for n in names if n != holder)
    await feed(6, 3)
    await wait_until(lambda: snapshot_examples_is(learning, spec, 9))
    assert (await redis_async.get(keys.model_lease(spec.id))).decode() == other
    stop.set()
    await tasks[other]

    expected = {f"t{i}": 1.0 for i in range(9)}
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None and snapshot.meta["evidence"] == expected, "each entry learned exactly once"
    served = await learning.load_served(spec.id)
    assert served is not None and served.meta["evidence"] == expected
    assert await pending(redis_async, spec, holder) == 0 and await pending(redis_async, spec, other) == 0
