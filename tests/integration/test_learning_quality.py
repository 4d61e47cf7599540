"""The engine learns: a synthetic population through the real decision and feedback path."""

from __future__ import annotations

import pytest
from redis import asyncio as aioredis

from engine.simulation.learning import OFFERS, SEGMENTS, TRUE_P, run_learning

pytestmark = pytest.mark.anyio


async def test_learned_policy_reaches_90_percent_of_the_oracle_and_beats_the_prior(redis_async: aioredis.Redis) -> None:
    run = await run_learning(redis_async, decisions=20_000, seed=1)
    assert run.model_version > 0, "the learner published weights and serving installed them"
    assert run.share_of_oracle >= 0.9, f"learned {run.learned_value:.3f} vs oracle {run.oracle_value:.3f}: {run.learned_choice}"
    assert run.learned_value > run.prior_value
    best = {seg: OFFERS[int(TRUE_P[i].argmax())] for i, seg in enumerate(SEGMENTS)}
    assert sum(run.learned_choice[s] == best[s] for s in SEGMENTS) >= 3
