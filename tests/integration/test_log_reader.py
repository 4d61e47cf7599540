"""Reading the decision and feedback streams back from a real Redis, then evaluating on them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.domain import Feedback, StoredDecision
from engine.errors import InvalidInput
from engine.evaluation.report import EvaluationReport, run_evaluation
from engine.learning.serving import pack_weights
from engine.learning.spec import load_model_specs
from engine.state import keys
from engine.state.learning_store import LearningStore
from engine.state.log_reader import read_decisions, read_feedback, read_logs
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_MODELS, T0

pytestmark = pytest.mark.anyio

CANDIDATES = [
    {"id": "a", "group": "g1", "kind": "offer", "multiplier": 10.0, "propensity": 0.3, "prior": [1, 9]},
    {"id": "b", "group": "g2", "kind": "offer", "multiplier": 20.0, "propensity": 0.1, "prior": [1, 9]},
]


def decision(i: int, **extra: Any) -> StoredDecision:
    return StoredDecision(
        decision_id=keys.new_decision_id(f"{i:032x}", f"c{i}"),
        customer_id=f"c{i}",
        channel="web",
        placement="home",
        ts=T0 + i,
        rules_version="v1",
        treatments=[{"id": "a", "kind": "offer", "group": "g1", "selection_probability": 0.8}],
        policy="epsilon_greedy",
        model={"id": "response", "version": 1, "fingerprint": "x"},
        inputs={"customer": {"tier": "gold"}, "context": {"device": "ios"}},
        candidates=CANDIDATES,
        limits={"limit": 1, "max_per_group": 1},
        **extra,
    )


@pytest.fixture
async def store(redis_async: aioredis.Redis) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_async, decision_ttl_s=3600, dedup_ttl_s=600, recent_limit=5, stream_maxlen=10_000)
    await s.prepare()
    yield s
    await s.aclose()


async def write(store: RedisStore, records: list[StoredDecision]) -> None:
    for r in records:
        await store.write_decision(r, ())


async def answer(store: RedisStore, record: StoredDecision, outcome: str, value: float | None = None) -> None:
    fb = Feedback(f"f-{record.decision_id}-{outcome}", record.decision_id, "a", outcome, value, record.ts + 5)
    await store.apply_feedback(fb, record.customer_id, record.ts + 5)


def entry_ms(redis_sync: Redis, stream: str) -> list[int]:
    return [int(eid.decode().split("-")[0]) for eid, _ in redis_sync.xrange(stream)]


async def test_decisions_come_back_whole_in_order_across_chunks(store: RedisStore, redis_async: aioredis.Redis) -> None:
    records = [decision(i) for i in range(7)]
    await write(store, records)
    for chunk in (1, 3, 7, 100):
        got = [d async for d in read_decisions(redis_async, chunk=chunk)]
        assert got == [orjson.loads(orjson.dumps(r)) for r in records]
        assert StoredDecision(**got[0]) == records[0]
    assert [d["decision_id"] async for d in read_decisions(redis_async, max_count=4, chunk=3)] == [
        r.decision_id for r in records[:4]
    ]
    assert [d async for d in read_decisions(redis_async, max_count=0)] == []


async def test_feedback_entries_carry_the_joined_fields(store: RedisStore, redis_async: aioredis.Redis) -> None:
    r = decision(1)
    await write(store, [r])
    await answer(store, r, "purchase", 120.0)
    (entry,) = [f async for f in read_feedback(redis_async)]
    assert entry == {
        "feedback_id": f"f-{r.decision_id}-purchase",
        "decision_id": r.decision_id,
        "treatment_id": "a",
        "customer_id": "c1",
        "outcome": "purchase",
        "value": 120.0,
        "ts": r.ts + 5,
    }


async def test_time_bounds_use_the_entry_times(store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis) -> None:
    early = [decision(i) for i in range(3)]
    await write(store, early)
    await asyncio.sleep(0.01)  # the later batch gets strictly later entry ids
    late = [decision(i) for i in range(3, 6)]
    await write(store, late)
    times = entry_ms(redis_sync, keys.STREAM_DECISIONS)
    split_end, split_start = times[2], times[3]
    assert split_end < split_start

    async def ids(**kw: int) -> list[str]:
        return [d["decision_id"] async for d in read_decisions(redis_async, chunk=2, **kw)]

    assert await ids(since_ms=split_start) == [r.decision_id for r in late]
    assert await ids(until_ms=split_end) == [r.decision_id for r in early]
    assert await ids(since_ms=times[0], until_ms=times[-1]) == [r.decision_id for r in early + late]
    assert await ids(since_ms=times[-1] + 1) == []
    with pytest.raises(InvalidInput, match="before since_ms"):
        await ids(since_ms=split_start, until_ms=split_end)


async def test_read_logs_keeps_the_feedback_of_decisions_read(
    store: RedisStore, redis_async: aioredis.Redis, redis_sync: Redis
) -> None:
    old = decision(0)
    await write(store, [old])
    await asyncio.sleep(0.01)
    new = [decision(1), decision(2)]
    await write(store, new)
    for r in (old, *new):
        await answer(store, r, "accept")
    redis_sync.xadd(keys.STREAM_DECISIONS, {"d": b"{not json"})
    redis_sync.xadd(keys.STREAM_FEEDBACK, {"other": b"1"})
    since = entry_ms(redis_sync, keys.STREAM_DECISIONS)[1]
    logs = await read_logs(redis_async, since_ms=since, chunk=1)
    assert [d["decision_id"] for d in logs.decisions] == [r.decision_id for r in new]
    assert [f["decision_id"] for f in logs.feedback] == [r.decision_id for r in new]
    assert logs.unreadable == 2
    capped = await read_logs(redis_async, max_decisions=1)
    assert [d["decision_id"] for d in capped.decisions] == [old.decision_id]
    assert [f["decision_id"] for f in capped.feedback] == [old.decision_id]


async def test_run_evaluation_from_redis(store: RedisStore, redis_async: aioredis.Redis, tmp_path: Path) -> None:
    records = [decision(i) for i in range(20)]
    records.append(dataclasses.replace(decision(20), fallback=True, policy="fallback", candidates=[]))
    await write(store, records)
    for r in records[:5]:
        await answer(store, r, "accept")
    await answer(store, records[5], "click")  # the example model's reward: a click weighs 0.2

    async def run(policy: str, **kw: Any) -> EvaluationReport:
        return await run_evaluation(redis_client=redis_async, policy=policy, models_dir=EXAMPLE_MODELS, n_boot=0, **kw)

    export = tmp_path / "rounds.jsonl"
    report = await run("fixed:a", export=export)
    assert report.counts is not None
    assert report.counts.decisions == 21 and report.counts.skipped["fallback"] == 1
    assert report.exported == 20 and export.exists()
    assert report.logging.value == pytest.approx(5.2 / 20)
    assert report.estimates[0].value == pytest.approx(5.2 / 20 / 0.8)

    # With published weights the model policy re-scores the logged inputs.
    (spec,) = [s for s in load_model_specs(EXAMPLE_MODELS) if s.id == "response"]
    weights = pack_weights(np.zeros(spec.dimension))
    meta = {"fingerprint": spec.fingerprint, "bias": 3.0, "evidence": {"b": 1e6}}
    await LearningStore(redis_async).save_snapshot("response", b"", weights, meta, [], {}, 0)
    model = await run("model:response")
    assert any("version 1" in n for n in model.notes)
    # b is now almost sure to respond (sigmoid(3) x 20 beats 0.1 x 10), so the greedy slot goes to b:
    # nothing logged shows b, and only the 5% exploration share keeps a's rows in play.
    assert model.estimates[0].value < report.estimates[0].value
