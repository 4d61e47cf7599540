"""Welch's t interval for a difference of two means.

The ROI report compares treated customers with the holdout, two groups of different sizes
whose spreads need not match, so the pooled-variance t interval would be wrong and Welch's is
the textbook answer. Its degrees of freedom (Welch–Satterthwaite) are fractional; scipy's
Student t handles that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

__all__ = ["Difference", "t_quantile", "welch_difference"]


@dataclass(frozen=True, slots=True)
class Difference:
    """``mean(a) − mean(b)`` with its interval; bounds are None when a group has fewer than two values.

    ``df`` is the Welch–Satterthwaite degrees of freedom, None when it is undefined (too few
    values, or no spread in either group, in which case the interval is the point itself).
    """

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    df: float | None
    n_a: int
    n_b: int
    level: float = 0.95


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile at a possibly fractional number of degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0.0:
        raise ValueError(f"df must be > 0, got {df!r}")
    return float(student_t.ppf(p, df))


def welch_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> Difference:
    """``mean(a) − mean(b)`` with Welch's t interval at ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(xa), len(xb)
    if n_a == 0 or n_b == 0:
        return Difference(None, None, None, None, n_a, n_b, level)
    estimate = float(xa.mean() - xb.mean())
    if n_a < 2 or n_b < 2:
        return Difference(estimate, None, None, None, n_a, n_b, level)
    va = float(xa.var(ddof=1)) / n_a
    vb = float(xb.var(ddof=1)) / n_b
    if va + vb == 0.0:
        return Difference(estimate, estimate, estimate, None, n_a, n_b, level)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(va + vb)
    return Difference(estimate, estimate - half, estimate + half, df, n_a, n_b, level)
