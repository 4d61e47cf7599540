"""What a customer is worth, as one decision sees it.

From the customer's value facts (engine.equity.facts) and the rule set's equity configuration:
the four indices, the equity score and the tier (engine.equity.indices, engine.equity.tiers);
and, once a lifetime-value model has been fitted (`nba clv fit`), the probability the customer
is still active, the purchases expected over the horizon and the discounted CLV
(engine.equity.clv). The probability alive also feeds the loyalty index as its retention term;
before a fit, loyalty uses recency instead, as the indices module documents.

Lifetime-value inputs come from the undecayed purchase history in the same hash: x = orders − 1
repeat purchases, t_x = days from the first to the last purchase, age = days from the first
purchase to now, m = mean order value. A customer who never bought has no such history, and no
CLV (None), rather than a number the model was never fitted to give.

One customer costs a few microseconds here (compiled kernels on one row), so every decision can
afford it; the batch path (`nba equity recompute`) runs the same kernels over many rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.equity.clv import BGNBDParams, GammaGammaParams
from engine.equity.clv_predict import lifetime_one, p_alive
from engine.equity.config import EquityConfig
from engine.equity.facts import DAY_MS, FACT_FIELDS, facts_row
from engine.equity.indices import compute_indices, equity_one, kernel_params
from engine.equity.tiers import tier_bounds, tier_gains, tier_rank, tier_ranks

HORIZON_DAYS = 365.0
"""Expected purchases are reported over the next year."""
CLV_PERIODS = 12
CLV_PERIOD_DAYS = 365.0 / 12
MONTHLY_DISCOUNT = 0.01
"""About 12.7 % a year: a common cost of capital for retail."""


@dataclass(frozen=True, slots=True)
class LifetimeModel:
    """A fitted BG/NBD + Gamma-Gamma pair, as stored in Redis by `nba clv fit` (time unit: days)."""

    version: int
    purchases: BGNBDParams
    spend: GammaGammaParams
    fitted_at_ms: int
    customers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "purchases": self.purchases.to_dict(),
            "spend": self.spend.to_dict(),
            "fitted_at_ms": self.fitted_at_ms,
            "customers": self.customers,
            "unit": "days",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LifetimeModel:
        return cls(
            version=int(data["version"]),
            purchases=BGNBDParams.from_dict(data["purchases"]),
            spend=GammaGammaParams.from_dict(data["spend"]),
            fitted_at_ms=int(data["fitted_at_ms"]),
            customers=int(data["customers"]),
        )


@dataclass(slots=True)
class CustomerValue:
    contribution: float
    perception: float
    referral: float
    loyalty: float
    equity: float
    tier: str
    p_alive: float | None = None
    expected_purchases: float | None = None
    clv: float | None = None

    def as_dict(self) -> dict[str, Any]:
        # Spelt out: dataclasses.asdict deep-copies every value, a measurable cost per decision.
        return {
            "contribution": self.contribution,
            "perception": self.perception,
            "referral": self.referral,
            "loyalty": self.loyalty,
            "equity": self.equity,
            "tier": self.tier,
            "p_alive": self.p_alive,
            "expected_purchases": self.expected_purchases,
            "clv": self.clv,
        }

    def condition_fields(self) -> dict[str, Any]:
        """What conditions may read as `value.<field>` (engine.rules.vocabulary.VALUE_FIELDS);
        unknown lifetime figures are left out, so `value.clv > 100` is simply false for them."""
        out = {
            "equity": self.equity,
            "tier": self.tier,
            "contribution": self.contribution,
            "perception": self.perception,
            "referral": self.referral,
            "loyalty": self.loyalty,
        }
        if self.clv is not None:
            out["clv"] = self.clv
            out["p_alive"] = self.p_alive
        return out


def purchase_history(facts: Mapping[str, float], now_ms: int) -> tuple[float, float, float, float] | None:
    """(x, t_x, age, m) in days, or None for a customer with no purchase."""
    orders = facts.get("order_count", 0.0)
    first = facts.get("first_purchase_ms", 0.0)
    if orders < 1.0 or first <= 0.0:
        return None
    last = max(facts.get("last_purchase_ms", first), first)
    t_x = (last - first) / DAY_MS
    age = max(now_ms - first, last - first) / DAY_MS
    return float(math.floor(orders) - 1.0), t_x, age, facts.get("spend_total", 0.0) / orders


class ValueModel:
    """The equity configuration compiled for the kernels, plus the lifetime model when fitted."""

    def __init__(self, config: EquityConfig, lifetime: LifetimeModel | None = None) -> None:
        self.config = config
        self.lifetime = lifetime
        self.params = kernel_params(config)
        self.bounds = tier_bounds(config)
        self.tier_names = config.tier_names
        self.margin = config.contribution.default_margin_rate
        # Derived once, not per decision: the bounds as a list for the one-customer tier, and
        # every argument of the lifetime kernel but the customer's own history, as floats.
        self._bounds_list = self.bounds.tolist()
        self._lifetime_args: tuple[float | int, ...] | None = None
        if lifetime is not None:
            bg, gg = lifetime.purchases, lifetime.spend
            model = (bg.r, bg.alpha, bg.a, bg.b, gg.p, gg.q, gg.v)
            horizon = (HORIZON_DAYS, CLV_PERIODS, CLV_PERIOD_DAYS, float(self.margin), MONTHLY_DISCOUNT)
            self._lifetime_args = (*(float(v) for v in model), *horizon)

    def with_lifetime(self, lifetime: LifetimeModel | None) -> ValueModel:
        return ValueModel(self.config, lifetime)

    def evaluate(self, facts: Mapping[str, float], now_ms: int) -> CustomerValue:
        alive = expected = clv = None
        if self._lifetime_args is not None:
            history = purchase_history(facts, now_ms)  # floats, as the kernel's one signature wants
            if history is not None:
                alive, expected, clv = lifetime_one(*history, *self._lifetime_args)
        retention = alive if alive is not None else math.nan
        c, p, r, loyalty, e = equity_one(facts_row(facts), now_ms, retention, self.params)
        tier = self.tier_names[tier_rank(e, self._bounds_list)]
        return CustomerValue(c, p, r, loyalty, e, tier, alive, expected, clv)

    def tier_gains(self, equity: float, target_ranks: np.ndarray, uplift: np.ndarray) -> np.ndarray:
        """Money value, per candidate, of moving the customer up to its target tier (rank −1: none);
        see engine.equity.tiers for the formula."""
        return tier_gains(float(equity), target_ranks, uplift, self.bounds, float(self.config.money_per_point))

    def alive(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """P(alive) for many buyers at once (days); requires a lifetime model."""
        assert self.lifetime is not None
        bg = self.lifetime.purchases
        return p_alive(x, t_x, age, bg.r, bg.alpha, bg.a, bg.b)

    def evaluate_many(self, facts: np.ndarray, now_ms: int, retention: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices (n×4), equity (n) and tier ranks (n) for a facts matrix in FACT_FIELDS order."""
        indices, equity = compute_indices(facts, now_ms, retention, self.params)
        return indices, equity, tier_ranks(equity, self.bounds)


__all__ = ["FACT_FIELDS", "CustomerValue", "LifetimeModel", "ValueModel", "purchase_history"]
