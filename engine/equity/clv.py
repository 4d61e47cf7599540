"""Customer lifetime value: BG/NBD for how many purchases, Gamma-Gamma for how much each is worth.

Per customer the models read three numbers of purchase history — x repeat purchases, the last at
t_x, observed for T since the first purchase (any one time unit, used consistently) — and the
mean value m of those repeat purchases. In code T is ``age``: the literature's capital letter
would clash with the naming rules.

This module holds what callers use: the parameters (validated on construction, and stored as
plain JSON through ``to_dict`` / ``from_dict``), the input checks, the predictions for given
parameters — probability alive, expected purchases, expected spend and the discounted CLV, whose
formulas are in :mod:`engine.equity.clv_predict` — and :func:`warm_up`. The likelihoods are in
:mod:`engine.equity.clv_likelihood`, fitting in :mod:`engine.equity.clv_fit`, simulation in
:mod:`engine.equity.clv_simulate`, the special functions in :mod:`engine.equity.clv_special`.

The checks raise ``ValueError`` naming the first offending field and row, so a bad record is
found without a search; past them, every array is contiguous float64, the one dtype the kernels
are compiled for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike

from engine.equity.clv_predict import discounted_clv, expected_spend, expected_transactions, lifetime_one, p_alive
from engine.equity.clv_special import digamma, hyp2f1


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name}: must be positive and finite, got {number!r}")
    return number


class _Params:
    """Validation and dict round trip shared by the parameter classes."""

    __slots__ = ()
    MODEL: ClassVar[str]

    def __post_init__(self) -> None:
        for field in fields(self):
            object.__setattr__(self, field.name, _positive_finite(field.name, getattr(self, field.name)))

    def to_dict(self) -> dict[str, float | str]:
        """Plain floats under the parameter names, plus ``model``: JSON as it is."""
        return {"model": self.MODEL, **{f.name: float(getattr(self, f.name)) for f in fields(self)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        """Read what :meth:`to_dict` wrote. Keys other than the parameters are ignored, so a dict
        carrying more (a fit's diagnostics, a later version's fields) still loads; ``model``, if
        present, must name this model."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        model = data.get("model", cls.MODEL)
        if model != cls.MODEL:
            raise ValueError(f"model: expected {cls.MODEL!r}, got {model!r}")
        values = {}
        for field in fields(cls):
            if field.name not in data:
                raise ValueError(f"{field.name}: missing")
            values[field.name] = _positive_finite(field.name, data[field.name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class BGNBDParams(_Params):
    """Purchase rate λ ~ Gamma(shape r, rate alpha); dropout probability p ~ Beta(a, b)."""

    MODEL: ClassVar[str] = "bg_nbd"
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class GammaGammaParams(_Params):
    """Purchase value ~ Gamma(shape p, rate ν) with ν ~ Gamma(shape q, rate v) across customers."""

    MODEL: ClassVar[str] = "gamma_gamma"
    p: float
    q: float
    v: float


# ---------------------------------------------------------------------------------------------
# Checked entry points


def as_column(name: str, values: ArrayLike, rows: int | None = None) -> np.ndarray:
    """One value per customer as contiguous float64, the only dtype the kernels are compiled for."""
    try:
        column = np.ascontiguousarray(np.atleast_1d(np.asarray(values, dtype=np.float64)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, {exc}") from None
    if column.ndim != 1:
        raise ValueError(f"{name}: expected one value per customer, got shape {column.shape}")
    if rows is not None and column.shape[0] != rows:
        raise ValueError(f"{name}: {column.shape[0]} rows, expected {rows} like x")
    return column


def _first_bad(name: str, values: np.ndarray, bad: np.ndarray, why: str) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        i = int(rows[0])
        raise ValueError(f"{name}[{i}] = {float(values[i])!r}: {why}")


def check_purchase_history(x: ArrayLike, t_x: ArrayLike, age: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (x, t_x, age) columns; a ValueError names the first offending field and row."""
    xs = as_column("x", x)
    txs = as_column("t_x", t_x, xs.shape[0])
    ts = as_column("age", age, xs.shape[0])
    for name, column in (("x", xs), ("t_x", txs), ("age", ts)):
        _first_bad(name, column, ~np.isfinite(column), "must be finite")
        _first_bad(name, column, column < 0.0, "must not be negative")
    _first_bad("x", xs, xs != np.floor(xs), "the number of repeat purchases must be a whole number")
    _first_bad("t_x", txs, txs > ts, "the last repeat purchase cannot come after the end of observation (age)")
    _first_bad("t_x", txs, (xs == 0.0) & (txs != 0.0), "must be 0 when x is 0 (there is no repeat purchase)")
    return xs, txs, ts


def check_spend(x: ArrayLike, m: ArrayLike, *, min_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Validated (x, m) columns: x whole numbers ≥ min_x, m ≥ 0 and > 0 wherever x > 0."""
    xs = as_column("x", x)
    ms = as_column("m", m, xs.shape[0])
    _first_bad("x", xs, ~np.isfinite(xs), "must be finite")
    _first_bad("x", xs, (xs < min_x) | (xs != np.floor(xs)), f"must be a whole number ≥ {min_x:g}")
    _first_bad("m", ms, ~np.isfinite(ms), "must be finite")
    _first_bad("m", ms, ms < 0.0, "must not be negative")
    _first_bad("m", ms, (xs > 0.0) & (ms == 0.0), "the mean purchase value must be positive when x > 0")
    return xs, ms


def probability_alive(params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, age: ArrayLike) -> np.ndarray:
    """P(alive at T) per customer."""
    xs, txs, ts = check_purchase_history(x, t_x, age)
    return p_alive(xs, txs, ts, params.r, params.alpha, params.a, params.b)


def conditional_expected_transactions(params: BGNBDParams, t: float, x: ArrayLike, t_x: ArrayLike, age: ArrayLike) -> np.ndarray:
    """Expected purchases per customer in the next t time units."""
    horizon = float(t)
    if not math.isfinite(horizon) or horizon < 0.0:
        raise ValueError(f"t: must be finite and ≥ 0, got {t!r}")
    xs, txs, ts = check_purchase_history(x, t_x, age)
    return expected_transactions(horizon, xs, txs, ts, params.r, params.alpha, params.a, params.b)


def conditional_expected_spend(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> np.ndarray:
    """Expected value of a future purchase per customer (the population mean where x = 0)."""
    xs, ms = check_spend(x, m, min_x=0.0)
    return expected_spend(xs, ms, params.p, params.q, params.v)


def customer_lifetime_value(
    purchases: BGNBDParams,
    spend: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    age: ArrayLike,
    m: ArrayLike,
    *,
    periods: int,
    period_length: float,
    margin: float,
    discount_rate: float,
) -> np.ndarray:
    """Discounted margin per customer over the next ``periods`` periods of ``period_length``
    time units each (the model's unit: weeks if x, t_x and age are in weeks):

        CLV = margin · E[M | x, m] · Σ_{i=1..H} (E[X(iΔ)] − E[X((i−1)Δ)]) / (1 + discount_rate)^i

    with H = ``periods`` and Δ = ``period_length``: the purchases expected in each period, valued
    at the expected spend (Gamma-Gamma) and discounted from the end of that period. ``margin`` is
    the share of spend kept and ``discount_rate`` the rate per period; the derivation of the
    expectations is in :mod:`engine.equity.clv_predict`."""
    if isinstance(periods, bool) or not isinstance(periods, int | np.integer) or periods < 0:
        raise ValueError(f"periods: must be a whole number ≥ 0, got {periods!r}")
    length = float(period_length)
    if not math.isfinite(length) or length <= 0.0:
        raise ValueError(f"period_length: must be positive and finite, got {period_length!r}")
    rate = float(discount_rate)
    if not math.isfinite(rate) or rate <= -1.0:
        raise ValueError(f"discount_rate: must be finite and > -1, got {discount_rate!r}")
    share = float(margin)
    if not math.isfinite(share):
        raise ValueError(f"margin: must be finite, got {margin!r}")
    xs, txs, ts = check_purchase_history(x, t_x, age)
    _, ms = check_spend(xs, m, min_x=0.0)
    value = expected_spend(xs, ms, spend.p, spend.q, spend.v)
    p = purchases
    return discounted_clv(xs, txs, ts, value, p.r, p.alpha, p.a, p.b, int(periods), length, share, rate)


def warm_up() -> float:
    """Compile (or load from the cache) every CLV kernel with the dtypes callers pass.

    Called before the service reports ready, so the first request does not pay for compilation.
    Returns the seconds spent.
    """
    from engine.equity.clv_likelihood import (
        bgnbd_log_likelihood,
        bgnbd_log_likelihood_grad,
        gamma_gamma_log_likelihood,
        gamma_gamma_log_likelihood_grad,
    )

    start = time.perf_counter()
    one = np.ones(1, dtype=np.float64)
    bgnbd_log_likelihood(one, one, one * 2.0, 0.5, 1.0, 0.8, 2.0)
    bgnbd_log_likelihood_grad(one, one, one * 2.0, one, 0.5, 1.0, 0.8, 2.0)
    gamma_gamma_log_likelihood(one, one, 2.0, 3.0, 10.0)
    gamma_gamma_log_likelihood_grad(one, one, one, 2.0, 3.0, 10.0)
    p_alive(one, one, one * 2.0, 0.5, 1.0, 0.8, 2.0)
    expected_transactions(1.0, one, one, one * 2.0, 0.5, 1.0, 0.8, 2.0)
    spend = expected_spend(one, one, 2.0, 3.0, 10.0)
    discounted_clv(one, one, one * 2.0, spend, 0.5, 1.0, 0.8, 2.0, 2, 1.0, 0.3, 0.01)
    lifetime_one(1.0, 1.0, 2.0, 10.0, 0.5, 1.0, 0.8, 2.0, 2.0, 3.0, 10.0, 1.0, 2, 1.0, 0.3, 0.01)
    hyp2f1(0.5, 1.0, 1.5, 0.95)
    digamma(1.5)
    return time.perf_counter() - start
