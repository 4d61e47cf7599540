"""Model policies read from a real Redis: published weights are replayed, a spec without them is trained first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from redis import asyncio as aioredis

from engine.domain import Feedback, StoredDecision
from engine.evaluation.report import EvaluationReport, run_evaluation
from engine.learning.serving import pack_weights
from engine.learning.spec import load_model_specs
from engine.state import keys
from engine.state.learning_store import LearningStore
from engine.state.redis_store import RedisStore
from tests.conftest import EXAMPLE_MODELS, T0

pytestmark = pytest.mark.anyio

CANDIDATES = [
    {"id": "a", "group": "g1", "kind": "offer", "multiplier": 10.0, "propensity": 0.3, "prior": [1, 9]},
    {"id": "b", "group": "g2", "kind": "offer", "multiplier": 20.0, "propensity": 0.1, "prior": [1, 9]},
]


def decision(i: int) -> StoredDecision:
    shown = "a" if i % 4 else "b"
    return StoredDecision(
        decision_id=keys.new_decision_id(f"{i:032x}", f"c{i}"),
        customer_id=f"c{i}",
        channel="web",
        placement="home",
        ts=T0 + i * 1000,
        rules_version="v1",
        treatments=[{"id": shown, "kind": "offer", "group": "g", "selection_probability": 0.75 if shown == "a" else 0.25}],
        policy="epsilon_greedy",
        model={"id": "response", "version": 1, "fingerprint": "x"},
        inputs={"customer": {"tier": "gold" if i % 2 else "silver"}, "context": {"device": "ios"}},
        candidates=CANDIDATES,
        limits={"limit": 1, "max_per_group": 1},
    )


@pytest.fixture
async def logged(redis_async: aioredis.Redis) -> AsyncIterator[list[StoredDecision]]:
    store = RedisStore(redis_async, decision_ttl_s=3600, dedup_ttl_s=600, recent_limit=5, stream_maxlen=10_000)
    await store.prepare()
    records = [decision(i) for i in range(40)]
    for r in records:
        await store.write_decision(r, ())
    for r in records[::3]:
        feedback = Feedback(f"f-{r.decision_id}", r.decision_id, r.treatments[0]["id"], "accept", None, r.ts + 5)
        await store.apply_feedback(feedback, r.customer_id, r.ts + 5)
    yield records
    await store.aclose()


async def _run(redis_client: aioredis.Redis, policy: str, **kw: Any) -> EvaluationReport:
    return await run_evaluation(redis_client=redis_client, policy=policy, **{"models_dir": EXAMPLE_MODELS, "n_boot": 0, **kw})


async def test_published_weights_are_replayed_and_a_spec_without_them_is_trained(
    redis_async: aioredis.Redis, logged: list[StoredDecision]
) -> None:
    (spec,) = [s for s in load_model_specs(EXAMPLE_MODELS) if s.id == "response"]
    meta = {"fingerprint": spec.fingerprint, "bias": 1.0, "evidence": {"a": 10.0}}
    await LearningStore(redis_async).save_snapshot("response", b"", pack_weights(np.zeros(spec.dimension)), meta, [], {}, 0)

    published = await _run(redis_async, "model:response")
    assert published.training is None and any("version 1" in n for n in published.notes)
    assert published.logging.decisions == 40

    # The disabled alternative was never learned by a worker: it is trained on the first 20 decisions.
    alternative = await _run(redis_async, "model:response_bagged")
    assert alternative.training is not None
    t = alternative.training
    assert (t.train_decisions, t.eval_decisions) == (20, 20)
    assert (t.train_until_ts, t.eval_from_ts) == (T0 + 19_000, T0 + 20_000)
    assert alternative.logging.decisions == 20
    assert any("no published weights" in n for n in alternative.notes)
    assert alternative.counts is not None and alternative.counts.decisions_used == 40

    # Training can be asked for even when weights are published, so they are judged on rounds they did not see.
    retrained = await _run(redis_async, "model:response", train="always")
    assert retrained.training is not None and retrained.logging.decisions == 20
    assert not any("version 1" in n for n in retrained.notes)
