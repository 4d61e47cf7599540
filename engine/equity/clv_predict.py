"""Per-customer predictions of the BG/NBD and Gamma-Gamma models, compiled, with plain-Python twins.

Inputs per customer, as in :mod:`engine.equity.clv`: x repeat purchases, the last at t_x, an
observation length T since the first purchase (``age`` in code), and the mean value m of the
repeat purchases.

**Probability alive** (BG/NBD): a customer with no repeat purchase cannot have dropped out (the
model only lets a customer leave right after a repeat purchase), so P = 1 for x = 0; otherwise

    P(alive | x, t_x, T) = 1 / (1 + a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x)).

**Expected purchases** in (T, T + t]: alive, the posterior is λ ~ Gamma(r + x, α + T) and
p ~ Beta(a, b + x), and the textbook closed form is

    E[X(t) | x, t_x, T] = P(alive) · c / (a − 1) · (1 − (1 − z)^(r + x) · ₂F₁(r + x, b + x; c; z))

with c = a + b + x − 1 and z = t / (α + T + t). Written that way it is 0/0 at a = 1 and, for long
horizons, a product of a tiny power and a huge ₂F₁. Euler's transformation and pulling the factor
(a − 1) out of the series give the form computed here, finite and positive for every a:

    E / P(alive) = c · (1 − (1 − z)^(a − 1)) / (a − 1) − (1 − z)^(a − 1) · S,
    S = Σ_{n ≥ 1} (a + b − 1 − r)ₙ (a)ₙ₋₁ / ((c + 1)ₙ₋₁ n!) · zⁿ,

where (1 − (1 − z)^(a − 1)) / (a − 1) is evaluated through ``expm1`` (exact at a = 1). The terms
of S keep one sign except when r > a + b; if that costs more than four digits to cancellation,
or S has not converged after :data:`~engine.equity.clv_special.SERIES_CAP` terms (z within ~10⁻⁵
of 1), the textbook form is evaluated with :func:`~engine.equity.clv_special.hyp2f1` instead
(whose terms are all positive). Within δ = 0.002 of a = 1, where that form is 0/0, it is
evaluated at a = 1 ± δ, 1 ± 2δ, 1 ± 3δ and interpolated by a quintic in a: E is analytic in a, so
the error is of order δ⁶ times its sixth derivative, and the cancellation at those nodes costs
about three digits: ~10⁻¹³ relative against 60-digit values (see the tests), as elsewhere.

With x = 0 and T = 0 the same formula is the expected number of purchases of a new customer.

**Expected spend per purchase** (Gamma-Gamma): a credibility-weighted mean of the population
mean and the customer's own,

    E[M | x, m] = (v + m x) · p / (p x + q − 1),

finite only if p x + q > 1 (NaN otherwise; for x = 0 that is q > 1, a finite population mean).

**Discounted CLV** over H periods of length Δ (in the model's time unit) at a per-period discount
rate d and a margin rate μ on spend:

    CLV = μ · E[M] · Σ_{i=1..H} (E[X(iΔ)] − E[X((i−1)Δ)]) / (1 + d)^i,

i.e. the purchases expected in each period, valued at the expected spend and discounted to now
from the end of that period. It is linear in μ and decreasing in d, and it goes to 0 with
P(alive).

The kernels take float64 arrays and float scalars only (another dtype compiles another
specialisation, which :func:`engine.equity.clv.warm_up` exists to avoid); the ``*_py`` twins run
the same arithmetic in plain Python and are the reference the tests hold the kernels to.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.equity.clv_special import EPS, SERIES_CAP, hyp2f1, hyp2f1_py

_MAX_LOSS = 1.0e4
"""Cancellation in S (summed magnitudes over the result) beyond which the textbook form is used."""
_NEAR_ONE = 2.0e-3
"""Within this of a = 1 the textbook form is interpolated instead of evaluated (see above)."""
_NODES = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)


@njit(cache=True, nogil=True, inline="always")
def _p_alive_one(x: float, t_x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    if x <= 0.0:
        return 1.0
    # log of a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x), the odds of having dropped out
    log_odds = math.log(a) - math.log(b + x - 1.0) + (r + x) * math.log1p((age - t_x) / (alpha + t_x))
    if log_odds <= 0.0:
        return 1.0 / (1.0 + math.exp(log_odds))
    e = math.exp(-log_odds)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def _textbook(t: float, x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    """c / (a − 1) · (1 − (1 − z)^(r + x) · ₂F₁(r + x, b + x; c; z)), for a away from 1."""
    z = t / (alpha + age + t)
    c = a + b + x - 1.0
    f = hyp2f1(r + x, b + x, c, z)
    log_1mz = -math.log1p(t / (alpha + age))
    if f > 0.0:
        return -c * math.expm1((r + x) * log_1mz + math.log(f)) / (a - 1.0)
    if f <= 0.0:
        # ₂F₁ is negative when c < 0 (a + b < 1 and no purchase yet); the bracket is then at least
        # 1, so it has no cancellation for the log form to avoid, and is taken as it stands.
        return c * (1.0 - math.exp((r + x) * log_1mz) * f) / (a - 1.0)
    return math.nan


@njit(cache=True, nogil=True)
def _expected_if_alive(t: float, x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    """E[X(t) | x, T] for a customer known to be alive at T."""
    if t <= 0.0:
        return 0.0
    z = t / (alpha + age + t)
    log_1mz = -math.log1p(t / (alpha + age))
    u = (a - 1.0) * log_1mz
    relative = math.expm1(u) / u if u != 0.0 else 1.0
    c = a + b + x - 1.0
    head = -c * log_1mz * relative
    first = a + b - 1.0 - r
    term = first * z
    total = term
    biggest = abs(term)
    converged = term == 0.0
    n = 1.0
    while not converged and n < SERIES_CAP:
        ratio = (first + n) * (a + n - 1.0) * z / ((c + n) * (n + 1.0))
        term *= ratio
        total += term
        size = abs(term)
        biggest = max(biggest, size)
        rho = max(abs(ratio), z)  # bound on the ratios to come, as in clv_special._series
        converged = term == 0.0 or (n + 1.0 > -first and rho < 1.0 and size * rho <= EPS * abs(total) * (1.0 - rho))
        n += 1.0
    if converged and (total == 0.0 or biggest <= _MAX_LOSS * abs(total)):
        return head - math.exp(u) * total
    if abs(a - 1.0) >= _NEAR_ONE:
        return _textbook(t, x, age, r, alpha, a, b)
    # The textbook form is 0/0 at a = 1: interpolate it (quintic in a) from a = 1 ± δ, ±2δ, ±3δ.
    out = 0.0
    for k in range(6):
        node = 1.0 + _NEAR_ONE * _NODES[k]
        weight = 1.0
        for j in range(6):
            if j != k:
                other = 1.0 + _NEAR_ONE * _NODES[j]
                weight *= (a - other) / (node - other)
        out += weight * _textbook(t, x, age, r, alpha, node, b)
    return out


@njit(cache=True, nogil=True)
def p_alive(x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float) -> np.ndarray:
    """P(alive at T | x, t_x, T) per customer, float64[n]."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        out[i] = _p_alive_one(x[i], t_x[i], age[i], r, alpha, a, b)
    return out


@njit(cache=True, nogil=True)
def expected_transactions(
    t: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] per customer, float64[n]."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        alive = _p_alive_one(x[i], t_x[i], age[i], r, alpha, a, b)
        out[i] = alive * _expected_if_alive(t, x[i], age[i], r, alpha, a, b) if alive > 0.0 else 0.0
    return out


@njit(cache=True, nogil=True)
def expected_spend(x: np.ndarray, m: np.ndarray, p: float, q: float, v: float) -> np.ndarray:
    """E[value of a purchase | x, m] per customer, float64[n]; NaN where p·x + q ≤ 1."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        denominator = p * x[i] + q - 1.0
        out[i] = (v + m[i] * x[i]) * p / denominator if denominator > 0.0 else math.nan
    return out


@njit(cache=True, nogil=True)
def discounted_clv(
    x: np.ndarray,
    t_x: np.ndarray,
    age: np.ndarray,
    spend: np.ndarray,
    r: float,
    alpha: float,
    a: float,
    b: float,
    periods: int,
    period_length: float,
    margin: float,
    discount_rate: float,
) -> np.ndarray:
    """Discounted CLV per customer (formula in the module docstring), float64[n]."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        alive = _p_alive_one(x[i], t_x[i], age[i], r, alpha, a, b)
        total = 0.0
        if alive > 0.0:
            previous = 0.0
            factor = 1.0
            for k in range(1, periods + 1):
                factor /= 1.0 + discount_rate
                current = _expected_if_alive(k * period_length, x[i], age[i], r, alpha, a, b)
                total += (current - previous) * factor
                previous = current
        out[i] = margin * spend[i] * alive * total
    return out


@njit(cache=True, nogil=True)
def lifetime_one(
    x: float,
    t_x: float,
    age: float,
    m: float,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    q: float,
    v: float,
    horizon: float,
    periods: int,
    period_length: float,
    margin: float,
    discount_rate: float,
) -> tuple[float, float, float]:
    """One customer's (P(alive), expected purchases within `horizon`, discounted CLV).

    The decision path's whole lifetime step in one call, through the same kernels as the batch
    path (so the figures are identical); one call instead of four saves most of its cost.
    """
    xa = np.full(1, x)
    ta = np.full(1, t_x)
    aa = np.full(1, age)
    alive = p_alive(xa, ta, aa, r, alpha, a, b)[0]
    expected = expected_transactions(horizon, xa, ta, aa, r, alpha, a, b)[0]
    spend = expected_spend(xa, np.full(1, m), p, q, v)
    clv = discounted_clv(xa, ta, aa, spend, r, alpha, a, b, periods, period_length, margin, discount_rate)[0]
    return alive, expected, clv


# ---------------------------------------------------------------------------------------------
# Plain-Python twins


def _p_alive_one_py(x: float, t_x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    if x <= 0.0:
        return 1.0
    log_odds = math.log(a) - math.log(b + x - 1.0) + (r + x) * math.log1p((age - t_x) / (alpha + t_x))
    if log_odds <= 0.0:
        return 1.0 / (1.0 + math.exp(log_odds))
    e = math.exp(-log_odds)
    return e / (1.0 + e)


def _textbook_py(t: float, x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    z = t / (alpha + age + t)
    c = a + b + x - 1.0
    f = hyp2f1_py(r + x, b + x, c, z)
    log_1mz = -math.log1p(t / (alpha + age))
    if f > 0.0:
        return -c * math.expm1((r + x) * log_1mz + math.log(f)) / (a - 1.0)
    if f <= 0.0:
        return c * (1.0 - math.exp((r + x) * log_1mz) * f) / (a - 1.0)
    return math.nan


def _expected_if_alive_py(t: float, x: float, age: float, r: float, alpha: float, a: float, b: float) -> float:
    if t <= 0.0:
        return 0.0
    z = t / (alpha + age + t)
    log_1mz = -math.log1p(t / (alpha + age))
    u = (a - 1.0) * log_1mz
    relative = math.expm1(u) / u if u != 0.0 else 1.0
    c = a + b + x - 1.0
    head = -c * log_1mz * relative
    first = a + b - 1.0 - r
    term = first * z
    total = term
    biggest = abs(term)
    converged = term == 0.0
    n = 1.0
    while not converged and n < SERIES_CAP:
        ratio = (first + n) * (a + n - 1.0) * z / ((c + n) * (n + 1.0))
        term *= ratio
        total += term
        size = abs(term)
        biggest = max(biggest, size)
        rho = max(abs(ratio), z)  # bound on the ratios to come, as in clv_special._series
        converged = term == 0.0 or (n + 1.0 > -first and rho < 1.0 and size * rho <= EPS * abs(total) * (1.0 - rho))
        n += 1.0
    if converged and (total == 0.0 or biggest <= _MAX_LOSS * abs(total)):
        return head - math.exp(u) * total
    if abs(a - 1.0) >= _NEAR_ONE:
        return _textbook_py(t, x, age, r, alpha, a, b)
    # The textbook form is 0/0 at a = 1: interpolate it (quintic in a) from a = 1 ± δ, ±2δ, ±3δ.
    out = 0.0
    for k in range(6):
        node = 1.0 + _NEAR_ONE * _NODES[k]
        weight = 1.0
        for j in range(6):
            if j != k:
                other = 1.0 + _NEAR_ONE * _NODES[j]
                weight *= (a - other) / (node - other)
        out += weight * _textbook_py(t, x, age, r, alpha, node, b)
    return out


def p_alive_py(x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float) -> np.ndarray:
    """Reference for :func:`p_alive`."""
    rows = zip(x.tolist(), t_x.tolist(), age.tolist(), strict=True)
    return np.array([_p_alive_one_py(xi, txi, ti, r, alpha, a, b) for xi, txi, ti in rows], dtype=np.float64)


def expected_transactions_py(
    t: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """Reference for :func:`expected_transactions`."""
    out = []
    for xi, txi, ti in zip(x.tolist(), t_x.tolist(), age.tolist(), strict=True):
        alive = _p_alive_one_py(xi, txi, ti, r, alpha, a, b)
        out.append(alive * _expected_if_alive_py(t, xi, ti, r, alpha, a, b) if alive > 0.0 else 0.0)
    return np.array(out, dtype=np.float64)


def expected_spend_py(x: np.ndarray, m: np.ndarray, p: float, q: float, v: float) -> np.ndarray:
    """Reference for :func:`expected_spend`."""
    out = []
    for xi, mi in zip(x.tolist(), m.tolist(), strict=True):
        denominator = p * xi + q - 1.0
        out.append((v + mi * xi) * p / denominator if denominator > 0.0 else math.nan)
    return np.array(out, dtype=np.float64)


def discounted_clv_py(
    x: np.ndarray,
    t_x: np.ndarray,
    age: np.ndarray,
    spend: np.ndarray,
    r: float,
    alpha: float,
    a: float,
    b: float,
    periods: int,
    period_length: float,
    margin: float,
    discount_rate: float,
) -> np.ndarray:
    """Reference for :func:`discounted_clv`."""
    out = []
    for xi, txi, ti, si in zip(x.tolist(), t_x.tolist(), age.tolist(), spend.tolist(), strict=True):
        alive = _p_alive_one_py(xi, txi, ti, r, alpha, a, b)
        total = 0.0
        if alive > 0.0:
            previous = 0.0
            factor = 1.0
            for k in range(1, periods + 1):
                factor /= 1.0 + discount_rate
                current = _expected_if_alive_py(k * period_length, xi, ti, r, alpha, a, b)
                total += (current - previous) * factor
                previous = current
        out.append(margin * si * alive * total)
    return np.array(out, dtype=np.float64)


def lifetime_one_py(
    x: float,
    t_x: float,
    age: float,
    m: float,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    q: float,
    v: float,
    horizon: float,
    periods: int,
    period_length: float,
    margin: float,
    discount_rate: float,
) -> tuple[float, float, float]:
    """Reference for :func:`lifetime_one`."""
    xa, ta, aa = np.array([x]), np.array([t_x]), np.array([age])
    alive = float(p_alive_py(xa, ta, aa, r, alpha, a, b)[0])
    expected = float(expected_transactions_py(horizon, xa, ta, aa, r, alpha, a, b)[0])
    spend = expected_spend_py(xa, np.array([m]), p, q, v)
    clv = float(discounted_clv_py(xa, ta, aa, spend, r, alpha, a, b, periods, period_length, margin, discount_rate)[0])
    return alive, expected, clv
