"""Tiers from the equity score, and the expected gain of moving a customer up to a target tier.

A customer is in the highest tier whose ``min_equity`` is at most their equity (the first tier
starts at 0, so every score has a tier; NaN or negative scores fall in the first tier).

**Expected tier gain.** A treatment may name a ``target_tier``: the tier it aims to move the
customer to (an upgrade offer, a loyalty challenge). With ``rank`` the position of a tier,
lowest first, ``b(t)`` its lower bound and ``E`` the current equity::

    gain = uplift_probability × max(0, b(target) − E) × money_per_point   if rank(target) > rank(current)
    gain = 0                                                               otherwise

``uplift_probability`` is the probability that the customer reaches the target tier *given
that they respond* to the treatment; the probability of responding is the propensity, which
the priority already multiplies in, so it must not be folded in here as well.

The gain is in money so that it sits beside the treatment's own ``value`` (also money) in the
arbitration term ``priority = propensity × context_weight × value × lever``. It is **added**:
``value_effective = value + gain``. Adding keeps the two parts' meanings: a treatment worth
nothing on its own (a service message) still earns credit for moving a customer up, and a
treatment's own value is not inflated by a factor that has nothing to do with it, as a
multiplication would do (multiplying money by money has no unit either). The gain is 0 when
the target is not above the current tier, so it never lowers a treatment's value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from numba import njit

from engine.equity.config import EquityConfig


def tier_bounds(config: EquityConfig) -> np.ndarray:
    """Lower equity bound of each tier, lowest first, float64[T]; build once per config."""
    return np.array([t.min_equity for t in config.tiers], dtype=np.float64)


@njit(cache=True, nogil=True, inline="always")
def _rank(equity: float, bounds: np.ndarray) -> int:
    rank = 0
    for t in range(1, bounds.shape[0]):
        if equity >= bounds[t]:
            rank = t
    return rank


@njit(cache=True, nogil=True)
def tier_ranks(equity: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Tier position (0 = lowest) of each equity score, int64[n]."""
    out = np.empty(equity.shape[0], np.int64)
    for i in range(equity.shape[0]):
        out[i] = _rank(equity[i], bounds)
    return out


def tier_rank(equity: float, bounds: Sequence[float]) -> int:
    """The plain-Python rank: also what the decision path uses for its one customer, where a
    loop over a few tiers costs less than a call into compiled code."""
    rank = 0
    for t in range(1, len(bounds)):
        if equity >= bounds[t]:
            rank = t
    return rank


def tier_ranks_py(equity: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Reference for :func:`tier_ranks`."""
    b = bounds.tolist()
    return np.array([tier_rank(e, b) for e in equity.tolist()], dtype=np.int64)


@njit(cache=True, nogil=True)
def tier_gains(
    equity: float, target_rank: np.ndarray, uplift: np.ndarray, bounds: np.ndarray, money_per_point: float
) -> np.ndarray:
    """Expected tier gain of each candidate for one customer, float64[n]; a target rank < 0 means
    the candidate aims at no tier (gain 0). A rank beyond the tiers is a bug upstream: IndexError."""
    n = target_rank.shape[0]
    current = _rank(equity, bounds)
    out = np.zeros(n, np.float64)
    for i in range(n):
        target = target_rank[i]
        if target >= bounds.shape[0]:
            raise IndexError("target tier rank out of range of the tier bounds")
        if target > current:
            out[i] = uplift[i] * max(0.0, bounds[target] - equity) * money_per_point
    return out


def tier_gains_py(
    equity: float, target_rank: np.ndarray, uplift: np.ndarray, bounds: np.ndarray, money_per_point: float
) -> np.ndarray:
    """Reference for :func:`tier_gains`."""
    b = bounds.tolist()
    current = tier_rank(equity, b)
    out = []
    for target, p in zip(target_rank.tolist(), uplift.tolist(), strict=True):
        if target >= len(b):
            raise IndexError("target tier rank out of range of the tier bounds")
        out.append(p * max(0.0, b[target] - equity) * money_per_point if target > current else 0.0)
    return np.array(out, dtype=np.float64)


def tier_of(equity: float, config: EquityConfig) -> str:
    """Name of the customer's tier."""
    return config.tiers[tier_rank(equity, [t.min_equity for t in config.tiers])].name


def expected_tier_gain(equity: float, target_tier: str, uplift_probability: float, config: EquityConfig) -> float:
    """Expected money gain of moving the customer up to ``target_tier`` (module docstring).

    ``ValueError`` naming the argument for a non-finite equity, an unknown tier or a
    probability outside [0, 1].
    """
    if not math.isfinite(equity):
        raise ValueError(f"equity must be a finite score, got {equity!r}")
    if not 0.0 <= uplift_probability <= 1.0:
        raise ValueError(f"uplift_probability must be in [0, 1], got {uplift_probability!r}")
    target = config.tier_rank(target_tier)
    bounds = [t.min_equity for t in config.tiers]
    if target <= tier_rank(equity, bounds):
        return 0.0
    return uplift_probability * max(0.0, bounds[target] - equity) * config.money_per_point


def warm_up() -> float:
    """Compile (or load from the cache) the tier kernels; returns the seconds spent."""
    start = time.perf_counter()
    bounds = tier_bounds(EquityConfig.default())
    tier_ranks(np.zeros(1, dtype=np.float64), bounds)
    tier_gains(0.0, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.float64), bounds, 1.0)
    return time.perf_counter() - start
