"""Demo customers: a few named ones that walk the scenarios, and as many synthetic ones as asked.

Generated from a seed, so the same command always produces the same base (benchmarks and demos
are repeatable).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from engine.equity.clv import BGNBDParams, GammaGammaParams
from engine.equity.clv_simulate import simulate_customers
from engine.equity.config import EquityConfig
from engine.equity.facts import increments, merge

NAMED: dict[str, dict[str, Any]] = {
    "alice": {
        "name": "Alice Moreau",
        "tier": "gold",
        "age": 41,
        "segment": "business",
        "home_airport": "CDG",
        "loyalty_points": 52_000,
        "email_opt_in": True,
    },
    "ben": {
        "name": "Ben Okafor",
        "tier": "silver",
        "age": 24,
        "segment": "young_adult",
        "home_airport": "LHR",
        "loyalty_points": 3_100,
        "email_opt_in": True,
    },
    "carla": {
        "name": "Carla Rossi",
        "tier": "bronze",
        "age": 38,
        "segment": "family",
        "home_airport": "FCO",
        "loyalty_points": 800,
        "email_opt_in": False,
    },
    "dev": {
        "name": "Dev Patel",
        "tier": "platinum",
        "age": 55,
        "segment": "leisure",
        "home_airport": "JFK",
        "loyalty_points": 240_000,
        "email_opt_in": True,
    },
}

TIERS = ("bronze", "silver", "gold", "platinum")
TIER_WEIGHTS = (0.55, 0.28, 0.13, 0.04)
SEGMENTS = ("family", "young_adult", "business", "leisure")
AIRPORTS = ("CDG", "LHR", "FRA", "AMS", "JFK", "SFO", "FCO", "MAD")


def synthetic_id(n: int) -> str:
    return f"cust-{n:06d}"


def demo_profiles(count: int, seed: int = 7) -> Iterator[tuple[str, dict[str, Any]]]:
    """The named customers, then `count` synthetic ones (`cust-000001` ...)."""
    yield from NAMED.items()
    rng = random.Random(seed)
    for n in range(1, count + 1):
        tier = rng.choices(TIERS, TIER_WEIGHTS)[0]
        yield (
            synthetic_id(n),
            {
                "name": f"Customer {n}",
                "tier": tier,
                "age": rng.randint(18, 80),
                "segment": rng.choice(SEGMENTS),
                "home_airport": rng.choice(AIRPORTS),
                "loyalty_points": rng.randint(0, 100_000),
                "email_opt_in": rng.random() < 0.6,
            },
        )


# Demo purchase behaviour in days: about one trip every two months while active, a third of
# customers lapsing early, a few hundred per order (BG/NBD and Gamma-Gamma; see engine.equity.clv).
DEMO_PURCHASES = BGNBDParams(r=0.8, alpha=50.0, a=0.6, b=2.5)
DEMO_SPEND = GammaGammaParams(p=6.0, q=4.0, v=150.0)
DAY_MS = 86_400_000


def demo_value_facts(
    customer_ids: Sequence[str], now_ms: int, config: EquityConfig, seed: int = 7
) -> Iterator[tuple[str, dict[str, float]]]:
    """Value facts of a plausible history per customer: purchases drawn from the demo BG/NBD and
    Gamma-Gamma models over up to three years, and a few complaints, compliments, surveys and
    referrals; folded with the same `increments` and `merge` as live events, so the numbers a
    demo shows are the numbers real events would give."""
    rng = np.random.default_rng(seed)
    n = len(customer_ids)
    people = simulate_customers(DEMO_PURCHASES, rng.uniform(30.0, 1_095.0, size=n), rng, spend=DEMO_SPEND)
    mean_first = rng.gamma(6.0, 40.0, size=n)  # a first order when there is no repeat to average
    extras = rng.poisson([[0.4, 0.8, 0.5, 0.3]], size=(n, 4))  # complaints, compliments, surveys, referrals
    for i, cid in enumerate(customer_ids):
        first = now_ms - int(people.age[i] * DAY_MS)
        x = int(people.x[i])
        last = first + int(people.t_x[i] * DAY_MS)
        times = [first, *sorted(rng.integers(first, last + 1, size=max(x - 1, 0)).tolist()), *([last] if x else [])]
        amount = float(people.m[i]) if x else float(mean_first[i])
        events: list[tuple[str, dict[str, Any], int]] = [("purchase", {"amount": round(amount, 2)}, t) for t in times]
        span = max(now_ms - first, DAY_MS)
        for kind, count in zip(("complaint", "compliment", "survey", "referral"), extras[i].tolist(), strict=True):
            for _ in range(count):
                attrs = {"nps": int(rng.integers(0, 11))} if kind == "survey" else {}
                events.append((kind, attrs, now_ms - int(rng.integers(0, span))))
        stored: dict[str, float] = {}
        for kind, attrs, ts in events:
            stored = merge(stored, increments(kind, attrs, ts, config))
        yield cid, stored
