"""The four equity indices and the equity score: compiled kernels and their plain-Python twins.

Inputs: the facts matrix float64[n, F] (columns in the order of
:data:`engine.equity.facts.FACT_FIELDS`, as stored), ``now_ms`` (int, epoch milliseconds), the
retention probability float64[n] from the lifetime-value model (NaN: unknown) and the
configuration packed by :func:`kernel_params` into one float64 vector.

**Reading the facts.** A decayed field ``j`` with half-life ``h_j`` is read as
``x_j = stored_j · exp(−ln2 · (now − L) / h_j)`` (forward decay, see :mod:`engine.equity.facts`);
the factor is computed once per call, not per customer. NaN reads as 0; counts and spend are
clamped to ``[0, 10^15]``, margin to ``[−10^15, 10^15]``, the survey score sum to
``[−surveys, surveys]`` and the sentiment sum to ``[−mentions, mentions]`` — the bounds the
events guarantee, restated so rounding in the store can never push an index out of range.

Saturation ``sat(x, s) = x / (x + s)``: 0 at 0, ½ at the scale ``s``, → 1 for large ``x``. Its
long tail keeps large customers apart (5× the scale is 0.83, not the 0.99 of ``1 − e^(−x/s)``),
and it costs a division rather than an exponential.

**Contribution** (spend ``S``, margin ``M``, both decayed with contribution.half_life_days)::

    C = 100 · [(1 − μ) · sat(S, spend_scale) + μ · sat(max(M, 0), margin_scale)],  μ = margin_share

**Perception**: complaints ``Q``, compliments ``K``, survey answers (count ``N_V``, sum of
scores in [−1, 1] ``V``) and social mentions (count ``N_M``, sentiment sum ``Σs``), all decayed
with perception.half_life_days, pooled as weighted signed evidence and shrunk towards neutral
by ``k = prior_strength`` pseudo-observations::

    num = w_K · K − w_Q · Q + w_V · V + w_M · Σs
    den = k + w_K · K + w_Q · Q + w_V · N_V + w_M · N_M
    P   = 50 + 50 · num / den

``|num| ≤ den − k`` so ``P`` lies in (0, 100); 50 is neutral and also what a customer with no
evidence gets. One more complaint lowers ``P`` whenever ``w_Q > 0``.

**Referral** (referrals ``R`` decayed with referral.half_life_days)::

    Ref = 100 · sat(R, referral.scale)

**Loyalty**, from four parts in [0, 1] with the normalised loyalty weights ``a``::

    tenure    T  = sat(max(0, now − first_seen), tenure_scale)          (0 if never seen)
    recency   Rc = exp(−ln2 · max(0, now − last_purchase) / recency_half_life)   (0 if never bought)
    frequency F  = sat(purchases decayed with frequency_half_life, frequency_scale)
    retention ρ  = the model's retention probability clamped to [0, 1]; if NaN (no fitted model),
                   the recency part Rc stands in: how recently a customer bought is the cheapest
                   sign of still being active
    Loy = 100 · (a_T · T + a_Rc · Rc + a_F · F + a_ρ · ρ)

**Equity** ``E = w_C · C + w_P · P + w_Ref · Ref + w_Loy · Loy`` with normalised index weights.
Every index and ``E`` are clamped to [0, 100] against the last bit of rounding.

The ``*_py`` twins run the same arithmetic in the same order with the ``math`` module: the
readable specification the tests hold the kernels to, and the benchmark's baseline.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

from engine.equity.config import EquityConfig
from engine.equity.facts import DAY_MS, FACT_FIELDS, half_lives_ms
from engine.equity.tiers import warm_up as warm_up_tiers

INDEX_NAMES: tuple[str, ...] = ("contribution", "perception", "referral", "loyalty")
LN2 = 0.6931471805599453
CAP = 1e15

# Column positions, written out here rather than imported: numba's cache is keyed on this file,
# so a change of column order must change this file too, and the check below enforces it.
_COLUMNS = (
    "spend",
    "margin",
    "purchases",
    "complaints",
    "compliments",
    "surveys",
    "survey_score",
    "mentions",
    "sentiment",
    "referrals",
    "first_seen_ms",
    "last_purchase_ms",
)
if _COLUMNS != FACT_FIELDS:  # pragma: no cover - guards against an edit of one file only
    raise ImportError("engine.equity.indices: column order differs from facts.FACT_FIELDS")
_SPEND, _MARGIN, _PURCHASES, _COMPLAINTS, _COMPLIMENTS, _SURVEYS = 0, 1, 2, 3, 4, 5
_SURVEY_SCORE, _MENTIONS, _SENTIMENT, _REFERRALS, _FIRST_SEEN, _LAST_PURCHASE = 6, 7, 8, 9, 10, 11
N_FACTS = 12

# Layout of the parameter vector: N_FACTS half-lives in ms (0: not decayed), then the scalars.
P_LANDMARK = 12
P_SPEND_SCALE = 13
P_MARGIN_SCALE = 14
P_MARGIN_SHARE = 15
P_PRIOR = 16
P_W_COMPLAINT = 17
P_W_COMPLIMENT = 18
P_W_SURVEY = 19
P_W_MENTION = 20
P_REFERRAL_SCALE = 21
P_FREQUENCY_SCALE = 22
P_RECENCY_HALF_MS = 23
P_TENURE_SCALE_MS = 24
P_A_TENURE = 25
P_A_RECENCY = 26
P_A_FREQUENCY = 27
P_A_RETENTION = 28
P_W_CONTRIBUTION = 29
P_W_PERCEPTION = 30
P_W_REFERRAL = 31
P_W_LOYALTY = 32
N_PARAMS = 33


def kernel_params(config: EquityConfig) -> np.ndarray:
    """The configuration as the float64[N_PARAMS] vector the kernels take; build once per config."""
    c, p, r, lo = config.contribution, config.perception, config.referral, config.loyalty
    values = [
        *half_lives_ms(config),
        float(config.landmark_ms),
        c.spend_scale,
        c.margin_scale,
        c.margin_share,
        p.prior_strength,
        p.complaint_weight,
        p.compliment_weight,
        p.survey_weight,
        p.mention_weight,
        r.scale,
        lo.frequency_scale,
        lo.recency_half_life_days * DAY_MS,
        lo.tenure_scale_days * DAY_MS,
        *lo.weights.normalised,
        *config.weights.normalised,
    ]
    out = np.array(values, dtype=np.float64)
    assert out.shape == (N_PARAMS,)
    return out


# ---------------------------------------------------------------- compiled


@njit(cache=True, nogil=True, inline="always")
def _nonneg(x: float) -> float:
    if not x > 0.0:  # also NaN
        return 0.0
    return CAP if x > CAP else x


@njit(cache=True, nogil=True, inline="always")
def _within(x: float, bound: float) -> float:
    if x != x:
        return 0.0
    if x > bound:
        return bound
    return -bound if x < -bound else x


@njit(cache=True, nogil=True, inline="always")
def _sat(x: float, scale: float) -> float:
    return x / (x + scale)


@njit(cache=True, nogil=True, inline="always")
def _pct(x: float) -> float:
    if x > 100.0:
        return 100.0
    return 0.0 if x < 0.0 else x


@njit(cache=True, nogil=True)
def _decay_factors(now: float, params: np.ndarray) -> np.ndarray:
    factors = np.ones(N_FACTS, np.float64)
    age = now - params[P_LANDMARK]
    for j in range(N_FACTS):
        h = params[j]
        if h > 0.0:
            factors[j] = math.exp(-LN2 * age / h)
    return factors


@njit(cache=True, nogil=True, inline="always")
def _row(row: np.ndarray, now: float, retention: float, params: np.ndarray, f: np.ndarray) -> tuple:
    spend = _nonneg(row[_SPEND] * f[_SPEND])
    margin = _within(row[_MARGIN] * f[_MARGIN], CAP)
    purchases = _nonneg(row[_PURCHASES] * f[_PURCHASES])
    complaints = _nonneg(row[_COMPLAINTS] * f[_COMPLAINTS])
    compliments = _nonneg(row[_COMPLIMENTS] * f[_COMPLIMENTS])
    surveys = _nonneg(row[_SURVEYS] * f[_SURVEYS])
    survey_score = _within(row[_SURVEY_SCORE] * f[_SURVEY_SCORE], surveys)
    mentions = _nonneg(row[_MENTIONS] * f[_MENTIONS])
    sentiment = _within(row[_SENTIMENT] * f[_SENTIMENT], mentions)
    referrals = _nonneg(row[_REFERRALS] * f[_REFERRALS])

    share = params[P_MARGIN_SHARE]
    contribution = 100.0 * (
        (1.0 - share) * _sat(spend, params[P_SPEND_SCALE]) + share * _sat(max(margin, 0.0), params[P_MARGIN_SCALE])
    )

    w_q, w_k = params[P_W_COMPLAINT], params[P_W_COMPLIMENT]
    w_v, w_m = params[P_W_SURVEY], params[P_W_MENTION]
    num = w_k * compliments - w_q * complaints + w_v * survey_score + w_m * sentiment
    den = params[P_PRIOR] + w_k * compliments + w_q * complaints + w_v * surveys + w_m * mentions
    perception = 50.0 + 50.0 * num / den

    referral = 100.0 * _sat(referrals, params[P_REFERRAL_SCALE])

    first, last = row[_FIRST_SEEN], row[_LAST_PURCHASE]
    tenure = _sat(max(now - first, 0.0), params[P_TENURE_SCALE_MS]) if first > 0.0 else 0.0
    recency = math.exp(-LN2 * max(now - last, 0.0) / params[P_RECENCY_HALF_MS]) if last > 0.0 else 0.0
    frequency = _sat(purchases, params[P_FREQUENCY_SCALE])
    retained = recency if retention != retention else min(max(retention, 0.0), 1.0)
    loyalty = 100.0 * (
        params[P_A_TENURE] * tenure
        + params[P_A_RECENCY] * recency
        + params[P_A_FREQUENCY] * frequency
        + params[P_A_RETENTION] * retained
    )

    contribution, perception, referral, loyalty = _pct(contribution), _pct(perception), _pct(referral), _pct(loyalty)
    equity = _pct(
        params[P_W_CONTRIBUTION] * contribution
        + params[P_W_PERCEPTION] * perception
        + params[P_W_REFERRAL] * referral
        + params[P_W_LOYALTY] * loyalty
    )
    return contribution, perception, referral, loyalty, equity


@njit(cache=True, nogil=True)
def compute_indices(facts: np.ndarray, now_ms: int, retention: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices float64[n, 4] in the order of INDEX_NAMES, equity float64[n])."""
    n = facts.shape[0]
    if facts.shape[1] != N_FACTS or retention.shape[0] != n or params.shape[0] != N_PARAMS:
        raise ValueError("compute_indices: facts must be [n, N_FACTS], retention [n], params [N_PARAMS]")
    now = np.float64(now_ms)
    factors = _decay_factors(now, params)
    indices = np.empty((n, 4), np.float64)
    equity = np.empty(n, np.float64)
    for i in range(n):
        c, p, r, lo, e = _row(facts[i], now, retention[i], params, factors)
        indices[i, 0] = c
        indices[i, 1] = p
        indices[i, 2] = r
        indices[i, 3] = lo
        equity[i] = e
    return indices, equity


@njit(cache=True, nogil=True)
def equity_one(facts: np.ndarray, now_ms: int, retention: float, params: np.ndarray) -> tuple[float, float, float, float, float]:
    """One customer (the hot path): facts float64[N_FACTS] → (contribution, perception, referral,
    loyalty, equity), with no output arrays to allocate."""
    if facts.shape[0] != N_FACTS or params.shape[0] != N_PARAMS:
        raise ValueError("equity_one: facts must be [N_FACTS], params [N_PARAMS]")
    now = np.float64(now_ms)
    return _row(facts, now, retention, params, _decay_factors(now, params))


# ---------------------------------------------------------------- plain-Python twins


def _nonneg_py(x: float) -> float:
    if not x > 0.0:
        return 0.0
    return CAP if x > CAP else x


def _within_py(x: float, bound: float) -> float:
    if x != x:
        return 0.0
    if x > bound:
        return bound
    return -bound if x < -bound else x


def _sat_py(x: float, scale: float) -> float:
    return x / (x + scale)


def _pct_py(x: float) -> float:
    if x > 100.0:
        return 100.0
    return 0.0 if x < 0.0 else x


def _decay_factors_py(now: float, params: list[float]) -> list[float]:
    age = now - params[P_LANDMARK]
    return [math.exp(-LN2 * age / h) if h > 0.0 else 1.0 for h in params[:N_FACTS]]


def _row_py(row: list[float], now: float, retention: float, params: list[float], f: list[float]) -> tuple:
    spend = _nonneg_py(row[_SPEND] * f[_SPEND])
    margin = _within_py(row[_MARGIN] * f[_MARGIN], CAP)
    purchases = _nonneg_py(row[_PURCHASES] * f[_PURCHASES])
    complaints = _nonneg_py(row[_COMPLAINTS] * f[_COMPLAINTS])
    compliments = _nonneg_py(row[_COMPLIMENTS] * f[_COMPLIMENTS])
    surveys = _nonneg_py(row[_SURVEYS] * f[_SURVEYS])
    survey_score = _within_py(row[_SURVEY_SCORE] * f[_SURVEY_SCORE], surveys)
    mentions = _nonneg_py(row[_MENTIONS] * f[_MENTIONS])
    sentiment = _within_py(row[_SENTIMENT] * f[_SENTIMENT], mentions)
    referrals = _nonneg_py(row[_REFERRALS] * f[_REFERRALS])

    share = params[P_MARGIN_SHARE]
    contribution = 100.0 * (
        (1.0 - share) * _sat_py(spend, params[P_SPEND_SCALE]) + share * _sat_py(max(margin, 0.0), params[P_MARGIN_SCALE])
    )

    w_q, w_k = params[P_W_COMPLAINT], params[P_W_COMPLIMENT]
    w_v, w_m = params[P_W_SURVEY], params[P_W_MENTION]
    num = w_k * compliments - w_q * complaints + w_v * survey_score + w_m * sentiment
    den = params[P_PRIOR] + w_k * compliments + w_q * complaints + w_v * surveys + w_m * mentions
    perception = 50.0 + 50.0 * num / den

    referral = 100.0 * _sat_py(referrals, params[P_REFERRAL_SCALE])

    first, last = row[_FIRST_SEEN], row[_LAST_PURCHASE]
    tenure = _sat_py(max(now - first, 0.0), params[P_TENURE_SCALE_MS]) if first > 0.0 else 0.0
    recency = math.exp(-LN2 * max(now - last, 0.0) / params[P_RECENCY_HALF_MS]) if last > 0.0 else 0.0
    frequency = _sat_py(purchases, params[P_FREQUENCY_SCALE])
    retained = recency if retention != retention else min(max(retention, 0.0), 1.0)
    loyalty = 100.0 * (
        params[P_A_TENURE] * tenure
        + params[P_A_RECENCY] * recency
        + params[P_A_FREQUENCY] * frequency
        + params[P_A_RETENTION] * retained
    )

    contribution, perception = _pct_py(contribution), _pct_py(perception)
    referral, loyalty = _pct_py(referral), _pct_py(loyalty)
    equity = _pct_py(
        params[P_W_CONTRIBUTION] * contribution
        + params[P_W_PERCEPTION] * perception
        + params[P_W_REFERRAL] * referral
        + params[P_W_LOYALTY] * loyalty
    )
    return contribution, perception, referral, loyalty, equity


def compute_indices_py(
    facts: np.ndarray, now_ms: int, retention: np.ndarray, params: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The same computation in plain Python, kept as the reference the kernel must match."""
    n = facts.shape[0]
    if facts.shape[1] != N_FACTS or retention.shape[0] != n or params.shape[0] != N_PARAMS:
        raise ValueError("compute_indices: facts must be [n, N_FACTS], retention [n], params [N_PARAMS]")
    now = float(now_ms)
    p = params.tolist()
    factors = _decay_factors_py(now, p)
    rows = [_row_py(row, now, r, p, factors) for row, r in zip(facts.tolist(), retention.tolist(), strict=True)]
    indices = np.array([r[:4] for r in rows], dtype=np.float64).reshape(n, 4)
    equity = np.array([r[4] for r in rows], dtype=np.float64)
    return indices, equity


def equity_one_py(
    facts: np.ndarray, now_ms: int, retention: float, params: np.ndarray
) -> tuple[float, float, float, float, float]:
    """Reference for :func:`equity_one`."""
    if facts.shape[0] != N_FACTS or params.shape[0] != N_PARAMS:
        raise ValueError("equity_one: facts must be [N_FACTS], params [N_PARAMS]")
    now = float(now_ms)
    p = params.tolist()
    return _row_py(facts.tolist(), now, float(retention), p, _decay_factors_py(now, p))


def warm_up() -> float:
    """Compile (or load from the cache) every equity kernel, tiers included; returns the seconds spent.

    Callers pass float64 arrays (C-contiguous), an int ``now_ms`` and a float retention.
    """
    start = time.perf_counter()
    params = kernel_params(EquityConfig.default())
    facts = np.zeros((1, N_FACTS), dtype=np.float64)
    compute_indices(facts, 1_700_000_000_000, np.full(1, np.nan), params)
    equity_one(facts[0], 1_700_000_000_000, math.nan, params)
    warm_up_tiers()
    return time.perf_counter() - start
