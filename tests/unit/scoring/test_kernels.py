"""The compiled scoring kernels against their plain-Python twins and against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scoring.kernels import score_candidates, score_candidates_py, top_k, top_k_py, warm_up


def _inputs(seed: int, n: int, k: int, d: int, logit_scale: float) -> tuple:
    rng = np.random.default_rng(seed)
    idx = rng.integers(-1, d, size=(n, k)).astype(np.int32)  # -1 is padding
    val = rng.normal(size=(n, k)).astype(np.float32)
    weights = rng.normal(scale=logit_scale, size=d)
    bias = float(rng.normal(scale=logit_scale))
    prior_mean = rng.random(n)
    prior_strength = rng.choice([0.0, 0.5, 2.0, 50.0], size=n)
    evidence = rng.choice([0.0, 1.0, 10.0, 1e6], size=n)
    context_weight = rng.random(n) * 3
    value = rng.random(n) * 100
    lever = rng.random(n) * 2
    return idx, val, weights, bias, prior_mean, prior_strength, evidence, context_weight, value, lever


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 40),
    k=st.integers(0, 40),
    d=st.integers(1, 300),
    logit_scale=st.sampled_from([0.0, 0.1, 1.0, 30.0, 1000.0]),
)
def test_kernel_matches_python_twin(seed: int, n: int, k: int, d: int, logit_scale: float) -> None:
    args = _inputs(seed, n, k, d, logit_scale)
    propensity, priority = score_candidates(*args)
    propensity_py, priority_py = score_candidates_py(*args)
    assert propensity.shape == priority.shape == (n,)
    assert propensity.dtype == priority.dtype == np.float64
    np.testing.assert_allclose(propensity, propensity_py, rtol=0, atol=1e-9)
    np.testing.assert_allclose(priority, priority_py, rtol=1e-12, atol=1e-9)
    assert np.all((propensity >= 0) & (propensity <= 1))


@pytest.mark.parametrize("logit", [1000.0, -1000.0, 745.0, -745.0, 0.0])
def test_extreme_logits_saturate_without_overflow(logit: float) -> None:
    idx = np.array([[0, -1]], dtype=np.int32)
    val = np.array([[1.0, 5.0]], dtype=np.float32)
    weights = np.array([logit])
    one = np.ones(1)
    # no prior strength: the propensity is the model probability itself
    propensity, _ = score_candidates(idx, val, weights, 0.0, one * 0.3, one * 0.0, one, one, one, one)
    propensity_py, _ = score_candidates_py(idx, val, weights, 0.0, one * 0.3, one * 0.0, one, one, one, one)
    expected = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
    assert propensity[0] == pytest.approx(expected, abs=1e-300)
    assert propensity_py[0] == pytest.approx(expected, abs=1e-300)


def test_no_evidence_gives_exactly_the_prior_mean() -> None:
    args = list(_inputs(7, 25, 16, 64, 5.0))
    args[6] = np.zeros(25)
    propensity, priority = score_candidates(*args)
    prior_mean = args[4]
    assert np.array_equal(propensity, prior_mean)
    assert np.array_equal(priority, prior_mean * args[7] * args[8] * args[9])


def test_no_prior_strength_gives_exactly_the_model_probability() -> None:
    idx = np.array([[3, 1, -1]], dtype=np.int32)
    val = np.array([[0.5, 2.0, 9.0]], dtype=np.float32)
    weights = np.array([0.0, 0.25, 0.0, -1.0])
    one = np.ones(1)
    propensity, _ = score_candidates(idx, val, weights, 0.2, one * 0.9, one * 0.0, one * 4.0, one, one, one)
    assert propensity[0] == 1.0 / (1.0 + math.exp(-(0.2 - 0.5 + 0.5)))


def test_hand_computed_values() -> None:
    # candidate 0: z = 0.1 + 0.5*2 - 0.25*4 = 0.1; w = 3/(3+1) = 0.75
    # candidate 1: only padding, z = bias = 0.1; no evidence -> prior mean
    idx = np.array([[0, 1], [-1, -1]], dtype=np.int32)
    val = np.array([[2.0, 4.0], [7.0, 7.0]], dtype=np.float32)
    weights = np.array([0.5, -0.25])
    p_model = 1.0 / (1.0 + math.exp(-0.1))
    assert p_model == pytest.approx(0.52497918747894, abs=1e-13)
    propensity, priority = score_candidates(
        idx,
        val,
        weights,
        0.1,
        np.array([0.2, 0.05]),
        np.array([1.0, 10.0]),
        np.array([3.0, 0.0]),
        np.array([2.0, 1.5]),
        np.array([10.0, 4.0]),
        np.array([0.5, 1.0]),
    )
    assert propensity[0] == pytest.approx(0.25 * 0.2 + 0.75 * p_model, abs=1e-15)
    assert propensity[0] == pytest.approx(0.44373439060920, abs=1e-13)
    assert priority[0] == pytest.approx(propensity[0] * 2.0 * 10.0 * 0.5, abs=1e-15)
    assert propensity[1] == 0.05
    assert priority[1] == pytest.approx(0.05 * 1.5 * 4.0, abs=1e-15)


def test_feature_index_beyond_the_weights_is_an_error() -> None:
    idx = np.array([[0, 4]], dtype=np.int32)
    val = np.ones((1, 2), dtype=np.float32)
    one = np.ones(1)
    args = (idx, val, np.zeros(4), 0.0, one, one, one, one, one, one)
    with pytest.raises(IndexError):
        score_candidates(*args)
    with pytest.raises(IndexError):
        score_candidates_py(*args)


def test_empty_inputs() -> None:
    empty = np.zeros(0)
    for k in (0, 8):
        idx = np.zeros((0, k), dtype=np.int32)
        val = np.zeros((0, k), dtype=np.float32)
        for fn in (score_candidates, score_candidates_py):
            propensity, priority = fn(idx, val, np.zeros(3), 0.0, empty, empty, empty, empty, empty, empty)
            assert propensity.shape == priority.shape == (0,)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 1.0, 2.0, 3.5]), max_size=30),
    k=st.integers(-1, 35),
)
def test_top_k_matches_a_stable_sort(values: list[float], k: int) -> None:
    priority = np.array(values, dtype=np.float64)
    assert top_k(priority, k).tolist() == top_k_py(priority, k).tolist()


def test_top_k_ties_go_to_the_lowest_index() -> None:
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 2).tolist() == [1, 2]


def test_warm_up_compiles_the_production_signature() -> None:
    assert warm_up() >= 0.0
    assert score_candidates.signatures
    n, k = 3, 4
    rng = np.random.default_rng(0)
    before = len(score_candidates.signatures)
    idx = rng.integers(0, 8, (n, k)).astype(np.int32)
    for writeable in (True, False):  # cached feature layouts hand out read-only index matrices
        idx.flags.writeable = writeable
        score_candidates(idx, rng.random((n, k), dtype=np.float32), rng.random(8), 0.5, *(rng.random(n) for _ in range(6)))
    assert len(score_candidates.signatures) == before  # the same dtypes reuse the warm specialisations
