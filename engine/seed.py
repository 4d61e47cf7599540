"""Demo customers: a few named ones that walk the scenarios, and as many synthetic ones as asked.

Generated from a seed, so the same command always produces the same base (benchmarks and demos
are repeatable).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

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

_TIERS = ("bronze", "silver", "gold", "platinum")
_TIER_WEIGHTS = (0.55, 0.28, 0.13, 0.04)
_SEGMENTS = ("family", "young_adult", "business", "leisure")
_AIRPORTS = ("CDG", "LHR", "FRA", "AMS", "JFK", "SFO", "FCO", "MAD")


def synthetic_id(n: int) -> str:
    return f"cust-{n:06d}"


def demo_profiles(count: int, seed: int = 7) -> Iterator[tuple[str, dict[str, Any]]]:
    """The named customers, then `count` synthetic ones (`cust-000001` ...)."""
    yield from NAMED.items()
    rng = random.Random(seed)
    for n in range(1, count + 1):
        tier = rng.choices(_TIERS, _TIER_WEIGHTS)[0]
        yield (
            synthetic_id(n),
            {
                "name": f"Customer {n}",
                "tier": tier,
                "age": rng.randint(18, 80),
                "segment": rng.choice(_SEGMENTS),
                "home_airport": rng.choice(_AIRPORTS),
                "loyalty_points": rng.randint(0, 100_000),
                "email_opt_in": rng.random() < 0.6,
            },
        )
