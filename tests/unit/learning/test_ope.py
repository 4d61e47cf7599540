"""Offline policy evaluation: hand arithmetic, interval coverage against a known truth, variance."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.learning.banditlog import LoggedRound
from engine.learning.ope import (
    Estimate,
    dr,
    effective_sample_size,
    evaluate,
    fit_reward_model,
    fixed_action,
    from_scores,
    importance_weights,
    ips,
    snips,
)
from engine.learning.synthetic import Simulator

AB = ("a", "b")

# Four hand-built rounds, both actions eligible each time.
#   round  shown  propensity  reward
#   1      a      0.5         1
#   2      b      0.5         0
#   3      a      0.8         0
#   4      b      0.2         1
TINY = [
    LoggedRound(context={"i": 1}, action="a", reward=1.0, propensity=0.5, actions=AB),
    LoggedRound(context={"i": 2}, action="b", reward=0.0, propensity=0.5, actions=AB),
    LoggedRound(context={"i": 3}, action="a", reward=0.0, propensity=0.8, actions=AB),
    LoggedRound(context={"i": 4}, action="b", reward=1.0, propensity=0.2, actions=AB),
]


def mix(pa: float):
    """A context-free target showing a with probability pa and b otherwise."""

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        return {"a": pa, "b": 1.0 - pa}

    return target


# --- hand arithmetic --------------------------------------------------------------------------


def test_ips_and_snips_by_hand_for_a_deterministic_target() -> None:
    # Always show a: weights 1/0.5 = 2, 0, 1/0.8 = 1.25, 0.
    # IPS   = (2·1 + 0 + 1.25·0 + 0) / 4 = 0.5
    # SNIPS = (2·1 + 1.25·0) / (2 + 1.25) = 2 / 3.25
    # ESS   = (2 + 1.25)² / (2² + 1.25²) = 10.5625 / 5.5625
    est = ips(TINY, fixed_action("a"), n_boot=0)
    assert est.value == pytest.approx(0.5)
    assert est.n == 4
    assert est.n_decisions == 4
    assert est.ess == pytest.approx(10.5625 / 5.5625)
    assert np.isnan(est.ci_low) and np.isnan(est.ci_high)
    assert snips(TINY, fixed_action("a"), n_boot=0).value == pytest.approx(2 / 3.25)


def test_ips_and_snips_by_hand_for_a_stochastic_target() -> None:
    # π(a) = 0.3, π(b) = 0.7: weights 0.3/0.5 = 0.6, 0.7/0.5 = 1.4, 0.3/0.8 = 0.375, 0.7/0.2 = 3.5.
    # IPS   = (0.6·1 + 1.4·0 + 0.375·0 + 3.5·1) / 4 = 4.1 / 4 = 1.025
    # SNIPS = 4.1 / (0.6 + 1.4 + 0.375 + 3.5) = 4.1 / 5.875
    assert ips(TINY, mix(0.3), n_boot=0).value == pytest.approx(1.025)
    assert snips(TINY, mix(0.3), n_boot=0).value == pytest.approx(4.1 / 5.875)
    assert importance_weights(TINY, mix(0.3)) == pytest.approx([0.6, 1.4, 0.375, 3.5])


def test_dr_by_hand_with_a_given_reward_model() -> None:
    # q(·, a) = 0.5, q(·, b) = 0.25. Always show a, so the direct term is 0.5 per decision.
    # Corrections w·(r − q(x, shown)): 2·(1 − 0.5) = 1, 0, 1.25·(0 − 0.5) = −0.625, 0.
    # DR = 0.5 + (1 − 0.625) / 4 = 0.59375
    def q(context: Mapping[str, Any], action: str) -> float:
        return {"a": 0.5, "b": 0.25}[action]

    assert dr(TINY, fixed_action("a"), reward_model=q, n_boot=0).value == pytest.approx(0.59375)


def test_default_reward_model_is_a_shrunk_per_action_mean() -> None:
    # Global mean 2/4 = 0.5; a: (1 + 0 + 1·0.5) / (2 + 1) = 0.5; b: (0 + 1 + 0.5) / 3 = 0.5.
    model = fit_reward_model(TINY, prior=1.0)
    assert model({}, "a") == pytest.approx(0.5)
    assert model({}, "b") == pytest.approx(0.5)
    assert model({}, "never_shown") == pytest.approx(0.5)
    # Stratified by context key i, shrunk toward the action mean: cell (a, i=1) = (1 + 0.5) / 2.
    by_i = fit_reward_model(TINY, by=("i",), prior=1.0)
    assert by_i({"i": 1}, "a") == pytest.approx(0.75)
    assert by_i({"i": 99}, "a") == pytest.approx(0.5)
    # Without a prior the per-action mean is the plain mean: a earned 1 of 2.
    assert fit_reward_model(TINY, prior=0.0)({}, "a") == pytest.approx(0.5)


def test_clipping_is_applied_and_reported() -> None:
    # clip = 1.5: weights min(2, 1.5) = 1.5, 0, 1.25, 0; one row of four was clipped.
    # IPS = 1.5 / 4 = 0.375; SNIPS = 1.5 / 2.75
    ips_est, snips_est = evaluate(TINY, fixed_action("a"), estimators=("ips", "snips"), clip=1.5, n_boot=0)
    assert ips_est.value == pytest.approx(0.375)
    assert snips_est.value == pytest.approx(1.5 / 2.75)
    assert ips_est.clipped_share == pytest.approx(0.25)
    assert ips_est.clip == 1.5
    assert ips_est.ess == pytest.approx(2.75**2 / (1.5**2 + 1.25**2))
    assert ips(TINY, fixed_action("a"), n_boot=0).clipped_share == 0.0


def test_slate_rows_are_summed_per_decision() -> None:
    # Two decisions, each showing two of three items; propensities are marginal inclusion
    # probabilities. The target includes a and c with certainty and b with probability 0.5.
    #   d1: a (0.5, r=1) → w 2;  b (0.8, r=1) → w 0.625
    #   d2: b (0.4, r=0) → w 1.25; c (0.5, r=1) → w 2
    # IPS per decision: d1 = 2·1 + 0.625·1 = 2.625, d2 = 0 + 2·1 = 2 → mean 2.3125.
    # SNIPS: target slate size k = 1 + 0.5 + 1 = 2.5; n_d = Σw / k: d1 2.625 / 2.5, d2 3.25 / 2.5
    #        value = (2.625 + 2) / ((2.625 + 3.25) / 2.5)
    abc = ("a", "b", "c")
    log = [
        LoggedRound(context={}, action="a", reward=1.0, propensity=0.5, actions=abc, decision_id="d1"),
        LoggedRound(context={}, action="b", reward=1.0, propensity=0.8, actions=abc, decision_id="d1"),
        LoggedRound(context={}, action="b", reward=0.0, propensity=0.4, actions=abc, decision_id="d2"),
        LoggedRound(context={}, action="c", reward=1.0, propensity=0.5, actions=abc, decision_id="d2"),
    ]

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        return {"a": 1.0, "b": 0.5, "c": 1.0}

    est_ips, est_snips = evaluate(log, target, estimators=("ips", "snips"), n_boot=50)
    assert est_ips.n == 4
    assert est_ips.n_decisions == 2
    assert est_ips.value == pytest.approx(2.3125)
    assert est_snips.value == pytest.approx((2.625 + 2) / ((2.625 + 3.25) / 2.5))
    # Resampling whole decisions: every bootstrap value is one of three decision mixes.
    assert est_ips.ci_low >= 2.0 - 1e-12
    assert est_ips.ci_high <= 2.625 + 1e-12


def test_rounds_without_eligible_actions_use_every_action_in_the_log() -> None:
    seen: list[tuple[str, ...]] = []

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        seen.append(actions)
        return {"x": 1.0}

    log = [
        LoggedRound(context={"i": 1}, action="y", reward=1.0, propensity=0.5),
        LoggedRound(context={"i": 2}, action="x", reward=1.0, propensity=0.5),
    ]
    # Only row 2 shows x: IPS = (0 + 2·1) / 2 = 1.
    assert ips(log, target, n_boot=0).value == pytest.approx(1.0)
    assert seen == [("x", "y"), ("x", "y")]


def test_ess_equals_n_when_the_target_is_the_logging_policy() -> None:
    sim = Simulator.make(seed=3)
    log = sim.simulate(1500, seed=4)
    for est in evaluate(log, sim.logging_policy(), n_boot=0):
        assert est.ess == pytest.approx(len(log))
        assert est.clipped_share == 0.0
    assert effective_sample_size(np.ones(7)) == pytest.approx(7)
    assert effective_sample_size([0.0, 0.0]) == 0.0


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    sim = Simulator.make(seed=1)
    log = sim.simulate(1000, seed=2)
    target = from_scores(sim.reward_model())
    first = evaluate(log, target, n_boot=300, seed=7)
    again = evaluate(log, target, n_boot=300, seed=np.random.default_rng(7))
    assert first == again
    for est in first:
        assert isinstance(est, Estimate)
        assert est.ci_low < est.value < est.ci_high
    narrower = evaluate(log, target, n_boot=300, alpha=0.5, seed=7)
    for wide, narrow in zip(first, narrower, strict=True):
        assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


# --- against the simulator's ground truth ------------------------------------------------------

COVERAGE_SEEDS = 100


@cache
def coverage_run() -> dict[str, tuple[int, list[float]]]:
    """Per estimator: how many seeds' 95% intervals held the truth, and each seed's error."""
    covered = {"ips": 0, "snips": 0, "dr": 0}
    errors: dict[str, list[float]] = {e: [] for e in covered}
    for seed in range(COVERAGE_SEEDS):
        sim = Simulator.make(seed=seed)
        target = from_scores(sim.reward_model(), "greedy")  # greedy on the true rates, not the logger's noisy ones
        truth = sim.true_value(target)
        assert truth != pytest.approx(sim.true_value(sim.logging_policy()), abs=1e-3)
        log = sim.simulate(2000, seed=10_000 + seed)
        for est in evaluate(log, target, n_boot=200, seed=seed):
            covered[est.estimator] += est.ci_low <= truth <= est.ci_high
            errors[est.estimator].append(est.value - truth)
    return {e: (covered[e], errors[e]) for e in covered}


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_bootstrap_interval_covers_the_true_value(estimator: str) -> None:
    hits, errors = coverage_run()[estimator]
    assert hits / COVERAGE_SEEDS >= 0.90, f"{estimator} covered the truth for {hits}/{COVERAGE_SEEDS} seeds"
    # And the point estimates are centred on the truth (a bias would show as a shifted mean).
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(len(errors))


def test_dr_has_lower_variance_than_ips_with_a_decent_reward_model() -> None:
    sim = Simulator.make(seed=11)
    target = from_scores(sim.reward_model(), "greedy")
    values: dict[str, list[float]] = {"ips": [], "dr": [], "dr_default": []}
    for seed in range(50):
        log = sim.simulate(2000, seed=seed)
        q = fit_reward_model(log, by=("segment",))
        values["ips"].append(ips(log, target, n_boot=0).value)
        values["dr"].append(dr(log, target, reward_model=q, n_boot=0).value)
        values["dr_default"].append(dr(log, target, n_boot=0).value)
    assert np.std(values["dr"]) < np.std(values["ips"])
    # Even the context-free default (per-action means) removes some reward noise here.
    assert np.std(values["dr_default"]) < np.std(values["ips"])
    truth = sim.true_value(target)
    assert np.mean(values["dr"]) == pytest.approx(truth, abs=3 * np.std(values["dr"]) / np.sqrt(50))


def test_clipping_reduces_variance() -> None:
    sim = Simulator.make(seed=5, temperature=0.1)
    target = from_scores(sim.reward_model(), "greedy")
    raw: list[float] = []
    clipped: list[float] = []
    shares: list[float] = []
    for seed in range(50):
        log = sim.simulate(1000, seed=seed)
        plain, capped = ips(log, target, n_boot=0), ips(log, target, clip=3.0, n_boot=0)
        raw.append(plain.value)
        clipped.append(capped.value)
        shares.append(capped.clipped_share)
    assert np.std(clipped) < np.std(raw)
    assert min(shares) > 0.0
    # Clipping only lowers weights, so with non-negative rewards it can only lower IPS.
    assert all(c <= r + 1e-12 for c, r in zip(clipped, raw, strict=True))


def test_true_value_of_the_logging_policy_matches_a_large_log() -> None:
    sim = Simulator.make(seed=2)
    log = sim.simulate(40_000, seed=9)
    rewards = np.array([r.reward for r in log])
    assert np.mean(rewards) == pytest.approx(sim.true_value(sim.logging_policy()), abs=4 * rewards.std() / np.sqrt(len(log)))


def test_simulator_is_seeded() -> None:
    assert Simulator.make(seed=4).simulate(50, seed=1) == Simulator.make(seed=4).simulate(50, seed=1)
    assert Simulator.make(seed=4).simulate(50, seed=1) != Simulator.make(seed=4).simulate(50, seed=2)


# --- property -----------------------------------------------------------------------------------


@st.composite
def logged_by_known_policy(draw: st.DrawFn) -> list[LoggedRound]:
    """Rounds whose context carries the logging distribution, so a target can replay it exactly."""
    n_actions = draw(st.integers(1, 4))
    actions = tuple(f"t{i}" for i in range(n_actions))
    rounds = []
    for _ in range(draw(st.integers(1, 30))):
        raw = draw(st.lists(st.floats(0.05, 1.0), min_size=n_actions, max_size=n_actions))
        probs = [x / sum(raw) for x in raw]
        k = draw(st.integers(0, n_actions - 1))
        reward = draw(st.floats(-10.0, 10.0, allow_nan=False))
        rounds.append(
            LoggedRound(context={"probs": probs}, action=actions[k], reward=reward, propensity=probs[k], actions=actions)
        )
    return rounds


def replay_logging(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
    return dict(zip(actions, context["probs"], strict=True))


@settings(max_examples=150, deadline=None)
@given(logged_by_known_policy())
def test_snips_of_the_logging_policy_is_the_mean_reward(rounds: list[LoggedRound]) -> None:
    est = snips(rounds, replay_logging, n_boot=0)
    mean = float(np.mean([r.reward for r in rounds]))
    assert est.value == pytest.approx(mean, rel=1e-9, abs=1e-9)
    assert est.ess == pytest.approx(len(rounds))


# --- target builders and argument checks ------------------------------------------------------------


def test_target_builders() -> None:
    def score(context: Mapping[str, Any], action: str) -> float:
        return {"a": 1.0, "b": 1.0, "c": 0.0}[action]

    abc = ("a", "b", "c")
    assert from_scores(score)({}, abc) == {"a": 0.5, "b": 0.5, "c": 0.0}
    eps = from_scores(score, "epsilon_greedy", epsilon=0.3)({}, abc)
    assert eps == pytest.approx({"a": 0.35 + 0.1, "b": 0.35 + 0.1, "c": 0.1})
    soft = from_scores(score, "softmax", temperature=0.5)({}, abc)
    e = np.exp(2.0)
    assert soft == pytest.approx({"a": e / (2 * e + 1), "b": e / (2 * e + 1), "c": 1 / (2 * e + 1)})
    assert from_scores(score)({}, ()) == {}
    assert fixed_action("b")({}, abc) == {"b": 1.0}
    assert fixed_action("z")({}, abc) == {}


@pytest.mark.parametrize(
    ("kwargs", "fld"),
    [
        ({"estimators": ("ips", "magic")}, "estimators"),
        ({"clip": 0.0}, "clip"),
        ({"n_boot": -1}, "n_boot"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], fld: str) -> None:
    with pytest.raises(InvalidInput) as err:
        evaluate(TINY, fixed_action("a"), **kwargs)
    assert err.value.field == fld


def test_bad_targets_and_empty_logs_are_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        ips(TINY, mix(1.5), n_boot=0)
    assert err.value.field == "target"
    with pytest.raises(InvalidInput) as err:
        ips([], fixed_action("a"))
    assert err.value.field == "rounds"
    with pytest.raises(InvalidInput) as err:
        from_scores(lambda c, a: 0.0, "boltzmann")  # type: ignore[arg-type]
    assert err.value.field == "policy"
