"""Tiers from the equity score and the expected gain of moving a customer up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.equity.config import EquityConfig
from engine.equity.tiers import (
    expected_tier_gain,
    tier_bounds,
    tier_gains,
    tier_gains_py,
    tier_of,
    tier_ranks,
    tier_ranks_py,
    warm_up,
)

CONFIG = EquityConfig.default()  # bronze 0, silver 35, gold 55, platinum 75; 20 per point
BOUNDS = tier_bounds(CONFIG)


def test_bounds_follow_the_configured_tiers() -> None:
    assert BOUNDS.tolist() == [0.0, 35.0, 55.0, 75.0]
    assert CONFIG.tier_names == ("bronze", "silver", "gold", "platinum")


@pytest.mark.parametrize(
    ("equity", "tier"),
    [
        (0.0, "bronze"),
        (34.999999, "bronze"),
        (35.0, "silver"),
        (35.000001, "silver"),
        (54.99, "silver"),
        (55.0, "gold"),
        (74.999, "gold"),
        (75.0, "platinum"),
        (100.0, "platinum"),
        (-3.0, "bronze"),
        (math.nan, "bronze"),
    ],
)
def test_tier_of_at_and_around_the_bounds(equity: float, tier: str) -> None:
    assert tier_of(equity, CONFIG) == tier
    assert CONFIG.tier_names[tier_ranks(np.array([equity]), BOUNDS)[0]] == tier


@settings(max_examples=100, deadline=None)
@given(equity=st.lists(st.floats(-10, 110) | st.sampled_from([35.0, 55.0, 75.0, math.nan]), max_size=50))
def test_tier_ranks_kernel_matches_its_twin(equity: list[float]) -> None:
    values = np.array(equity, dtype=np.float64)
    ranks = tier_ranks(values, BOUNDS)
    assert ranks.dtype == np.int64
    assert ranks.tolist() == tier_ranks_py(values, BOUNDS).tolist()
    assert ranks.tolist() == [CONFIG.tier_rank(tier_of(e, CONFIG)) for e in equity]


def test_gain_is_zero_when_the_target_is_not_above_the_current_tier() -> None:
    assert expected_tier_gain(60.0, "gold", 1.0, CONFIG) == 0.0  # already gold
    assert expected_tier_gain(60.0, "silver", 1.0, CONFIG) == 0.0  # below
    assert expected_tier_gain(60.0, "bronze", 0.7, CONFIG) == 0.0
    assert expected_tier_gain(80.0, "platinum", 0.5, CONFIG) == 0.0


def test_gain_is_the_distance_to_the_target_bound_in_money_times_the_uplift() -> None:
    # gold starts at 55: 55 - 42 = 13 points, 20 per point, 30% chance
    assert expected_tier_gain(42.0, "gold", 0.3, CONFIG) == pytest.approx(0.3 * 13 * 20, rel=1e-15)
    assert expected_tier_gain(42.0, "platinum", 0.3, CONFIG) == pytest.approx(0.3 * 33 * 20, rel=1e-15)
    assert expected_tier_gain(34.5, "silver", 1.0, CONFIG) == pytest.approx(0.5 * 20, rel=1e-15)
    assert expected_tier_gain(42.0, "gold", 0.0, CONFIG) == 0.0


@settings(max_examples=100, deadline=None)
@given(equity=st.floats(0, 100), target=st.sampled_from(CONFIG.tier_names), p=st.floats(0.01, 1))
def test_gain_is_positive_above_the_current_tier_and_proportional_to_the_uplift(equity: float, target: str, p: float) -> None:
    full = expected_tier_gain(equity, target, 1.0, CONFIG)
    gain = expected_tier_gain(equity, target, p, CONFIG)
    if CONFIG.tier_rank(target) > CONFIG.tier_rank(tier_of(equity, CONFIG)):
        assert full > 0.0 and gain > 0.0
        assert gain == pytest.approx(p * full, rel=1e-12)
        assert expected_tier_gain(equity, target, p / 2, CONFIG) == pytest.approx(gain / 2, rel=1e-12)
    else:
        assert full == gain == 0.0


@settings(max_examples=100, deadline=None)
@given(
    equity=st.floats(0, 100),
    targets=st.lists(st.tuples(st.integers(-1, 3), st.floats(0, 1)), max_size=20),
    money=st.sampled_from([0.0, 1.0, 20.0, 1e6]),
)
def test_tier_gains_kernel_matches_its_twin_and_the_scalar_function(
    equity: float, targets: list[tuple[int, float]], money: float
) -> None:
    rank = np.array([t for t, _ in targets], dtype=np.int64)
    uplift = np.array([p for _, p in targets], dtype=np.float64)
    gains = tier_gains(equity, rank, uplift, BOUNDS, money)
    assert gains.tolist() == tier_gains_py(equity, rank, uplift, BOUNDS, money).tolist()
    config = CONFIG.model_copy(update={"money_per_point": money})
    for (target, p), gain in zip(targets, gains.tolist(), strict=True):
        expected = 0.0 if target < 0 else expected_tier_gain(equity, CONFIG.tier_names[target], p, config)
        assert gain == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_a_target_rank_beyond_the_tiers_is_an_error() -> None:
    args = (10.0, np.array([4], dtype=np.int64), np.array([0.5]), BOUNDS, 20.0)
    with pytest.raises(IndexError):
        tier_gains(*args)
    with pytest.raises(IndexError):
        tier_gains_py(*args)


@pytest.mark.parametrize(
    ("equity", "tier", "p", "named"),
    [
        (40.0, "diamond", 0.5, "diamond"),
        (40.0, "gold", 1.5, "uplift_probability"),
        (40.0, "gold", -0.1, "uplift_probability"),
        (40.0, "gold", math.nan, "uplift_probability"),
        (math.nan, "gold", 0.5, "equity"),
    ],
)
def test_bad_arguments_are_refused_naming_them(equity: float, tier: str, p: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        expected_tier_gain(equity, tier, p, CONFIG)


def test_warm_up_compiles_the_signatures_callers_use() -> None:
    assert warm_up() >= 0.0
    before = (len(tier_ranks.signatures), len(tier_gains.signatures))
    tier_ranks(np.linspace(0, 100, 7), BOUNDS)
    tier_gains(float(np.float64(41.5)), np.array([2, -1], dtype=np.int64), np.array([0.2, 0.9]), BOUNDS, 20.0)
    assert (len(tier_ranks.signatures), len(tier_gains.signatures)) == before
