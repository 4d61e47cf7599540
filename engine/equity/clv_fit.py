"""Maximum-likelihood fits of the BG/NBD and Gamma-Gamma models.

The optimiser (L-BFGS-B from scipy) moves the logarithms of the parameters, with the analytic
gradient of :mod:`engine.equity.clv_likelihood`, and minimises the *mean* negative
log-likelihood per customer, so that its tolerances mean the same for a hundred customers as for
a million (:data:`GRADIENT_TOLERANCE` says when a fit counts as converged). The log-parameters
are boxed to ±:data:`LOG_BOUND`: an unbounded step can overflow ``exp``, and a parameter that
runs into the box is one the data cannot pin down (b → ∞ when nobody seems to drop out, say) —
such a fit is reported as not converged rather than passed off as an estimate. Converged means
a stationary point inside the box, no more: where the likelihood keeps rising towards a limit
(nobody ever drops out, so a / (a + b) → 0) the gradient flattens on the way and the fit stops
at parameters that already predict like the limit.

Customers with identical (x, t_x, T) — common when time is counted in whole days or weeks —
are merged into one row with a weight before fitting; the likelihood is the same and a pass is
cheaper.

Fits raise ``ValueError`` naming the offending field and row for bad input (see
:func:`engine.equity.clv.check_purchase_history`). The result is a frozen dataclass that
round-trips through :meth:`to_dict` / :meth:`from_dict` as plain JSON values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from engine.equity.clv import BGNBDParams, GammaGammaParams, check_purchase_history, check_spend
from engine.equity.clv_likelihood import bgnbd_log_likelihood_grad, gamma_gamma_log_likelihood_grad

P = TypeVar("P", BGNBDParams, GammaGammaParams)

LOG_BOUND = 18.0
"""Bound on |ln θ| for every parameter θ during the search (θ within e^±18 ≈ 10^±7.8)."""
GRADIENT_TOLERANCE = 1e-6
"""A fit has converged when every component of the gradient of the mean log-likelihood per
customer, with respect to the log-parameters, is at most this (and no parameter is at a bound)."""


def _diagnostics(data: Mapping[str, object]) -> tuple[float, int, bool]:
    ll = data.get("log_likelihood")
    if isinstance(ll, bool) or not isinstance(ll, int | float) or not math.isfinite(ll):
        raise ValueError(f"log_likelihood: expected a finite number, got {ll!r}")
    n = data.get("n_customers")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_customers: expected a whole number ≥ 1, got {n!r}")
    converged = data.get("converged")
    if not isinstance(converged, bool):
        raise ValueError(f"converged: expected true or false, got {converged!r}")
    return float(ll), n, converged


@dataclass(frozen=True, slots=True)
class _Fit(Generic[P]):
    """Fitted parameters with the maximised log-likelihood and how the search ended."""

    PARAMS: ClassVar[type[BGNBDParams | GammaGammaParams]]
    params: P
    log_likelihood: float
    n_customers: int
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        fit = {"log_likelihood": self.log_likelihood, "n_customers": self.n_customers, "converged": self.converged}
        return {**self.params.to_dict(), **fit}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        return cls(cls.PARAMS.from_dict(data), *_diagnostics(data))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class BGNBDFit(_Fit[BGNBDParams]):
    """A fitted BG/NBD model."""

    PARAMS = BGNBDParams


@dataclass(frozen=True, slots=True)
class GammaGammaFit(_Fit[GammaGammaParams]):
    """A fitted Gamma-Gamma model."""

    PARAMS = GammaGammaParams


def _merge_identical(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the stacked columns and how many customers each stands for."""
    rows, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return [np.ascontiguousarray(rows[:, j]) for j in range(rows.shape[1])], counts.astype(np.float64)


def _maximise(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, n: float, max_iterations: int
) -> tuple[np.ndarray, float, bool]:
    """(log-parameters, log-likelihood, converged) of L-BFGS-B on the mean negative log-likelihood."""

    def negative_mean(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = objective(theta)
        if not math.isfinite(ll):
            # A region where the likelihood is not representable: steer the line search away.
            return math.inf, np.zeros_like(theta)
        return -ll / n, -grad / n

    result = minimize(
        negative_mean,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * start.size,
        options={"maxiter": max_iterations, "ftol": 1e-14, "gtol": GRADIENT_TOLERANCE / 100.0},
    )
    theta = np.asarray(result.x, dtype=np.float64)
    inside = bool(np.all(np.abs(theta) < LOG_BOUND - 1e-6))
    # Judged by the gradient rather than by the optimiser's message: near the optimum the line
    # search can stop on rounding ("abnormal termination") with the gradient already ~1e-8.
    flat = bool(np.all(np.abs(np.asarray(result.jac)) <= GRADIENT_TOLERANCE))
    return theta, -float(result.fun) * n, inside and flat and math.isfinite(float(result.fun))


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, age: ArrayLike, *, initial: BGNBDParams | None = None, max_iterations: int = 1000
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD parameters for customers with x repeat purchases, the last at t_x,
    observed for ``age`` (T) since their first purchase."""
    xs, txs, ages = check_purchase_history(x, t_x, age)
    if xs.size == 0:
        raise ValueError("x: no customers to fit")
    if not np.any(xs > 0):
        raise ValueError("x: no repeat purchases, so neither the purchase rate nor dropout can be estimated")
    (ux, utx, uage), weight = _merge_identical(xs, txs, ages)
    if initial is None:
        # Rate r / α near the observed purchase rate; a and b neutral.
        purchases = float(np.sum(weight * ux))
        exposure = float(np.sum(weight * uage))
        alpha = min(max(exposure / purchases, 1e-3), 1e6) if purchases > 0.0 and exposure > 0.0 else 1.0
        initial = BGNBDParams(1.0, alpha, 1.0, 1.0)
    start = np.log([initial.r, initial.alpha, initial.a, initial.b])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        return bgnbd_log_likelihood_grad(ux, utx, uage, weight, r, alpha, a, b)

    theta, ll, converged = _maximise(objective, start, float(xs.size), max_iterations)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BGNBDFit(BGNBDParams(r, alpha, a, b), ll, int(xs.size), converged)


def fit_gamma_gamma(
    x: ArrayLike, m: ArrayLike, *, initial: GammaGammaParams | None = None, max_iterations: int = 1000
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from customers with x ≥ 1 purchases of mean value m."""
    xs, ms = check_spend(x, m, min_x=1.0)
    if xs.size == 0:
        raise ValueError("x: no customers to fit")
    (ux, um), weight = _merge_identical(xs, ms)
    if initial is None:
        # p = 1, q = 2 put the population mean p·v / (q − 1) at v: start it at the observed mean.
        initial = GammaGammaParams(1.0, 2.0, float(np.sum(weight * um) / np.sum(weight)))
    start = np.log([initial.p, initial.q, initial.v])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(theta)
        return gamma_gamma_log_likelihood_grad(ux, um, weight, p, q, v)

    theta, ll, converged = _maximise(objective, start, float(xs.size), max_iterations)
    p, q, v = (float(v) for v in np.exp(theta))
    return GammaGammaFit(GammaGammaParams(p, q, v), ll, int(xs.size), converged)
