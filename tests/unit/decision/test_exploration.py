"""Exploration policies: the logged selection probabilities are those of the process that runs.

Three independent references: a brute-force enumeration over candidates in plain Python (exact,
small cases), a vectorised numpy simulation of the sequential process (50k slates), and the
engine's own sampler run many times. The module under test enumerates over classes of
candidates, integrates an arrival-time race, or samples, so agreement is not by construction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from engine.decision.exploration import (
    ExplorationPolicy,
    SlateSelection,
    _beta_sf,
    _draw_and_enumerate,
    _log_beta,
    _score_and_draw,
    in_holdout,
    select_scored,
    select_slate,
    slate_marginals,
    warm_up,
)
from engine.scoring.kernels import score_candidates_py

GREEDY = ExplorationPolicy.greedy()
EPSILON = ExplorationPolicy.epsilon_greedy(0.2)
SOFTMAX = ExplorationPolicy.softmax(0.5)
RANDOM = ExplorationPolicy.random()
SEQUENTIAL = [GREEDY, EPSILON, SOFTMAX, RANDOM]

# -- references ---------------------------------------------------------------------------------


def _rooms(groups: Sequence[object], max_per_group: int | None, budgets: Mapping[object, int]) -> dict[object, int]:
    room = {}
    for g in set(groups):
        r = 10**9 if max_per_group is None else max_per_group
        if g in budgets:
            r = min(r, max(budgets[g], 0))
        room[g] = r
    return room


def _slot_distribution(
    policy: ExplorationPolicy, pri: list[float], groups: list[object], room: dict[object, int], taken: frozenset[int]
) -> dict[int, float]:
    used = Counter(groups[i] for i in taken)
    admissible = [i for i in range(len(pri)) if i not in taken and used[groups[i]] < room[groups[i]]]
    if not admissible:
        return {}
    best = max(admissible, key=lambda i: (pri[i], -i))
    m = len(admissible)
    if policy.kind == "greedy" or (policy.kind == "epsilon_greedy" and policy.epsilon == 0):
        return {best: 1.0}
    if policy.kind == "epsilon_greedy":
        dist = {i: policy.epsilon / m for i in admissible}
        dist[best] += 1 - policy.epsilon
        return dist
    if policy.kind == "softmax":
        positive = [i for i in admissible if pri[i] > 0]
        if not positive:
            return {i: 1 / m for i in admissible}
        logw = {i: math.log(pri[i]) / policy.temperature for i in positive}
        top = max(logw.values())
        w = {i: math.exp(logw[i] - top) for i in positive}
        total = sum(w.values())
        return {i: w[i] / total for i in positive}
    return {i: 1 / m for i in admissible}


def brute_force(
    policy: ExplorationPolicy,
    pri: Sequence[float],
    groups: Sequence[object],
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None = None,
) -> np.ndarray:
    """Every ordered slate, candidate by candidate."""
    pri, groups = list(pri), list(groups)
    room = _rooms(groups, max_per_group, budgets or {})
    marg = [0.0] * len(pri)

    def walk(taken: frozenset[int], p: float, depth: int) -> None:
        if depth == limit:
            return
        for i, q in _slot_distribution(policy, pri, groups, room, taken).items():
            if q > 0:
                marg[i] += p * q
                walk(taken | {i}, p * q, depth + 1)

    walk(frozenset(), 1.0, 0)
    return np.array(marg)


def simulate(
    policy: ExplorationPolicy,
    pri: Sequence[float],
    groups: Sequence[object],
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None = None,
    *,
    samples: int = 50_000,
    seed: int = 12345,
    alpha: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    multiplier: np.ndarray | None = None,
) -> np.ndarray:
    """The sequential process, vectorised over simulated slates; returns inclusion frequencies."""
    rng = np.random.default_rng(seed)
    pri_arr = np.asarray(pri, dtype=float)
    n = pri_arr.shape[0]
    labels = sorted(set(groups), key=str)
    gid = np.array([labels.index(g) for g in groups])
    room = _rooms(groups, max_per_group, budgets or {})
    cap = np.array([room[g] for g in labels])[gid]
    rows = np.arange(samples)
    taken = np.zeros((samples, n), bool)
    used = np.zeros((samples, len(labels)), int)
    counts = np.zeros(n)
    theta = None
    if policy.kind == "thompson":
        theta = rng.beta(alpha, beta, size=(samples, n)) * multiplier
    for _ in range(limit):
        adm = ~taken & (used[:, gid] < cap)
        m = adm.sum(1)
        live = m > 0
        if not live.any():
            break
        if policy.kind in ("greedy", "epsilon_greedy", "thompson"):
            score = theta if theta is not None else np.broadcast_to(pri_arr, (samples, n))
            best = np.where(adm, score, -np.inf).argmax(1)
            eps = policy.epsilon if policy.kind == "epsilon_greedy" else 0.0
            probs = eps * adm / np.maximum(m, 1)[:, None]
            probs[rows, best] += 1 - eps
        elif policy.kind == "softmax":
            with np.errstate(divide="ignore"):
                logw = np.where(adm & (pri_arr > 0), np.log(pri_arr) / policy.temperature, -np.inf)
            top = logw.max(1)
            zero = top == -np.inf
            w = np.exp(logw - np.where(zero, 0.0, top)[:, None])
            w[zero] = adm[zero]
            probs = w
        else:
            probs = adm.astype(float)
        cum = probs.cumsum(1)
        u = rng.random(samples) * cum[:, -1]
        pick = (cum > u[:, None]).argmax(1)
        pick_live = pick[live]
        taken[rows[live], pick_live] = True
        np.add.at(used, (rows[live], gid[pick_live]), 1)
        counts += np.bincount(pick_live, minlength=n)
    return counts / samples


def fillable(groups: Sequence[object], limit: int, max_per_group: int | None, budgets: Mapping[object, int] | None) -> int:
    room = _rooms(groups, max_per_group, budgets or {})
    sizes = Counter(groups)
    return min(limit, sum(min(room[g], sizes[g]) for g in sizes))


def random_case(rng: np.random.Generator, n_max: int = 8) -> tuple[np.ndarray, list[str], int, int | None, dict[str, int]]:
    n = int(rng.integers(0, n_max + 1))
    pri = rng.choice([0.0, 0.1, 0.1, 0.3, 0.5, 0.9, 2.0], size=n) * rng.choice([1.0, 1.0, 1000.0])
    if rng.random() < 0.5:
        pri = pri * rng.random(n)
    groups = [f"g{x}" for x in rng.integers(0, 3, n)]
    limit = int(rng.integers(0, 5))
    max_per_group = None if rng.random() < 0.2 else int(rng.integers(1, 4))
    budgets = {"g0": int(rng.integers(-1, 3))} if rng.random() < 0.5 else {}
    return pri, groups, limit, max_per_group, budgets


# -- exactness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [*SEQUENTIAL, ExplorationPolicy.epsilon_greedy(1.0), ExplorationPolicy.softmax(0.05)])
def test_exact_probabilities_match_brute_force_enumeration(policy: ExplorationPolicy) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(150):
        pri, groups, limit, max_per_group, budgets = random_case(rng)
        expected = brute_force(policy, pri, groups, limit, max_per_group, budgets)
        got, method = slate_marginals(pri, groups, limit=limit, max_per_group=max_per_group, budgets=budgets, policy=policy)
        assert method == "enumeration"
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert got.sum() == pytest.approx(fillable(groups, limit, max_per_group, budgets), abs=1e-9)


@pytest.mark.parametrize("policy", [SOFTMAX, RANDOM, ExplorationPolicy.softmax(0.02), ExplorationPolicy.softmax(50.0)])
def test_race_integral_matches_brute_force_enumeration(policy: ExplorationPolicy) -> None:
    rng = np.random.default_rng(99)
    for _ in range(150):
        pri, groups, limit, max_per_group, budgets = random_case(rng, n_max=7)
        expected = brute_force(policy, pri, groups, limit, max_per_group, budgets)
        got, method = slate_marginals(
            pri, groups, limit=limit, max_per_group=max_per_group, budgets=budgets, policy=policy, path_bound=0
        )
        assert method in ("race_integral", "enumeration")  # an empty slate needs no integral
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("policy", [EPSILON, SOFTMAX, RANDOM, ExplorationPolicy.epsilon_greedy(0.05)])
@pytest.mark.parametrize(
    ("n", "n_groups", "limit", "max_per_group"),
    [(6, 2, 3, 2), (12, 3, 3, 2), (40, 4, 3, 1), (120, 5, 4, 2)],
)
def test_probabilities_agree_with_simulating_the_process(
    policy: ExplorationPolicy, n: int, n_groups: int, limit: int, max_per_group: int
) -> None:
    rng = np.random.default_rng(n * 31 + limit)
    pri = rng.gamma(0.7, size=n)
    pri[rng.random(n) < 0.1] = 0.0
    groups = [f"g{x}" for x in rng.integers(0, n_groups, n)]
    budgets = {"g1": 1}
    got, method = slate_marginals(pri, groups, limit=limit, max_per_group=max_per_group, budgets=budgets, policy=policy)
    assert method != "monte_carlo"
    assert got.sum() == pytest.approx(fillable(groups, limit, max_per_group, budgets), abs=1e-9)
    simulated = simulate(policy, pri, groups, limit, max_per_group, budgets)
    np.testing.assert_allclose(got, simulated, rtol=0, atol=0.01)


@pytest.mark.parametrize("policy", SEQUENTIAL)
def test_sampled_slates_respect_limits_and_follow_the_logged_probabilities(policy: ExplorationPolicy) -> None:
    pri = np.array([0.9, 0.8, 0.7, 0.35, 0.3, 0.05, 0.0, 0.6])
    groups = ["sales", "sales", "sales", "service", "service", "info", "info", "retention"]
    budgets = {"retention": 0, "service": 1}
    limit, max_per_group, runs = 4, 2, 20_000
    rng = np.random.default_rng(5)
    counts = np.zeros(len(pri))
    expected_len = fillable(groups, limit, max_per_group, budgets)
    marginals = None
    for _ in range(runs):
        sel = select_slate(pri, groups, limit=limit, max_per_group=max_per_group, budgets=budgets, policy=policy, rng=rng)
        assert len(sel.chosen) == expected_len == len(set(sel.chosen))
        per_group = Counter(groups[i] for i in sel.chosen)
        assert all(c <= max_per_group for c in per_group.values())
        assert all(per_group[g] <= b for g, b in budgets.items())
        counts[list(sel.chosen)] += 1
        marginals = sel.marginals
    assert marginals is not None
    np.testing.assert_allclose(counts / runs, marginals, rtol=0, atol=0.015)


def test_monte_carlo_epsilon_greedy_is_close_to_exact_and_bounded() -> None:
    rng = np.random.default_rng(8)
    n = 30
    pri = rng.random(n)
    groups = rng.integers(0, 10, n)
    exact, method = slate_marginals(pri, groups, limit=3, max_per_group=1, policy=EPSILON)
    assert method == "enumeration"
    estimate, method = slate_marginals(pri, groups, limit=3, max_per_group=1, policy=EPSILON, path_bound=0)
    assert method == "monte_carlo"
    assert np.all((estimate >= 0) & (estimate <= 1))
    np.testing.assert_allclose(estimate, exact, rtol=0, atol=0.02)
    # rarely shown candidates, whose inverse probability weighs most, are estimated tightly
    rare = exact < 0.05
    np.testing.assert_allclose(estimate[rare], exact[rare], rtol=0.05)
    sel = select_slate(pri, groups, limit=3, max_per_group=1, policy=EPSILON, rng=rng, path_bound=0)
    assert sel.method == "monte_carlo" and not sel.exact and sel.marginals is None
    np.testing.assert_allclose(sel.selection_probability, exact[list(sel.chosen)], atol=0.02)


def test_large_epsilon_greedy_is_exact_thanks_to_interchangeable_candidates() -> None:
    rng = np.random.default_rng(3)
    pri = rng.random(200)
    groups = rng.integers(0, 4, 200)
    sel = select_slate(pri, groups, limit=3, max_per_group=2, policy=EPSILON, rng=rng)
    assert sel.method == "enumeration" and sel.marginals is not None
    assert sel.marginals.sum() == pytest.approx(3.0, abs=1e-12)


def test_large_softmax_uses_the_race_integral_for_the_shown_candidates() -> None:
    rng = np.random.default_rng(4)
    pri = rng.random(200)
    groups = rng.integers(0, 4, 200)
    sel = select_slate(pri, groups, limit=3, max_per_group=2, policy=SOFTMAX, rng=rng)
    assert sel.method == "race_integral" and sel.exact and sel.marginals is None
    full, _ = slate_marginals(pri, groups, limit=3, max_per_group=2, policy=SOFTMAX)
    assert full.sum() == pytest.approx(3.0, abs=1e-9)
    np.testing.assert_allclose(sel.selection_probability, full[list(sel.chosen)], rtol=0, atol=1e-14)


# -- policy properties --------------------------------------------------------------------------


def test_greedy_shows_the_best_with_certainty() -> None:
    pri = [0.2, 0.9, 0.9, 0.5, 0.7]
    groups = ["a", "a", "a", "b", "b"]
    sel = select_slate(pri, groups, limit=3, max_per_group=1, policy=GREEDY, rng=np.random.default_rng(0))
    assert sel.chosen == (1, 4)  # ties to the lowest index; one per group leaves two slots
    assert sel.selection_probability == (1.0, 1.0)
    assert sel.marginals is not None and sel.marginals.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert sel.exact


def test_greedy_does_not_draw_from_the_generator() -> None:
    rng = np.random.default_rng(11)
    select_slate([0.1, 0.2], ["a", "b"], limit=2, max_per_group=1, policy=GREEDY, rng=rng)
    assert rng.random() == np.random.default_rng(11).random()


def test_epsilon_zero_is_greedy() -> None:
    rng = np.random.default_rng(1)
    pri = rng.random(15)
    groups = rng.integers(0, 3, 15)
    a = select_slate(pri, groups, limit=3, max_per_group=2, policy=ExplorationPolicy.epsilon_greedy(0.0), rng=rng)
    b = select_slate(pri, groups, limit=3, max_per_group=2, policy=GREEDY, rng=rng)
    assert a.chosen == b.chosen
    assert a.selection_probability == b.selection_probability == (1.0, 1.0, 1.0)
    assert a.marginals is not None and b.marginals is not None
    assert np.array_equal(a.marginals, b.marginals)


def test_softmax_with_huge_temperature_is_uniform() -> None:
    pri = [0.01, 0.5, 3.0, 0.2, 9.0, 0.7]
    groups = ["a", "a", "b", "b", "c", "c"]
    hot, _ = slate_marginals(pri, groups, limit=3, max_per_group=1, policy=ExplorationPolicy.softmax(1e9))
    uniform, _ = slate_marginals(pri, groups, limit=3, max_per_group=1, policy=RANDOM)
    np.testing.assert_allclose(hot, uniform, atol=1e-7)


def test_softmax_is_scale_free() -> None:
    rng = np.random.default_rng(6)
    pri = rng.random(9)
    groups = rng.integers(0, 3, 9)
    a, _ = slate_marginals(pri, groups, limit=3, max_per_group=2, policy=SOFTMAX)
    b, _ = slate_marginals(pri * 250.0, groups, limit=3, max_per_group=2, policy=SOFTMAX)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_softmax_zero_priority_only_fills_what_positives_leave() -> None:
    groups = ["a", "a", "b", "b"]
    m, _ = slate_marginals([0.5, 0.2, 0.0, 0.0], groups, limit=2, max_per_group=2, policy=SOFTMAX)
    assert m.tolist() == [1.0, 1.0, 0.0, 0.0]
    m, _ = slate_marginals([0.5, 0.2, 0.0, 0.0], groups, limit=3, max_per_group=2, policy=SOFTMAX)
    np.testing.assert_allclose(m, [1.0, 1.0, 0.5, 0.5])
    m, _ = slate_marginals([0.0, 0.0, 0.0, 0.0], groups, limit=1, max_per_group=2, policy=SOFTMAX)
    np.testing.assert_allclose(m, [0.25] * 4)


def test_softmax_with_tiny_temperature_is_greedy_without_underflow() -> None:
    pri = [0.3, 0.9, 1e-200, 0.2]
    m, _ = slate_marginals(pri, ["a", "a", "b", "b"], limit=2, max_per_group=1, policy=ExplorationPolicy.softmax(1e-3))
    np.testing.assert_allclose(m, [0.0, 1.0, 0.0, 1.0], atol=1e-12)
    m0, _ = slate_marginals(
        pri, ["a", "a", "b", "b"], limit=2, max_per_group=1, policy=ExplorationPolicy.softmax(1e-3), path_bound=0
    )
    np.testing.assert_allclose(m0, m, atol=1e-12)


def test_group_labels_may_be_integers_and_budgets_use_the_same_labels() -> None:
    pri = np.array([0.9, 0.8, 0.1, 0.2])
    groups = np.array([7, 7, 3, 3])
    sel = select_slate(pri, groups, limit=3, max_per_group=None, budgets={7: 1}, policy=GREEDY, rng=np.random.default_rng(0))
    assert sel.chosen == (0, 3, 2)


def test_nothing_to_show() -> None:
    rng = np.random.default_rng(0)
    for policy in SEQUENTIAL:
        assert select_slate([], [], limit=3, max_per_group=1, policy=policy, rng=rng).chosen == ()
        sel = select_slate([0.5, 0.4], ["a", "a"], limit=3, max_per_group=1, budgets={"a": 0}, policy=policy, rng=rng)
        assert sel.chosen == () and sel.selection_probability == ()
        assert select_slate([0.5], ["a"], limit=0, max_per_group=1, policy=policy, rng=rng).chosen == ()


@pytest.mark.parametrize(
    ("kwargs", "policy"),
    [
        ({"priorities": [0.1, -0.2]}, GREEDY),
        ({"priorities": [0.1, float("nan")]}, SOFTMAX),
        ({"priorities": [0.1, float("inf")]}, EPSILON),
        ({"groups": ["a"]}, GREEDY),
        ({}, ExplorationPolicy.thompson()),
        ({"alpha": [1.0, 0.0], "beta": [1.0, 1.0], "multiplier": [1.0, 1.0]}, ExplorationPolicy.thompson()),
        ({"alpha": [1.0, 1.0], "beta": [1.0, 1.0], "multiplier": [1.0]}, ExplorationPolicy.thompson()),
        ({"mc_samples": 0, "alpha": [1.0, 1.0], "beta": [1.0, 1.0], "multiplier": [1.0, 1.0]}, ExplorationPolicy.thompson()),
    ],
)
def test_invalid_inputs_are_rejected(kwargs: dict, policy: ExplorationPolicy) -> None:
    args: dict = {"priorities": [0.1, 0.2], "groups": ["a", "b"], **kwargs}
    with pytest.raises(ValueError):
        select_slate(limit=2, max_per_group=1, policy=policy, rng=np.random.default_rng(0), **args)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExplorationPolicy.epsilon_greedy(1.5),
        lambda: ExplorationPolicy.epsilon_greedy(-0.1),
        lambda: ExplorationPolicy.softmax(0.0),
        lambda: ExplorationPolicy.softmax(float("inf")),
        lambda: ExplorationPolicy("bandit"),  # type: ignore[arg-type]
    ],
)
def test_invalid_policies_are_rejected(make: Callable[[], ExplorationPolicy]) -> None:
    with pytest.raises(ValueError):
        make()


# -- Thompson -----------------------------------------------------------------------------------


def _thompson_case() -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    alpha = np.array([2.0, 5.0, 1.0, 30.0, 3.0, 1.0, 8.0])
    beta = np.array([8.0, 20.0, 1.0, 120.0, 3.0, 9.0, 40.0])
    multiplier = np.array([1.0, 1.5, 0.4, 1.0, 0.6, 2.0, 0.0])
    groups = ["a", "a", "b", "b", "c", "c", "c"]
    return alpha / (alpha + beta) * multiplier, groups, alpha, beta, multiplier


def test_thompson_estimate_matches_brute_force_simulation() -> None:
    pri, groups, alpha, beta, multiplier = _thompson_case()
    thompson = ExplorationPolicy.thompson()
    common = {"limit": 3, "max_per_group": 1, "budgets": {"b": 1}, "policy": thompson}
    reference = simulate(thompson, pri, groups, 3, 1, {"b": 1}, alpha=alpha, beta=beta, multiplier=multiplier)
    precise, method = slate_marginals(pri, groups, alpha=alpha, beta=beta, multiplier=multiplier, mc_samples=50_000, **common)
    assert method == "monte_carlo"
    np.testing.assert_allclose(precise, reference, atol=0.01)
    default, _ = slate_marginals(pri, groups, alpha=alpha, beta=beta, multiplier=multiplier, **common)
    np.testing.assert_allclose(default, reference, atol=0.05)  # 1,000 samples: standard error ≤ 0.016
    assert default.sum() == pytest.approx(3.0, abs=0.05)  # conditional estimates need not sum exactly


def test_thompson_shown_probabilities_are_the_estimates_for_the_shown() -> None:
    pri, groups, alpha, beta, multiplier = _thompson_case()
    kw = {"limit": 3, "max_per_group": 1, "policy": ExplorationPolicy.thompson()}
    kw |= {"alpha": alpha, "beta": beta, "multiplier": multiplier}
    full, _ = slate_marginals(pri, groups, **kw)
    sel = select_slate(pri, groups, rng=np.random.default_rng(3), **kw)
    assert sel.method == "monte_carlo" and sel.marginals is None
    np.testing.assert_allclose(sel.selection_probability, full[list(sel.chosen)], rtol=1e-12)
    assert all(p > 0 for p in sel.selection_probability)


def test_thompson_with_zero_multipliers_breaks_ties_by_index() -> None:
    groups = ["a", "b", "a", "b", "c"]
    ones = np.ones(5)
    m, _ = slate_marginals(
        np.zeros(5),
        groups,
        limit=2,
        max_per_group=1,
        policy=ExplorationPolicy.thompson(),
        alpha=ones,
        beta=ones,
        multiplier=np.zeros(5),
    )
    assert m.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_beta_survival_matches_scipy() -> None:
    from scipy import special  # installed with river; a test-only reference

    rng = np.random.default_rng(0)
    for _ in range(2000):
        a, b = np.exp(rng.uniform(-2, 11, size=2))
        x = float(rng.random())
        expected = float(special.betaincc(a, b, x))
        assert _beta_sf(x, a, b, _log_beta(a, b)) == pytest.approx(expected, abs=1e-9)


def test_thompson_slates_respect_limits_and_are_reproducible() -> None:
    pri, groups, alpha, beta, multiplier = _thompson_case()
    thompson = ExplorationPolicy.thompson()
    kw = {"limit": 3, "max_per_group": 1, "budgets": {"b": 0}, "policy": thompson}
    kw |= {"alpha": alpha, "beta": beta, "multiplier": multiplier}
    seen = Counter()
    for seed in range(300):
        sel = select_slate(pri, groups, rng=np.random.default_rng(seed), **kw)
        assert len(sel.chosen) == 2 and "b" not in {groups[i] for i in sel.chosen}
        assert len({groups[i] for i in sel.chosen}) == 2
        assert all(0.0 <= p <= 1.0 for p in sel.selection_probability)
        seen[sel.chosen] += 1
        again = select_slate(pri, groups, rng=np.random.default_rng(seed), **kw)
        assert again.chosen == sel.chosen and again.selection_probability == sel.selection_probability
    assert len(seen) > 1  # it does explore


# -- holdout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5])
def test_holdout_share_and_stickiness(share: float) -> None:
    ids = [f"cust-{i:06d}" for i in range(100_000)]
    members = [in_holdout(c, share, "2026-q4") for c in ids]
    assert sum(members) / len(ids) == pytest.approx(share, abs=0.01)
    assert members[:1000] == [in_holdout(c, share, "2026-q4") for c in ids[:1000]]
    # a larger share keeps everyone the smaller one had: growing the holdout moves nobody out
    assert all(in_holdout(c, share + 0.1, "2026-q4") for c, m in zip(ids[:2000], members, strict=False) if m)


PINNED = [False, True, True, True, True, True, True, False, False, True, False, False]


def test_holdout_is_pinned_across_processes_and_salts() -> None:
    # Fixed expectations: a change of hashing would silently move customers in and out.
    assert [in_holdout(f"cust-{i:06d}", 0.5, "s") for i in range(12)] == PINNED
    salts = [sum(in_holdout(f"cust-{i:06d}", 0.5, salt) for i in range(2000)) for salt in ("a", "b")]
    moved = sum(in_holdout(f"cust-{i:06d}", 0.5, "a") != in_holdout(f"cust-{i:06d}", 0.5, "b") for i in range(2000))
    assert all(900 < s < 1100 for s in salts) and 900 < moved < 1100  # a new salt reshuffles
    assert not in_holdout("x", 0.0, "s") and in_holdout("x", 1.0, "s")


def test_selection_is_a_frozen_record() -> None:
    sel = select_slate([0.3], ["a"], limit=1, max_per_group=1, policy=GREEDY, rng=np.random.default_rng(0))
    assert isinstance(sel, SlateSelection) and sel.policy == "greedy"
    with pytest.raises(AttributeError):
        sel.chosen = ()  # type: ignore[misc]


def test_warm_up_compiles_what_decisions_call() -> None:
    warm_up()
    before = len(_draw_and_enumerate.signatures)
    rng = np.random.default_rng(3)
    # As the pipeline calls it: a list of priorities' array, string groups, budgets by group.
    for policy in (GREEDY, EPSILON, SOFTMAX, RANDOM):
        select_slate(
            np.array([0.4, 0.2, 0.0]),
            ["sales", "service", "sales"],
            limit=2,
            max_per_group=1,
            budgets={"sales": 1},
            policy=policy,
            rng=rng,
        )
    assert len(_draw_and_enumerate.signatures) == before
    fused = len(_score_and_draw.signatures)
    # As the pipeline calls the fused kernel: the featurizer's read-only cached index matrix, or
    # the empty one of a decision without a model.
    idx = np.array([[3, -1], [0, 1], [2, 2]], dtype=np.int32)
    idx.flags.writeable = False
    for features in ((idx, np.ones((3, 2), np.float32)), (np.full((3, 0), -1, np.int32), np.zeros((3, 0), np.float32))):
        for policy in (GREEDY, EPSILON, SOFTMAX, RANDOM, ExplorationPolicy.thompson()):
            inputs = np.array([[0.4, 0.2, 0.1], [1.0] * 3, [0.0, 5.0, 1.0], [1.0, 2.0, 0.0], [1.0] * 3, [2.0] * 3])
            select_scored(*features, np.zeros(4), 0.0, inputs, ["a", "b", "a"], limit=2, max_per_group=1, policy=policy, rng=rng)
    assert len(_score_and_draw.signatures) == fused


def _scored_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(-1, 20, size=(n, 4)).astype(np.int32)
    val = rng.normal(size=(n, 4)).astype(np.float32)
    weights = rng.normal(size=20)
    prior_mean = rng.random(n)
    strength = rng.choice([0.0, 2.0, 50.0], size=n)
    evidence = rng.choice([0.0, 10.0, 1e4], size=n)
    multiplier = rng.random(n) * 40
    alpha, beta = 1 + rng.random(n) * 20, 1 + rng.random(n) * 80
    inputs = np.array((prior_mean, strength, evidence, multiplier, alpha, beta))
    groups = [f"g{g}" for g in rng.integers(0, 3, size=n)]
    return idx, val, weights, float(rng.normal()), inputs, groups


@pytest.mark.parametrize("policy", [*SEQUENTIAL, ExplorationPolicy.thompson()], ids=lambda p: p.kind)
@pytest.mark.parametrize("seed", range(6))
def test_scoring_and_choosing_in_one_call_is_scoring_then_select_slate(policy: ExplorationPolicy, seed: int) -> None:
    """The fused call against its parts: the scoring kernel's plain-Python twin for the scores,
    and select_slate, given the same draws, for the slate and its probabilities."""
    n = 3 + seed
    idx, val, weights, bias, inputs, groups = _scored_case(seed, n)
    ones = np.ones(n)
    propensity, priority = score_candidates_py(idx, val, weights, bias, inputs[0], inputs[1], inputs[2], ones, inputs[3], ones)
    kw = {"limit": 3, "max_per_group": 2, "budgets": {"g1": 1}, "policy": policy}
    sel, scores = select_scored(idx, val, weights, bias, inputs, groups, rng=np.random.default_rng(seed), **kw)
    expected = select_slate(
        priority, groups, rng=np.random.default_rng(seed), alpha=inputs[4], beta=inputs[5], multiplier=inputs[3], **kw
    )
    np.testing.assert_allclose(scores[0], propensity, rtol=1e-12)
    np.testing.assert_allclose(scores[1], priority, rtol=1e-12)
    assert sel.chosen == expected.chosen and len(sel.chosen) == 3
    np.testing.assert_allclose(sel.selection_probability, expected.selection_probability, rtol=1e-12)
    assert sel.method == expected.method and sel.policy == policy.kind
    if expected.marginals is not None and policy.kind != "thompson":
        np.testing.assert_allclose(scores[2], expected.marginals, rtol=1e-12)


def test_the_one_call_estimates_when_enumerating_is_over_its_bound() -> None:
    idx, val, weights, bias, inputs, groups = _scored_case(11, 8)
    ones = np.ones(8)
    _, priority = score_candidates_py(idx, val, weights, bias, inputs[0], inputs[1], inputs[2], ones, inputs[3], ones)
    kw = {"limit": 3, "max_per_group": 2, "policy": EPSILON, "path_bound": 0, "mc_samples": 500}
    sel, _ = select_scored(idx, val, weights, bias, inputs, groups, rng=np.random.default_rng(1), **kw)
    expected = select_slate(priority, groups, rng=np.random.default_rng(1), **kw)
    assert sel.method == "monte_carlo" and sel.chosen == expected.chosen
    np.testing.assert_allclose(sel.selection_probability, expected.selection_probability, rtol=1e-12)


def test_the_one_call_refuses_a_negative_priority() -> None:
    idx, val, weights, bias, inputs, groups = _scored_case(2, 4)
    inputs[3, 1] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        select_scored(
            idx, val, weights, bias, inputs, groups, limit=2, max_per_group=1, policy=SOFTMAX, rng=np.random.default_rng(0)
        )
