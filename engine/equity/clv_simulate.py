"""Customers drawn from the BG/NBD and Gamma-Gamma models with known parameters.

The generative story, customer by customer, exactly as the models assume it:

* a purchase rate λ ~ Gamma(shape r, rate α) and a dropout probability p ~ Beta(a, b);
* repeat purchases after the first (at time 0) as a Poisson process with rate λ; right after each
  repeat purchase the customer leaves for good with probability p, so the number of repeat
  purchases a customer will ever make is K ~ Geometric(p) on {1, 2, …} (and a customer cannot
  leave before the first repeat purchase);
* over the observation window (0, T] with N ~ Poisson(λT) purchase opportunities, the customer
  makes x = min(N, K) of them and is still alive at T when N < K. Given N, the opportunities are
  N uniform points on (0, T], so the time of the x-th is T · Beta(x, N − x + 1);
* each purchase value is Gamma(shape p_spend, rate ν) with ν ~ Gamma(shape q, rate v), so the mean
  of x values is Gamma(p_spend · x, ν) / x (0 when x = 0).

Continuing the same customers past T (:func:`simulate_holdout`) uses the memorylessness of both
processes: an alive customer has K − N purchases left and Poisson(λt) opportunities in the next t.

The random generator is always passed in, so a seed reproduces a population exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from engine.equity.clv import BGNBDParams, GammaGammaParams

_MIN_DROPOUT = 1e-12
"""Beta draws can underflow to 0; a customer with p below this is treated as never leaving."""


@dataclass(frozen=True, slots=True)
class SimulatedCustomers:
    """What the models observe (x, t_x, age, m) and the latent state that produced it."""

    x: np.ndarray
    t_x: np.ndarray
    age: np.ndarray
    m: np.ndarray
    rate: np.ndarray
    """λ, purchases per time unit while alive."""
    dropout: np.ndarray
    """p, the probability of leaving after each repeat purchase."""
    alive: np.ndarray
    """Whether the customer is still alive at the end of observation."""
    remaining: np.ndarray
    """Repeat purchases left before leaving, for the alive (int64; 0 for the others)."""


def simulate_customers(
    purchases: BGNBDParams, age: ArrayLike, rng: np.random.Generator, spend: GammaGammaParams | None = None
) -> SimulatedCustomers:
    """One customer per entry of ``age`` (each observed for that long since the first purchase);
    mean spend m is drawn when ``spend`` is given and is 0 otherwise."""
    ages = np.ascontiguousarray(np.atleast_1d(np.asarray(age, dtype=np.float64)))
    if ages.ndim != 1 or not np.all(np.isfinite(ages)) or np.any(ages < 0.0):
        raise ValueError("age: expected one finite, non-negative observation length per customer")
    n = ages.size
    rate = rng.gamma(purchases.r, 1.0 / purchases.alpha, size=n)
    dropout = rng.beta(purchases.a, purchases.b, size=n)
    lifetime_purchases = rng.geometric(np.maximum(dropout, _MIN_DROPOUT))
    opportunities = rng.poisson(rate * ages)
    x = np.minimum(opportunities, lifetime_purchases)
    alive = opportunities < lifetime_purchases
    t_x = np.zeros(n, dtype=np.float64)
    bought = x > 0
    t_x[bought] = ages[bought] * rng.beta(x[bought], opportunities[bought] - x[bought] + 1)
    m = np.zeros(n, dtype=np.float64)
    if spend is not None:
        nu = rng.gamma(spend.q, 1.0 / spend.v, size=n)
        m[bought] = rng.gamma(spend.p * x[bought], 1.0 / nu[bought]) / x[bought]
    return SimulatedCustomers(
        x=x.astype(np.float64),
        t_x=t_x,
        age=ages,
        m=m,
        rate=rate,
        dropout=dropout,
        alive=alive,
        remaining=np.where(alive, lifetime_purchases - opportunities, 0).astype(np.int64),
    )


def simulate_holdout(customers: SimulatedCustomers, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Repeat purchases each customer makes in (T, T + horizon], float64[n]."""
    if not np.isfinite(horizon) or horizon < 0.0:
        raise ValueError(f"horizon: must be finite and ≥ 0, got {horizon!r}")
    opportunities = rng.poisson(customers.rate * horizon)
    return np.where(customers.alive, np.minimum(opportunities, customers.remaining), 0).astype(np.float64)
