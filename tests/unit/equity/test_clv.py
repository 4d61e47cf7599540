"""CLV models: compiled kernels against their twins and scipy, the likelihoods against the
probability axioms, the fits against known parameters, the closed forms against Monte Carlo."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from engine.equity.clv import (
    BGNBDParams,
    GammaGammaParams,
    conditional_expected_spend,
    conditional_expected_transactions,
    customer_lifetime_value,
    probability_alive,
    warm_up,
)
from engine.equity.clv_fit import GRADIENT_TOLERANCE, BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from engine.equity.clv_likelihood import (
    bgnbd_log_likelihood,
    bgnbd_log_likelihood_grad,
    bgnbd_log_likelihood_py,
    gamma_gamma_log_likelihood,
    gamma_gamma_log_likelihood_grad,
    gamma_gamma_log_likelihood_py,
)
from engine.equity.clv_predict import (
    discounted_clv,
    discounted_clv_py,
    expected_spend,
    expected_spend_py,
    expected_transactions,
    expected_transactions_py,
    lifetime_one,
    lifetime_one_py,
    p_alive,
    p_alive_py,
)
from engine.equity.clv_simulate import simulate_customers, simulate_holdout
from engine.equity.clv_special import digamma, hyp2f1, hyp2f1_py

CDNOW = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
"""The BG/NBD estimates for the CDNOW sample in Fader, Hardie & Lee (2005)."""

log_uniform = st.floats(-1.5, 1.5).map(lambda e: 10.0**e)


def _histories(seed: int, n: int, max_x: int, max_age: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, max_x + 1, n).astype(np.float64)
    age = rng.uniform(0.0, max_age, n)
    t_x = np.where(x > 0, age * rng.random(n), 0.0)
    t_x[: n // 4] = np.where(x[: n // 4] > 0, age[: n // 4], 0.0)  # some bought on the last day
    return x, t_x, age


# --------------------------------------------------------------------------------------------
# Special functions


@settings(max_examples=400, deadline=None)
@given(
    a=st.floats(-0.95, 12.0),
    b=st.floats(0.05, 12.0),
    c=st.floats(0.05, 25.0),
    z=st.one_of(
        st.floats(-5.0, 0.0), st.floats(0.0, 0.9), st.floats(0.9, 0.999), st.floats(-4.0, -1.0).map(lambda e: 1.0 - 10.0**e)
    ),
)
def test_hyp2f1_matches_its_twin_and_scipy(a: float, b: float, c: float, z: float) -> None:
    value = hyp2f1(a, b, c, z)
    twin = hyp2f1_py(a, b, c, z)
    assert (math.isnan(value) and math.isnan(twin)) or value == pytest.approx(twin, rel=1e-9, abs=1e-300)
    if z < 0.0:
        return  # Pfaff's transformation; NaN where it cancels away more than six digits
    assert math.isfinite(value)
    # Against a 40-digit reference over 0 ≤ z ≤ 1 − 10⁻⁴ (24,000 points, half of them on a grid
    # of simple fractions) ours was within 2e-12 and scipy within 6e-9, so scipy is held to 1e-8
    # there — except where scipy itself goes wrong: a ≈ 0, and c − a − b within rounding of an
    # integer (4% off at a = b = 1, c = 2 − 4e-15, z = 0.999). The table below covers those.
    d = c - a - b
    if abs(a) >= 0.01 and abs(d - round(d)) > 1e-6:
        assert value == pytest.approx(float(special.hyp2f1(a, b, c, z)), rel=1e-8, abs=1e-300)


@pytest.mark.parametrize(
    ("a", "b", "c", "z", "reference"),
    [
        # reference values: mpmath at 50 digits
        (-2.86, 29.17, 14.79, 0.9267, -65.594980666184481),  # scipy 1.17: relative error 1.5e-6
        (23.53, 21.4, 39.28, 0.99991, 1.4493566552959491e29),  # scipy 1.17: 5.1e-7
        (17.41, 11.74, 35.07, 0.99995, 93152.982112769663),  # scipy 1.17: 8.7e-8
        (1.5, 2.5, 6.000000001, 0.999, 3.0928822121197625),  # c − a − b within 1e-9 of 2
        (0.5, 1.5, 4.0, 0.9999, 1.3580204699404236),  # c − a − b = 2 exactly
        (2.5, 1.5, 2.0, 0.9995, 3395729.2919366479),  # c − a − b = −2: ~40,000 series terms
        (0.7, 1.3, 2.2, -50.0, 0.1176047120642428),  # Pfaff, then z/(z − 1) ≈ 0.98
        (0.5, 0.7, 3.0, 1.0, 1.2010437641746865),  # Gauss's sum
        (1e-14, 3.0, 1.0, 0.998046875, 1.0000000013158874),  # tiny terms that add up; scipy 1.17: 1 + 6e-14
        (1.0, 1.0, 1.9999999999999964, 0.999, 6.9146699489311333),  # scipy 1.17: 6.65
    ],
)
def test_hyp2f1_against_high_precision_values(a: float, b: float, c: float, z: float, reference: float) -> None:
    assert hyp2f1(a, b, c, z) == pytest.approx(reference, rel=1e-11)
    assert hyp2f1_py(a, b, c, z) == pytest.approx(reference, rel=1e-11)


def test_hyp2f1_edges() -> None:
    # a terminating series is a polynomial: 1 − 2bz/c + b(b + 1)z² / (c(c + 1))
    b, c, z = 1.7, 3.1, 0.93
    assert hyp2f1(-2.0, b, c, z) == pytest.approx(1 - 2 * b * z / c + b * (b + 1) * z * z / (c * (c + 1)), rel=1e-14)
    for fn in (hyp2f1, hyp2f1_py):
        assert fn(1.0, 1.0, 2.0, 0.0) == 1.0
        assert fn(1.0, 1.0, 2.0, 0.5) == pytest.approx(-math.log(0.5) / 0.5, rel=1e-15)  # ₂F₁(1,1;2;z) = −ln(1−z)/z
        assert math.isnan(fn(1.0, 2.0, -3.0, 0.5))  # c at a pole
        assert math.isnan(fn(1.0, 2.0, 2.5, 1.0))  # diverges at z = 1 when c − a − b ≤ 0
        assert math.isnan(fn(1.0, 2.0, 3.5, 1.2))  # off the real principal branch


def test_digamma_matches_scipy() -> None:
    xs = np.concatenate([np.geomspace(1e-6, 1e6, 500), np.linspace(0.01, 30, 500)])
    ours = np.array([digamma(v) for v in xs])
    np.testing.assert_allclose(ours, special.digamma(xs), rtol=5e-14, atol=1e-13)
    assert math.isnan(digamma(0.0))


# --------------------------------------------------------------------------------------------
# Likelihoods


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30), r=log_uniform, alpha=log_uniform, a=log_uniform, b=log_uniform)
def test_bgnbd_log_likelihood_matches_twin(seed: int, n: int, r: float, alpha: float, a: float, b: float) -> None:
    x, t_x, age = _histories(seed, n, 300, 500.0)
    ll = bgnbd_log_likelihood(x, t_x, age, r, alpha, a, b)
    assert ll.shape == (n,)
    np.testing.assert_allclose(ll, bgnbd_log_likelihood_py(x, t_x, age, r, alpha, a, b), rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(ll))
    # the fitting kernel's sum is the same likelihood
    weight = np.random.default_rng(seed).integers(1, 4, n).astype(np.float64)
    total, _ = bgnbd_log_likelihood_grad(x, t_x, age, weight, r, alpha, a, b)
    assert total == pytest.approx(float(np.sum(weight * ll)), rel=1e-11, abs=1e-9)


def test_bgnbd_likelihood_is_a_probability() -> None:
    """Σ_x ∫ L(x, t_x) · t_x^(x−1)/(x−1)! dt_x + L(0) = 1: the likelihood, times the volume of the
    purchase sequences ending at t_x, is the distribution of the history over (0, T]."""
    params = BGNBDParams(r=0.9, alpha=3.0, a=0.8, b=2.5)
    age = 10.0
    one = np.ones(1)

    def density(t: float, x: int) -> float:
        ll = bgnbd_log_likelihood_py(one * x, one * t, one * age, *_bg(params))[0]
        return math.exp(ll + (x - 1) * math.log(t) - math.lgamma(x))

    total = math.exp(bgnbd_log_likelihood_py(one * 0.0, one * 0.0, one * age, *_bg(params))[0])
    for x in range(1, 300):
        total += integrate.quad(density, 0.0, age, args=(x,), epsabs=1e-13, epsrel=1e-10)[0]
    assert total == pytest.approx(1.0, abs=1e-8)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30), p=log_uniform, q=log_uniform, v=log_uniform)
def test_gamma_gamma_log_likelihood_matches_twin(seed: int, n: int, p: float, q: float, v: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 200, n).astype(np.float64)
    m = 10.0 ** rng.uniform(-2, 4, n)
    ll = gamma_gamma_log_likelihood(x, m, p, q, v)
    # ln Γ(px + q) − ln Γ(px) cancels terms of size ~10⁵ here, so the twins (libm's lgamma and
    # CPython's own) can differ by 10⁻¹¹ in absolute terms on a log-likelihood near 0.
    np.testing.assert_allclose(ll, gamma_gamma_log_likelihood_py(x, m, p, q, v), rtol=1e-9, atol=1e-9)
    weight = rng.integers(1, 4, n).astype(np.float64)
    total, _ = gamma_gamma_log_likelihood_grad(x, m, weight, p, q, v)
    assert total == pytest.approx(float(np.sum(weight * ll)), rel=1e-11, abs=1e-9)


@pytest.mark.parametrize("x", [1.0, 3.0, 25.0])
def test_gamma_gamma_density_integrates_to_one(x: float) -> None:
    p, q, v = 6.25, 3.74, 15.44
    xs = np.array([x])

    def density(m: float) -> float:
        return math.exp(gamma_gamma_log_likelihood_py(xs, np.array([m]), p, q, v)[0])

    assert integrate.quad(density, 0.0, np.inf, epsabs=1e-13, epsrel=1e-10)[0] == pytest.approx(1.0, abs=1e-8)


def _central_difference(fn, theta: np.ndarray, h: float = 1e-5) -> np.ndarray:
    out = np.empty_like(theta)
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = h
        out[j] = (fn(theta + step) - fn(theta - step)) / (2 * h)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_finite_differences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, t_x, age = _histories(seed, 40, 30, 80.0)
    weight = rng.integers(1, 5, 40).astype(np.float64)
    theta = np.log([0.2, 3.0, 0.7, 2.5]) + rng.normal(scale=0.3, size=4)

    def bg_total(th: np.ndarray) -> float:
        return float(np.sum(weight * bgnbd_log_likelihood_py(x, t_x, age, *np.exp(th))))

    _, grad = bgnbd_log_likelihood_grad(x, t_x, age, weight, *np.exp(theta))
    np.testing.assert_allclose(grad, _central_difference(bg_total, theta), rtol=1e-6, atol=1e-6)

    xs = rng.integers(1, 30, 40).astype(np.float64)
    m = rng.gamma(2.0, 20.0, 40)
    theta = np.log([5.0, 3.0, 15.0]) + rng.normal(scale=0.3, size=3)

    def gg_total(th: np.ndarray) -> float:
        return float(np.sum(weight * gamma_gamma_log_likelihood_py(xs, m, *np.exp(th))))

    _, grad = gamma_gamma_log_likelihood_grad(xs, m, weight, *np.exp(theta))
    np.testing.assert_allclose(grad, _central_difference(gg_total, theta), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Closed forms


def _bg(params: BGNBDParams) -> tuple[float, float, float, float]:
    return params.r, params.alpha, params.a, params.b


def test_expected_transactions_without_a_purchase_when_a_plus_b_is_below_one() -> None:
    """c = a + b − 1 < 0 makes ₂F₁ negative here, which the log form cannot take; the value is
    from the series summed to 80 digits (Python's decimal), 14.8725748363348598763…"""
    x, t_x, age = np.array([0.0]), np.array([0.0]), np.array([48.04545891])
    args = (59.0, x, t_x, age, 10.0**1.5, 0.5, 0.1, 0.1)
    exact = 14.872574836334859876
    np.testing.assert_allclose(expected_transactions(*args), [exact], rtol=1e-12)
    np.testing.assert_allclose(expected_transactions_py(*args), [exact], rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 20),
    r=log_uniform,
    alpha=st.floats(0.5, 50.0),
    a=st.one_of(log_uniform, st.just(1.0)),
    b=log_uniform,
    t=st.floats(0.0, 200.0),
)
def test_predictions_match_twins(seed: int, n: int, r: float, alpha: float, a: float, b: float, t: float) -> None:
    x, t_x, age = _histories(seed, n, 60, 150.0)
    alive = p_alive(x, t_x, age, r, alpha, a, b)
    np.testing.assert_allclose(alive, p_alive_py(x, t_x, age, r, alpha, a, b), rtol=1e-9, atol=1e-300)
    assert np.all((alive >= 0) & (alive <= 1))
    assert np.all(alive[x == 0] == 1.0)
    expected = expected_transactions(t, x, t_x, age, r, alpha, a, b)
    np.testing.assert_allclose(expected, expected_transactions_py(t, x, t_x, age, r, alpha, a, b), rtol=1e-9, atol=1e-300)
    assert np.all(np.isfinite(expected)) and np.all(expected >= 0)
    m = np.where(x > 0, 10.0 ** np.random.default_rng(seed).uniform(0, 3, n), 0.0)
    spend = expected_spend(x, m, 6.25, 3.74, 15.44)
    np.testing.assert_allclose(spend, expected_spend_py(x, m, 6.25, 3.74, 15.44), rtol=1e-12)
    args = (x, t_x, age, spend, r, alpha, a, b, 6, max(t, 1.0) / 6, 0.3, 0.01)
    np.testing.assert_allclose(discounted_clv(*args), discounted_clv_py(*args), rtol=1e-9, atol=1e-300)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    r=log_uniform,
    alpha=st.floats(0.5, 50.0),
    a=st.one_of(log_uniform, st.just(1.0)),
    b=log_uniform,
)
def test_lifetime_one_is_the_batch_kernels_for_one_customer(seed: int, r: float, alpha: float, a: float, b: float) -> None:
    """The decision path's fused call gives the batch kernels' figures exactly, and its twin's."""
    x, t_x, age = _histories(seed, 1, 60, 150.0)
    m = float(10.0 ** np.random.default_rng(seed).uniform(0, 3)) if x[0] > 0 else 0.0
    gg = (6.25, 3.74, 15.44)
    tail = (365.0, 12, 365.0 / 12, 0.3, 0.01)
    got = lifetime_one(float(x[0]), float(t_x[0]), float(age[0]), m, r, alpha, a, b, *gg, *tail)
    spend = expected_spend(x, np.array([m]), *gg)
    batch = (
        p_alive(x, t_x, age, r, alpha, a, b)[0],
        expected_transactions(365.0, x, t_x, age, r, alpha, a, b)[0],
        discounted_clv(x, t_x, age, spend, r, alpha, a, b, 12, 365.0 / 12, 0.3, 0.01)[0],
    )
    np.testing.assert_array_equal(got, batch)
    twin = lifetime_one_py(float(x[0]), float(t_x[0]), float(age[0]), m, r, alpha, a, b, *gg, *tail)
    np.testing.assert_allclose(got, twin, rtol=1e-9, atol=1e-300)


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(0, 40),
    t_share=st.floats(0.0, 1.0),
    age=st.floats(0.0, 100.0),
    t=st.floats(0.01, 150.0),
    r=st.floats(0.05, 3.0),
    alpha=st.floats(0.5, 30.0),
    a=st.floats(0.1, 5.0).filter(lambda v: abs(v - 1.0) > 0.01),
    b=st.floats(0.1, 10.0),
)
def test_expected_transactions_match_the_textbook_form(
    x: int, t_share: float, age: float, t: float, r: float, alpha: float, a: float, b: float
) -> None:
    """E = P(alive) · c/(a − 1) · (1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; c; t/(α+T+t))), with scipy's ₂F₁."""
    t_x = age * t_share if x > 0 else 0.0
    c = a + b + x - 1
    assume(abs(c) > 0.01)  # ₂F₁ has a pole at c = 0, so the textbook form is no reference there
    z = t / (alpha + age + t)
    textbook = c / (a - 1) * (1 - (1 - z) ** (r + x) * special.hyp2f1(r + x, b + x, c, z))
    alive = p_alive_py(np.array([x * 1.0]), np.array([t_x]), np.array([age]), r, alpha, a, b)[0]
    ours = expected_transactions(t, np.array([x * 1.0]), np.array([t_x]), np.array([age]), r, alpha, a, b)[0]
    assert ours == pytest.approx(alive * textbook, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize(
    ("params", "x", "t_x", "age", "t", "reference"),
    [
        # reference values: the textbook form in mpmath at 60 digits (at a = 1 as the limit)
        (BGNBDParams(31.6, 1.0, 1.0, 0.1), 0, 0, 5, 9, 1.424642316469639),  # r > a + b at a = 1
        (BGNBDParams(31.6, 1.0, 1.0, 0.1), 3, 2, 5, 9, 7.5362307302291411e-10),
        (BGNBDParams(5.0, 2.0, 0.3, 0.4), 0, 0, 0.5, 400, 88.561037093313442),  # a + b < 1, z ≈ 0.995
        (BGNBDParams(0.243, 4.414, 1.0, 2.426), 2, 30.43, 38.86, 39, 1.1021367860399558),
    ],
)
def test_expected_transactions_against_high_precision_values(
    params: BGNBDParams, x: float, t_x: float, age: float, t: float, reference: float
) -> None:
    assert conditional_expected_transactions(params, t, [x], [t_x], [age])[0] == pytest.approx(reference, rel=1e-12)
    args = (float(t), np.array([float(x)]), np.array([float(t_x)]), np.array([float(age)]), *_bg(params))
    assert expected_transactions_py(*args)[0] == pytest.approx(reference, rel=1e-12)


def test_published_cdnow_figures() -> None:
    # Fader, Hardie & Lee (2005): x = 2, t_x = 30.43, T = 38.86 weeks expects 1.226 purchases in
    # the next 39 weeks.
    assert conditional_expected_transactions(CDNOW, 39.0, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=5e-4)
    # a = 1 is a removable singularity of the textbook form; the computed form is continuous there.
    at_one = BGNBDParams(0.243, 4.414, 1.0, 2.426)
    below, above = BGNBDParams(0.243, 4.414, 1 - 1e-7, 2.426), BGNBDParams(0.243, 4.414, 1 + 1e-7, 2.426)
    values = [conditional_expected_transactions(p, 39.0, [2], [30.43], [38.86])[0] for p in (below, at_one, above)]
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, rel=1e-9)
    # unconditional: x = 0, T = 0 is a customer who has just made the first purchase
    new = conditional_expected_transactions(CDNOW, 39.0, [0], [0], [0])[0]
    z = 39.0 / (CDNOW.alpha + 39.0)
    a, b, r = CDNOW.a, CDNOW.b, CDNOW.r
    assert new == pytest.approx((a + b - 1) / (a - 1) * (1 - (1 - z) ** r * special.hyp2f1(r, b, a + b - 1, z)), rel=1e-10)


def test_expected_spend_is_a_credibility_weighted_mean() -> None:
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    population = gg.p * gg.v / (gg.q - 1)
    spend = conditional_expected_spend(gg, [0, 1, 5, 500], [0.0, 80.0, 80.0, 80.0])
    assert spend[0] == pytest.approx(population, rel=1e-14)
    assert population < spend[1] < spend[2] < spend[3] < 80.0  # pulled from the population mean to the own mean
    assert spend[3] == pytest.approx(80.0, rel=2e-3)
    assert math.isnan(conditional_expected_spend(GammaGammaParams(0.1, 0.5, 1.0), [0, 1], [0.0, 3.0])[1])  # p·x + q ≤ 1


# --------------------------------------------------------------------------------------------
# CLV


def _clv(margin: float = 0.3, discount_rate: float = 0.01, periods: int = 12, **history: list[float]) -> np.ndarray:
    customers = {"x": [0, 1, 4, 12, 12], "t_x": [0, 5, 30, 38, 10], "age": [0.5, 39, 39, 39, 39], "m": [0, 20, 35, 50, 50]}
    customers.update(history)
    return customer_lifetime_value(
        CDNOW,
        GammaGammaParams(6.25, 3.74, 15.44),
        **customers,
        periods=periods,
        period_length=52 / 12,
        margin=margin,
        discount_rate=discount_rate,
    )


def test_clv_is_linear_in_margin_and_decreasing_in_discount_rate() -> None:
    base = _clv()
    assert np.all(base > 0)
    np.testing.assert_allclose(_clv(margin=0.6), 2 * base, rtol=1e-14)
    rates = [-0.005, 0.0, 0.01, 0.05, 0.2]
    values = np.array([_clv(discount_rate=d) for d in rates])
    assert np.all(np.diff(values, axis=0) < 0)


def test_clv_without_discount_telescopes_to_expected_purchases_times_spend() -> None:
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    x, t_x, age, m = [0, 1, 4, 12], [0, 5, 30, 38], [0.5, 39, 39, 39], [0, 20, 35, 50]
    clv = _clv(discount_rate=0.0, margin=0.25, x=x, t_x=t_x, age=age, m=m)
    purchases = conditional_expected_transactions(CDNOW, 52.0, x, t_x, age)
    np.testing.assert_allclose(clv, 0.25 * purchases * conditional_expected_spend(gg, x, m), rtol=1e-12)


def test_clv_goes_to_zero_as_the_customer_is_surely_gone() -> None:
    # 12 purchases in the first 10 weeks, then silence for longer and longer
    ages = [39.0, 60.0, 120.0, 250.0, 500.0]
    n = len(ages)
    clv = _clv(x=[12] * n, t_x=[10] * n, age=ages, m=[50] * n)
    active = _clv(x=[12], t_x=[500], age=[500], m=[50])[0]
    assert np.all(np.diff(clv) < 0)
    assert clv[-1] < 1e-9 * active
    alive = probability_alive(CDNOW, [12] * n, [10] * n, ages)
    assert alive[-1] < 1e-9


# --------------------------------------------------------------------------------------------
# Fitting: parameter recovery
#
# 30,000 customers observed for 26–104 time units. Over 100 seeds per setting the relative errors
# had standard deviations of at most 1.4% (r), 2.1% (α), 4.2% (a), 5.3% (b) and 4.9% (p), 1.7% (q),
# 6.0% (v); the worst of the 100 were 4.2%, 6.4%, 10.8%, 13.8% and 13.3%, 4.4%, 15.0%. The
# tolerances are about five standard deviations.

BGNBD_TOLERANCE = {"r": 0.10, "alpha": 0.15, "a": 0.20, "b": 0.25}
GAMMA_GAMMA_TOLERANCE = {"p": 0.25, "q": 0.10, "v": 0.30}
SETTINGS = {
    "cdnow": (BGNBDParams(0.24, 4.41, 0.79, 2.43), GammaGammaParams(6.25, 3.74, 15.44)),
    "frequent, churning": (BGNBDParams(2.0, 10.0, 1.5, 4.0), GammaGammaParams(2.0, 5.0, 50.0)),
    "steady": (BGNBDParams(0.8, 8.0, 0.5, 3.0), GammaGammaParams(12.0, 8.0, 3.0)),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_fits_recover_known_parameters(name: str) -> None:
    purchases, spend = SETTINGS[name]
    rng = np.random.default_rng(sorted(SETTINGS).index(name) + 2026)
    customers = simulate_customers(purchases, rng.uniform(26, 104, 30_000), rng, spend)

    fit = fit_bgnbd(customers.x, customers.t_x, customers.age)
    assert fit.converged and fit.n_customers == 30_000
    for field, tolerance in BGNBD_TOLERANCE.items():
        assert getattr(fit.params, field) == pytest.approx(getattr(purchases, field), rel=tolerance), field
    # the maximum beats the truth
    truth = float(np.sum(bgnbd_log_likelihood(customers.x, customers.t_x, customers.age, *_bg(purchases))))
    assert fit.log_likelihood >= truth

    repeat = customers.x > 0
    fit_spend = fit_gamma_gamma(customers.x[repeat], customers.m[repeat])
    assert fit_spend.converged and fit_spend.n_customers == int(repeat.sum())
    for field, tolerance in GAMMA_GAMMA_TOLERANCE.items():
        assert getattr(fit_spend.params, field) == pytest.approx(getattr(spend, field), rel=tolerance), field


def test_identical_customers_are_merged_without_changing_the_fit() -> None:
    rng = np.random.default_rng(11)
    c = simulate_customers(CDNOW, np.round(rng.uniform(20, 40, 3_000)), rng)
    once = fit_bgnbd(c.x, c.t_x, c.age)
    twice = fit_bgnbd(np.tile(c.x, 2), np.tile(c.t_x, 2), np.tile(c.age, 2))
    assert twice.n_customers == 2 * once.n_customers
    assert twice.log_likelihood == pytest.approx(2 * once.log_likelihood, rel=1e-9)
    for field in ("r", "alpha", "a", "b"):
        assert getattr(twice.params, field) == pytest.approx(getattr(once.params, field), rel=1e-4)


def test_a_fit_cut_short_is_not_converged() -> None:
    rng = np.random.default_rng(4)
    c = simulate_customers(CDNOW, rng.uniform(26, 80, 5_000), rng)
    assert not fit_bgnbd(c.x, c.t_x, c.age, max_iterations=2).converged
    repeat = c.x > 0
    assert not fit_gamma_gamma(c.x[repeat], np.full(int(repeat.sum()), 20.0), max_iterations=2).converged


def test_without_dropout_the_fit_degenerates_to_the_nbd_model() -> None:
    # Nobody ever leaves: the likelihood rises as the mean dropout a / (a + b) → 0, and the
    # predictions become those of the Poisson-Gamma (NBD) model, E[X(t) | x, T] = (r + x) t / (α + T).
    rng = np.random.default_rng(5)
    age = rng.uniform(20, 60, 5_000)
    x = rng.poisson(rng.gamma(2.0, 0.1, 5_000) * age).astype(np.float64)
    t_x = np.where(x > 0, age * rng.beta(np.maximum(x, 1), 1), 0.0)
    fit = fit_bgnbd(x, t_x, age)
    p = fit.params
    assert p.a / (p.a + p.b) < 1e-6
    assert p.r == pytest.approx(2.0, rel=0.1) and p.alpha == pytest.approx(10.0, rel=0.1)
    assert np.all(probability_alive(p, x, t_x, age) > 0.999)
    nbd = (p.r + x) * 26.0 / (p.alpha + age)
    np.testing.assert_allclose(conditional_expected_transactions(p, 26.0, x, t_x, age), nbd, rtol=1e-3)


def test_fits_report_convergence_by_the_gradient() -> None:
    rng = np.random.default_rng(3)
    c = simulate_customers(CDNOW, rng.uniform(26, 80, 5_000), rng)
    fit = fit_bgnbd(c.x, c.t_x, c.age)
    weight = np.ones(c.x.size)
    _, grad = bgnbd_log_likelihood_grad(c.x, c.t_x, c.age, weight, *_bg(fit.params))
    assert fit.converged
    assert np.all(np.abs(grad / c.x.size) <= 10 * GRADIENT_TOLERANCE)


# --------------------------------------------------------------------------------------------
# Closed forms against Monte Carlo


def test_expected_transactions_and_p_alive_match_simulation() -> None:
    """Predictions from the true parameters against what the simulated customers then do.

    Each comparison allows four standard errors of the simulated mean, computed from the
    simulated spread itself (so the check tightens as the groups grow), and the purchase groups
    also 10% of the prediction (+0.01). Over 30 seeds the largest of the 13 gaps was 3.4
    standard errors, and 6.8% of the prediction.
    """
    rng = np.random.default_rng(7)
    c = simulate_customers(CDNOW, rng.uniform(26, 52, 100_000), rng)
    horizon = 52.0
    future = simulate_holdout(c, horizon, rng)
    predicted = expected_transactions(horizon, c.x, c.t_x, c.age, *_bg(CDNOW))

    groups = [(0, 0), (1, 1), (2, 2), (3, 4), (5, 7), (8, 12), (13, 10**9)]
    for low, high in groups:
        members = (c.x >= low) & (c.x <= high)
        n = int(members.sum())
        assert n >= 300, (low, high)
        gap = float(np.mean(future[members] - predicted[members]))
        standard_error = float(np.std(future[members] - predicted[members]) / math.sqrt(n))
        assert abs(gap) <= 4 * standard_error, (low, high, gap, standard_error)
        assert abs(gap) <= 0.1 * float(np.mean(predicted[members])) + 0.01, (low, high)

    alive = p_alive(c.x, c.t_x, c.age, *_bg(CDNOW))
    assert np.all(c.alive[c.x == 0])
    edges = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    repeat = c.x > 0
    for low, high in itertools.pairwise(edges):
        members = repeat & (alive > low) & (alive <= high)
        n = int(members.sum())
        assert n >= 300, (low, high)
        gap = float(np.mean(c.alive[members]) - np.mean(alive[members]))
        standard_error = math.sqrt(float(np.sum(alive[members] * (1 - alive[members])))) / n
        assert abs(gap) <= 4 * standard_error, (low, high, gap, standard_error)


def test_simulation_is_reproducible_and_consistent() -> None:
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    first = simulate_customers(CDNOW, np.linspace(0, 60, 2_000), np.random.default_rng(1), gg)
    again = simulate_customers(CDNOW, np.linspace(0, 60, 2_000), np.random.default_rng(1), gg)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.m, again.m)
    assert np.all(first.t_x <= first.age)
    assert np.all(first.t_x[first.x == 0] == 0) and np.all(first.m[first.x == 0] == 0)
    assert np.all(first.m[first.x > 0] > 0)
    future = simulate_holdout(first, 30.0, np.random.default_rng(2))
    assert np.all(future[~first.alive] == 0)
    assert np.all(future <= np.where(first.alive, first.remaining, 0))


# --------------------------------------------------------------------------------------------
# Bad input and serialisation


@pytest.mark.parametrize(
    ("x", "t_x", "age", "message"),
    [
        ([], [], [], r"^x: no customers"),
        ([0, 0], [0, 0], [3, 4], r"^x: no repeat purchases"),
        ([1, -1], [1, 0], [2, 2], r"^x\[1\] = "),
        ([1, 1.5], [1, 1], [2, 2], r"^x\[1\] = 1.5: .*whole number"),
        ([1, 2], [1, np.nan], [2, 2], r"^t_x\[1\] = nan: must be finite"),
        ([1, 2, 3], [1, 1, 5], [2, 2, 4], r"^t_x\[2\] = 5.0: .*after the end of observation"),
        ([0, 2], [1, 1], [2, 2], r"^t_x\[0\] = 1.0: must be 0 when x is 0"),
        ([1, 2], [1, 1], [2, np.inf], r"^age\[1\] = inf"),
        ([1, 2], [1, 1], [2, -2], r"^age\[1\] = -2.0: must not be negative"),
        ([1, 2], [1, 1], [2], r"^age: 1 rows, expected 2"),
        ([1, 2], [[1, 1]], [2, 2], r"^t_x: "),
        (["one"], [1], [2], r"^x: expected numbers"),
    ],
)
def test_bad_purchase_histories_name_the_field_and_row(x: list, t_x: list, age: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(x, t_x, age)


@pytest.mark.parametrize(
    ("x", "m", "message"),
    [
        ([], [], r"^x: no customers"),
        ([2, 0], [10, 10], r"^x\[1\] = 0.0: must be a whole number ≥ 1"),
        ([2, 3], [10, 0], r"^m\[1\] = 0.0: the mean purchase value must be positive"),
        ([2, 3], [10, -1], r"^m\[1\] = -1.0"),
        ([2, 3], [np.nan, 1], r"^m\[0\] = nan"),
    ],
)
def test_bad_spend_names_the_field_and_row(x: list, m: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_gamma_gamma(x, m)


def test_bad_clv_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^periods"):
        _clv(periods=-1)
    with pytest.raises(ValueError, match=r"^discount_rate"):
        _clv(discount_rate=-1.0)
    with pytest.raises(ValueError, match=r"^margin"):
        _clv(margin=math.nan)
    with pytest.raises(ValueError, match=r"^t: "):
        conditional_expected_transactions(CDNOW, -1.0, [1], [1], [2])
    with pytest.raises(ValueError, match=r"^t_x\[0\]"):
        probability_alive(CDNOW, [1], [3], [2])


def test_params_round_trip_through_json_and_validate() -> None:
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    for params in (CDNOW, gg):
        stored = json.loads(json.dumps(params.to_dict()))
        assert type(params).from_dict(stored) == params
        assert type(params).from_dict({**stored, "version": 7, "fitted_at": "2026-11-23"}) == params
    assert CDNOW.to_dict() == {"model": "bg_nbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}

    good = CDNOW.to_dict()
    bad = [
        ({k: v for k, v in good.items() if k != "alpha"}, r"^alpha: missing"),
        ({**good, "b": -2.0}, r"^b: must be positive"),
        ({**good, "r": math.nan}, r"^r: must be positive and finite"),
        ({**good, "a": "0.8"}, r"^a: expected a number"),
        ({**good, "a": True}, r"^a: expected a number"),
        ({**good, "model": "gamma_gamma"}, r"^model: "),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            BGNBDParams.from_dict(data)
    with pytest.raises(ValueError, match=r"^q: must be positive"):
        GammaGammaParams(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^BGNBDParams: expected a mapping"):
        BGNBDParams.from_dict([1, 2])  # type: ignore[arg-type]


def test_fits_round_trip_through_json() -> None:
    bg = BGNBDFit(CDNOW, -9582.4, 2357, True)
    gg = GammaGammaFit(GammaGammaParams(6.25, 3.74, 15.44), -4000.5, 946, False)
    assert BGNBDFit.from_dict(json.loads(json.dumps(bg.to_dict()))) == bg
    assert GammaGammaFit.from_dict(json.loads(json.dumps(gg.to_dict()))) == gg
    assert BGNBDParams.from_dict(bg.to_dict()) == CDNOW  # a stored fit reads as its parameters
    with pytest.raises(ValueError, match=r"^n_customers"):
        BGNBDFit.from_dict({**bg.to_dict(), "n_customers": 0})
    with pytest.raises(ValueError, match=r"^converged"):
        BGNBDFit.from_dict({**bg.to_dict(), "converged": "yes"})
    with pytest.raises(ValueError, match=r"^log_likelihood"):
        GammaGammaFit.from_dict({**gg.to_dict(), "log_likelihood": math.inf})


def test_warm_up_compiles_the_production_signatures() -> None:
    assert warm_up() >= 0.0
    kernels = (p_alive, expected_transactions, discounted_clv, bgnbd_log_likelihood_grad, gamma_gamma_log_likelihood_grad)
    before = [len(k.signatures) for k in kernels]
    assert all(before)
    probability_alive(CDNOW, [1, 2], [1, 1], [3, 3])
    conditional_expected_transactions(CDNOW, 10, [1, 2], [1, 1], [3, 3])
    _clv()
    fit_bgnbd([0, 1, 2, 3], [0, 1, 2, 1], [4, 4, 4, 4], max_iterations=3)
    fit_gamma_gamma([1, 2, 3], [5.0, 7.0, 9.0], max_iterations=3)
    assert [len(k.signatures) for k in kernels] == before  # the checked entry points reuse them
