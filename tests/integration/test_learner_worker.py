"""The learner against real Redis: labels, exactly-once learning across restarts, leases and takeovers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.domain import DecisionRequest, Event, Feedback, StoredDecision
from engine.learning.features import hash_index
from engine.learning.serving import ModelRegistry, unpack_weights
from engine.learning.spec import ModelSpec, load_model_specs
from engine.learning.worker import LearnerWorker, group_name, learn_model, window_member
from engine.rules.registry import RuleRegistry
from engine.state import keys
from engine.state.keys import model_due
from engine.state.learning_store import LearningStore, SnapshotRefused
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_RULES, ROOT, T0

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


async def pending(redis: aioredis.Redis, spec: ModelSpec) -> int:
    """Feedback entries the model's group holds as delivered and not acknowledged, whoever to."""
    summary = await redis.xpending(keys.STREAM_FEEDBACK, group_name(spec.id))
    return int(summary["pending"])


async def acknowledged(redis: aioredis.Redis, spec: ModelSpec) -> str:
    """How far the model's group has been told learning is done."""
    (info,) = [g for g in await redis.xinfo_groups(keys.STREAM_FEEDBACK) if g["name"].decode() == group_name(spec.id)]
    return info["last-delivered-id"].decode()


async def snapshot_position(learning: LearningStore, spec: ModelSpec) -> str | None:
    snapshot = await learning.load_snapshot(spec.id)
    return snapshot.meta["positions"].get(keys.STREAM_FEEDBACK) if snapshot is not None else None


async def snapshot_examples_is(learning: LearningStore, spec: ModelSpec, n: int) -> bool:
    return await snapshot_examples(learning, spec) == n


async def feedback_ids(redis: aioredis.Redis) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await redis.xrange(keys.STREAM_FEEDBACK)]


def read_up_to(caplog: pytest.LogCaptureFixture, consumer: str, entry_id: str) -> Callable[[], Awaitable[bool]]:
    """Whether `consumer` has read the feedback stream up to `entry_id` (its learner logs each page)."""

    async def check() -> bool:
        messages = (r.getMessage() for r in caplog.records if r.name == "engine.learner")
        return any(f" {consumer} read " in m and m.endswith(f" up to {entry_id}") for m in messages)

    return check


async def test_a_refused_holder_stands_by_without_acknowledging(
    stores: tuple[RedisStore, LearningStore],
    spec: ModelSpec,
    clock: FixedClock,
    redis_async: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="engine.learner")
    store, learning = stores
    stop = asyncio.Event()
    task = asyncio.create_task(learn_model(learning, spec, clock, "p0", stop, lease_ttl_ms=60_000, idle_s=0.05))
    d1 = await shown(store, spec, T0, "t1")
    await respond(store, d1, "t1", "accept")
    await wait_until(lambda: snapshot_examples_is(learning, spec, 1))
    (first, *_) = await feedback_ids(redis_async)
    await wait_until(lambda: acknowledged_is(redis_async, spec, first))

    await redis_async.set(keys.model_lease(spec.id), "intruder", px=60_000)  # p0 has not noticed yet
    d2 = await shown(store, spec, T0, "t2")
    await respond(store, d2, "t2", "accept")
    (_, second) = await feedback_ids(redis_async)
    await wait_until(read_up_to(caplog, "p0", second))
    await wait_until(lambda: refused(caplog))
    assert await snapshot_examples(learning, spec) == 1, "p0's snapshot was refused"
    assert await acknowledged(redis_async, spec) == first, "and it acknowledged nothing"
    assert not task.done()

    await redis_async.delete(keys.model_lease(spec.id))
    await wait_until(lambda: snapshot_examples_is(learning, spec, 2))
    stop.set()
    await task
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None and snapshot.meta["evidence"] == {"t1": 1.0, "t2": 1.0}
    assert await acknowledged(redis_async, spec) == second and await pending(redis_async, spec) == 0


async def acknowledged_is(redis: aioredis.Redis, spec: ModelSpec, entry_id: str) -> bool:
    return await acknowledged(redis, spec) == entry_id


async def refused(caplog: pytest.LogCaptureFixture) -> bool:
    return any("standing by" in r.getMessage() for r in caplog.records if r.name == "engine.learner")


async def test_a_second_learner_takes_over_midway_and_every_entry_is_learned_once(
    stores: tuple[RedisStore, LearningStore],
    spec: ModelSpec,
    clock: FixedClock,
    redis_async: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="engine.learner")
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
    ids = await feedback_ids(redis_async)
    await wait_until(lambda: acknowledged_is(redis_async, spec, ids[2]))  # the published entries are acknowledged
    await feed(3, 3)
    ids = await feedback_ids(redis_async)
    await wait_until(read_up_to(caplog, holder, ids[5]))
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
    assert await acknowledged(redis_async, spec) == (await feedback_ids(redis_async))[-1]
    assert await pending(redis_async, spec) == 0


async def test_a_holder_that_reads_after_losing_its_lease_strands_nothing(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_async: aioredis.Redis
) -> None:
    store, learning = stores
    assert await learning.acquire_lease(spec.id, "A", 200)
    a = LearnerWorker(learning, spec, clock, consumer="A", snapshot_every_s=3600.0, lease="A")
    await a.restore()
    await asyncio.sleep(0.3)  # A stalls past its lease
    assert await learning.acquire_lease(spec.id, "B", 60_000)
    b = LearnerWorker(learning, spec, clock, consumer="B", snapshot_every_s=0.0, lease="B")
    await b.restore()  # B takes over before A wakes

    d1 = await shown(store, spec, T0, "t1")
    await respond(store, d1, "t1", "accept")
    await a.step(block_ms=None)  # A wakes and reads t1 before it could know the lease is B's
    assert a.state.evidence == {"t1": 1.0}
    with pytest.raises(SnapshotRefused):
        await a.publish()

    d2 = await shown(store, spec, T0, "t2")
    await respond(store, d2, "t2", "accept")
    await drain(b)
    assert b.state.evidence == {"t1": 1.0, "t2": 1.0}, "what A read is still B's to learn"

    await learning.release_lease(spec.id, "B")
    assert await learning.acquire_lease(spec.id, "A", 60_000)
    again = LearnerWorker(learning, spec, clock, consumer="A", snapshot_every_s=0.0, lease="A")
    await again.restore()
    await drain(again)
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None and snapshot.meta["evidence"] == {"t1": 1.0, "t2": 1.0}, "each entry learned once"
    assert pickle.loads(snapshot.learner).examples == 2
    assert await pending(redis_async, spec) == 0
    assert await acknowledged(redis_async, spec) == (await feedback_ids(redis_async))[-1]


@pytest.mark.parametrize("seed", range(6))
async def test_whatever_the_interleaving_of_stalls_and_takeovers_every_entry_is_learned_once(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_async: aioredis.Redis, seed: int
) -> None:
    """Learners take the lease from one another at random points; the ones that lost it keep
    reading, learning and trying to publish as if they had not noticed."""
    store, learning = stores
    rng = random.Random(seed)
    names = iter(f"w{i}" for i in range(1000))

    async def take_over() -> LearnerWorker:
        name = next(names)
        await redis_async.delete(keys.model_lease(spec.id))  # the previous holder's lease lapsed
        assert await learning.acquire_lease(spec.id, name, 60_000)
        w = LearnerWorker(learning, spec, clock, consumer=name, snapshot_every_s=rng.choice([0.0, 3600.0]), lease=name, batch=2)
        await w.restore()
        return w

    holder = await take_over()
    stale: list[LearnerWorker] = []
    fed = 0
    for _ in range(60):
        action = rng.choice(["feed", "feed", "step", "publish", "take over", "stale step", "stale publish"])
        try:
            if action == "feed":
                d = await shown(store, spec, T0, f"t{fed}")
                await respond(store, d, f"t{fed}", "accept")
                fed += 1
            elif action == "step":
                await holder.step(block_ms=None)
            elif action == "publish":
                await holder.publish()
            elif action == "take over":
                stale.append(holder)
                holder = await take_over()
            elif stale and action == "stale step":
                await rng.choice(stale).step(block_ms=None)
            elif stale and action == "stale publish":
                await rng.choice(stale).publish()
        except SnapshotRefused:
            assert action.startswith("stale"), "only a learner that lost its lease is refused"

    final = await take_over()
    while (await final.step(block_ms=None)).entries:
        pass
    await final.publish()
    snapshot = await learning.load_snapshot(spec.id)
    assert snapshot is not None
    assert snapshot.meta["evidence"] == {f"t{i}": 1.0 for i in range(fed)}, "every entry learned, none twice"
    assert pickle.loads(snapshot.learner).examples == fed
    assert await pending(redis_async, spec) == 0


async def test_entries_left_pending_by_a_group_reader_are_learned_once_and_acknowledged(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock, redis_async: aioredis.Redis
) -> None:
    store, learning = stores
    first = worker(learning, spec, clock)
    await first.restore()
    for i in range(2):
        d = await shown(store, spec, T0, f"t{i}")
        await respond(store, d, f"t{i}", "accept")
    await drain(first)
    for i in range(2, 4):
        d = await shown(store, spec, T0, f"t{i}")
        await respond(store, d, f"t{i}", "accept")
    # A learner of an earlier release took deliveries through the group and died before its snapshot.
    await redis_async.xgroup_setid(keys.STREAM_FEEDBACK, group_name(spec.id), "0")
    await redis_async.xreadgroup(group_name(spec.id), "old", {keys.STREAM_FEEDBACK: ">"})
    assert await pending(redis_async, spec) == 4

    second = worker(learning, spec, clock, name="w2")
    await second.restore()
    assert await pending(redis_async, spec) == 2, "what the snapshot covers is acknowledged at once"
    await drain(second)
    assert second.state.evidence == {f"t{i}": 1.0 for i in range(4)}
    assert second.state.examples == 4
    assert await pending(redis_async, spec) == 0
    assert await acknowledged(redis_async, spec) == (await feedback_ids(redis_async))[-1]


async def test_learning_uses_the_features_the_model_saw_at_decision_time_not_todays_profile(
    stores: tuple[RedisStore, LearningStore], spec: ModelSpec, clock: FixedClock
) -> None:
    """An accept often arrives after the profile changed (an upgrade is a common reason to accept);
    crediting today's profile would teach the model about a customer it never scored."""
    store, learning = stores
    service = DecisionService(store, RuleRegistry.from_directory(EXAMPLE_RULES), clock, models=ModelRegistry([spec]))
    await store.seed_profiles([("mover", {"tier": "silver", "segment": "family", "age": 40})])
    decision = await service.decide(DecisionRequest("mover", "web"))
    assert decision.treatments and decision.model_version is not None, "a scored decision to answer"
    chosen = decision.treatments[0].id

    update = Event("upgrade-1", "mover", "profile_update", attributes={"tier": "platinum", "segment": "business"})
    assert (await service.record_events([update])).accepted == 1
    assert {"tier": "platinum", "segment": "business"}.items() <= (await service.customer_view("mover")).profile.items()
    clock.advance(minutes=5)
    await service.record_feedback(Feedback("accept-1", decision.decision_id, chosen, "accept"))

    w = worker(learning, spec, clock)
    await w.restore()
    await drain(w)
    assert w.state.evidence == {chosen: 1.0}
    served = await learning.load_served(spec.id)
    assert served is not None
    weights = unpack_weights(served.weights, spec.dimension)

    def weight(name: str) -> float:
        return float(weights[hash_index(name, spec.hash_bits)])

    then = ["c.tier=silver", "c.segment=family", f"t.id={chosen}&c.tier=silver", f"t.id={chosen}&c.segment=family"]
    now = ["c.tier=platinum", "c.segment=business", f"t.id={chosen}&c.tier=platinum", f"t.id={chosen}&c.segment=business"]
    assert all(weight(name) > 0 for name in then), {name: weight(name) for name in then}
    assert all(weight(name) == 0 for name in now), {name: weight(name) for name in now}
