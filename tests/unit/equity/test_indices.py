"""The equity kernels against their plain-Python twins, hand-computed values and monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.equity.config import EquityConfig
from engine.equity.facts import FACT_FIELDS, N_FACTS, decayed, facts_row, increments, merge
from engine.equity.indices import (
    INDEX_NAMES,
    N_PARAMS,
    compute_indices,
    compute_indices_py,
    equity_one,
    equity_one_py,
    kernel_params,
    warm_up,
)

CONFIG = EquityConfig.default()
PARAMS = kernel_params(CONFIG)
DAY = 86_400_000
NOW = 1_795_428_000_000  # 2026-11-23 10:00 UTC
COL = {name: i for i, name in enumerate(FACT_FIELDS)}
C, P, R, L = range(4)


def _stored(now: int = NOW, config: EquityConfig = CONFIG, **values: float) -> np.ndarray:
    """A stored row whose facts, read at `now`, are `values` (decayed sums are scaled back up)."""
    unit = decayed(dict.fromkeys(FACT_FIELDS, 1.0), now, config)  # what a stored 1 reads as (1 for plain fields)
    return np.array([values.get(f, 0.0) / unit[f] for f in FACT_FIELDS])


def _one(row: np.ndarray, retention: float = math.nan, now: int = NOW) -> tuple[float, float, float, float, float]:
    return equity_one(row, now, retention, PARAMS)


def _random_facts(seed: int, n: int, regime: str, now: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if regime == "zeros":
        facts = np.zeros((n, N_FACTS))
    elif regime == "typical":
        facts = rng.gamma(0.7, 50.0, size=(n, N_FACTS)) * rng.choice([0.0, 1.0, 1e3, 1e30], size=(n, N_FACTS))
        facts[:, COL["margin"]] *= rng.choice([-1.0, 1.0], size=n)
        facts[:, COL["survey_score"]] *= rng.uniform(-1.5, 1.5, size=n)
        facts[:, COL["sentiment"]] *= rng.uniform(-1.5, 1.5, size=n)
    else:  # extremes: huge, tiny, negative, infinite and NaN entries anywhere
        pool = np.array([0.0, 1.0, -3.0, 1e-300, 1e15, 1e300, -1e300, np.inf, -np.inf, np.nan])
        facts = rng.choice(pool, size=(n, N_FACTS)) * rng.uniform(0.5, 2.0, size=(n, N_FACTS))
    if regime != "zeros":
        for name in ("first_seen_ms", "last_purchase_ms"):
            facts[:, COL[name]] = rng.choice([0.0, np.nan, now - 1e11, now - 1e9, now + 1e9], size=n) * rng.uniform(
                0.9, 1.0, size=n
            )
    retention = rng.choice([np.nan, 0.0, 0.3, 1.0, -0.5, 1.5, np.inf], size=n)
    return np.ascontiguousarray(facts), retention


def _random_config(draw: st.DrawFn) -> EquityConfig:
    weight = st.floats(0, 10)
    index_weights = {k: draw(weight) for k in INDEX_NAMES}
    index_weights[draw(st.sampled_from(INDEX_NAMES))] += 0.5
    loyalty_weights = {k: draw(weight) for k in ("tenure", "recency", "frequency", "retention")}
    loyalty_weights["recency"] += 0.5
    return EquityConfig.model_validate(
        {
            "weights": index_weights,
            "contribution": {"half_life_days": draw(st.floats(7, 3650)), "margin_share": draw(st.floats(0, 1))},
            "perception": {
                "half_life_days": draw(st.floats(7, 3650)),
                "prior_strength": draw(st.floats(0.01, 50)),
                "complaint_weight": draw(weight),
                "survey_weight": draw(weight),
            },
            "referral": {"half_life_days": draw(st.floats(7, 3650)), "scale": draw(st.floats(0.1, 100))},
            "loyalty": {"recency_half_life_days": draw(st.floats(1, 3650)), "weights": loyalty_weights},
        }
    )


random_config = st.composite(_random_config)


@settings(max_examples=250, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 30),
    regime=st.sampled_from(["zeros", "typical", "extremes"]),
    years_from_landmark=st.floats(-5, 15),
    config=st.one_of(st.just(CONFIG), random_config()),
)
def test_kernels_match_the_python_twins_and_stay_within_0_and_100(
    seed: int, n: int, regime: str, years_from_landmark: float, config: EquityConfig
) -> None:
    now = int(config.landmark_ms + years_from_landmark * 365 * DAY)
    params = kernel_params(config)
    facts, retention = _random_facts(seed, n, regime, now)
    indices, equity = compute_indices(facts, now, retention, params)
    indices_py, equity_py = compute_indices_py(facts, now, retention, params)
    assert indices.shape == (n, 4) and equity.shape == (n,)
    assert indices.dtype == equity.dtype == np.float64
    np.testing.assert_allclose(indices, indices_py, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(equity, equity_py, rtol=1e-12, atol=1e-12)
    assert np.all((indices >= 0) & (indices <= 100))  # also false for NaN
    assert np.all((equity >= 0) & (equity <= 100))
    for i in range(min(n, 3)):
        one = equity_one(facts[i], now, retention[i], params)
        assert one == equity_one_py(facts[i], now, retention[i], params)
        assert one == (*indices[i], equity[i])


def test_hand_computed_customer() -> None:
    row = _stored(
        spend=1000.0,  # = spend_scale: half the spend part
        margin=250.0,  # = margin_scale: half the margin part
        complaints=1.0,
        compliments=2.0,
        surveys=1.0,
        survey_score=1.0,
        mentions=2.0,
        sentiment=1.0,
        referrals=2.0,  # = referral scale
        purchases=6.0,  # = frequency scale
        first_seen_ms=NOW - 730 * DAY,  # = tenure scale
        last_purchase_ms=NOW - 90 * DAY,  # one recency half-life ago
    )
    contribution, perception, referral, loyalty, equity = _one(row, retention=0.5)
    assert contribution == pytest.approx(50.0, rel=1e-12)
    # num = 1·2 − 2·1 + 2·1 + 0.5·1 = 2.5; den = 2 + 2 + 2 + 2 + 0.5·2 = 9
    assert perception == pytest.approx(50 + 50 * 2.5 / 9, rel=1e-12)
    assert referral == pytest.approx(50.0, rel=1e-12)
    assert loyalty == pytest.approx(50.0, rel=1e-12)  # every loyalty part is 0.5
    assert equity == pytest.approx(0.35 * 50 + 0.2 * (50 + 50 * 2.5 / 9) + 0.15 * 50 + 0.3 * 50, rel=1e-12)


def test_an_unknown_customer_is_neutral_on_perception_and_zero_elsewhere() -> None:
    contribution, perception, referral, loyalty, equity = _one(np.zeros(N_FACTS))
    assert (contribution, perception, referral, loyalty) == (0.0, 50.0, 0.0, 0.0)
    assert equity == pytest.approx(0.2 * 50.0, rel=1e-12)


def test_unknown_retention_falls_back_to_recency() -> None:
    row = _stored(purchases=3.0, first_seen_ms=NOW - 400 * DAY, last_purchase_ms=NOW - 45 * DAY)
    recency = 2 ** (-45 / 90)
    assert _one(row, retention=math.nan) == pytest.approx(_one(row, retention=recency), rel=1e-12)
    assert _one(row, retention=1.0)[L] > _one(row, retention=math.nan)[L] > _one(row, retention=0.0)[L]
    assert _one(row, retention=7.0) == _one(row, retention=1.0)  # clamped


def test_contribution_reads_the_forward_decayed_purchases_like_the_direct_decayed_sums() -> None:
    purchases = [(120.0, 30.0, 3), (80.0, None, 200), (2_500.0, 400.0, 700), (15.0, 1.0, 1_500)]  # amount, margin, age
    stored: dict[str, float] = {}
    for amount, margin, age in purchases:
        attrs = {"amount": amount} if margin is None else {"amount": amount, "margin": margin}
        stored = merge(stored, increments("purchase", attrs, NOW - age * DAY, CONFIG))
    weight = [2 ** (-age / 180) for _, _, age in purchases]
    spend = sum(a * w for (a, _, _), w in zip(purchases, weight, strict=True))
    margin = sum((a * 0.25 if m is None else m) * w for (a, m, _), w in zip(purchases, weight, strict=True))
    expected = 100 * (0.5 * spend / (spend + 1000) + 0.5 * margin / (margin + 250))
    assert _one(facts_row(stored))[C] == pytest.approx(expected, rel=1e-9)


base_amounts = st.floats(0, 1_000)


@settings(max_examples=100, deadline=None)
@given(
    complaints=base_amounts,
    compliments=base_amounts,
    surveys=base_amounts,
    mentions=base_amounts,
    extra=st.floats(0.5, 50),
)
def test_more_complaints_lower_perception(
    complaints: float, compliments: float, surveys: float, mentions: float, extra: float
) -> None:
    def perception(k: float) -> float:
        row = _stored(
            complaints=k,
            compliments=compliments,
            surveys=surveys,
            survey_score=0.3 * surveys,
            mentions=mentions,
            sentiment=-0.2 * mentions,
        )
        return _one(row)[P]

    assert perception(complaints + extra) < perception(complaints)


@settings(max_examples=100, deadline=None)
@given(spend=st.floats(0, 1e6), margin=st.floats(-1e3, 1e5), extra=st.floats(1, 1e4))
def test_more_spend_raises_contribution(spend: float, margin: float, extra: float) -> None:
    assert _one(_stored(spend=spend + extra, margin=margin))[C] > _one(_stored(spend=spend, margin=margin))[C]


@settings(max_examples=100, deadline=None)
@given(
    recent=st.integers(0, 1_999),
    gap=st.integers(1, 1_000),
    retention=st.sampled_from([math.nan, 0.0, 0.6]),
    purchases=st.floats(0, 50),
)
def test_a_more_recent_purchase_raises_loyalty(recent: int, gap: int, retention: float, purchases: float) -> None:
    def loyalty(days_ago: int) -> float:
        row = _stored(purchases=purchases, first_seen_ms=NOW - 3_000 * DAY, last_purchase_ms=NOW - days_ago * DAY)
        return _one(row, retention)[L]

    assert loyalty(recent) > loyalty(recent + gap)


@settings(max_examples=100, deadline=None)
@given(referrals=st.floats(0, 1_000), extra=st.floats(0.5, 20))
def test_more_referrals_raise_the_referral_index(referrals: float, extra: float) -> None:
    assert _one(_stored(referrals=referrals + extra))[R] > _one(_stored(referrals=referrals))[R]


@settings(max_examples=50, deadline=None)
@given(newer=st.integers(0, 1_500), gap=st.integers(1, 1_500))
def test_older_referrals_count_less_than_new_ones(newer: int, gap: int) -> None:
    def referral_index(days_ago: int) -> float:
        return _one(facts_row(increments("referral", {}, NOW - days_ago * DAY, CONFIG)))[R]

    assert 0.0 < referral_index(newer + gap) < referral_index(newer) < 100.0


def test_bad_shapes_are_refused() -> None:
    facts = np.zeros((2, N_FACTS))
    with pytest.raises(ValueError, match="facts must be"):
        compute_indices(np.zeros((2, N_FACTS - 1)), NOW, np.zeros(2), PARAMS)
    with pytest.raises(ValueError, match="retention"):
        compute_indices(facts, NOW, np.zeros(3), PARAMS)
    with pytest.raises(ValueError, match="params"):
        equity_one(np.zeros(N_FACTS), NOW, 0.5, np.zeros(N_PARAMS - 1))
    with pytest.raises(ValueError, match="retention"):
        compute_indices_py(facts, NOW, np.zeros(3), PARAMS)


def test_empty_batch() -> None:
    for fn in (compute_indices, compute_indices_py):
        indices, equity = fn(np.zeros((0, N_FACTS)), NOW, np.zeros(0), PARAMS)
        assert indices.shape == (0, 4) and equity.shape == (0,)


def test_warm_up_compiles_the_signatures_callers_use() -> None:
    assert warm_up() >= 0.0
    before = (len(compute_indices.signatures), len(equity_one.signatures))
    rng = np.random.default_rng(1)
    facts = rng.random((5, N_FACTS))
    compute_indices(facts, NOW, rng.random(5), PARAMS)
    equity_one(facts_row({"spend": 10.0}), NOW, 0.4, PARAMS)
    equity_one(facts[2], NOW, float(rng.random()), PARAMS)
    assert (len(compute_indices.signatures), len(equity_one.signatures)) == before
