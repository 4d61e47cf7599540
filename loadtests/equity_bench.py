"""Equity benchmark: the four indices and the equity score for a million customers, and for one.

Run as ``python -m loadtests.equity_bench``. Measures, in this process, after ``warm_up()``:

* the compiled batch kernel over 1,000,000 customers held as arrays (median of several runs),
  and the tier kernel over the resulting scores;
* its plain-Python twin on a smaller batch, per customer, and the ratio of the two;
* the one-customer hot path: reading a stored hash into a row, ``equity_one``, and the expected
  tier gain of 20 candidates (median of many individually timed calls).

It prints tables and writes bench-results/equity.json; it asserts nothing, because timings on a
shared machine are for reading, not gating.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from engine.equity.config import EquityConfig
from engine.equity.facts import FACT_FIELDS, N_FACTS, decayed, facts_row
from engine.equity.indices import compute_indices, compute_indices_py, equity_one, equity_one_py, kernel_params, warm_up
from engine.equity.tiers import tier_bounds, tier_gains, tier_ranks
from loadtests.results import median_us, write

ROOT = Path(__file__).resolve().parent.parent
NOW_MS = 1_795_428_000_000  # 2026-11-23 10:00 UTC
DAY_MS = 86_400_000
CANDIDATES = 20

console = Console(width=None if sys.stdout.isatty() else 150)


def synthetic_customers(n: int, config: EquityConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stored facts (forward-decayed, as the store would hold them) and retention for n customers."""
    rng = np.random.default_rng(seed)
    current = np.zeros((n, N_FACTS))
    col = {name: i for i, name in enumerate(FACT_FIELDS)}
    purchases = rng.poisson(3.0, n).astype(np.float64)
    current[:, col["purchases"]] = purchases
    current[:, col["spend"]] = purchases * rng.gamma(2.0, 60.0, n)
    current[:, col["margin"]] = current[:, col["spend"]] * rng.uniform(-0.05, 0.4, n)
    for name, rate in (("complaints", 0.3), ("compliments", 0.5), ("surveys", 0.4), ("mentions", 0.6), ("referrals", 0.2)):
        current[:, col[name]] = rng.poisson(rate, n)
    current[:, col["survey_score"]] = current[:, col["surveys"]] * rng.uniform(-1, 1, n)
    current[:, col["sentiment"]] = current[:, col["mentions"]] * rng.uniform(-1, 1, n)
    current[:, col["first_seen_ms"]] = NOW_MS - rng.uniform(0, 3_000, n) * DAY_MS
    current[:, col["last_purchase_ms"]] = np.where(purchases > 0, NOW_MS - rng.uniform(0, 400, n) * DAY_MS, 0.0)
    unit = decayed(dict.fromkeys(FACT_FIELDS, 1.0), NOW_MS, config)  # what a stored 1 reads as today
    stored = current / np.array([unit[f] for f in FACT_FIELDS])
    retention = np.where(rng.random(n) < 0.3, np.nan, rng.beta(5, 2, n))  # 30% with no fitted model yet
    return np.ascontiguousarray(stored), retention


def bench_batch(n: int, runs: int, config: EquityConfig) -> dict[str, Any]:
    params = kernel_params(config)
    facts, retention = synthetic_customers(n, config)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        _, equity = compute_indices(facts, NOW_MS, retention, params)
        samples.append(time.perf_counter() - start)
    bounds = tier_bounds(config)
    tier_samples = []
    for _ in range(runs):
        start = time.perf_counter()
        ranks = tier_ranks(equity, bounds)
        tier_samples.append(time.perf_counter() - start)
    shares = np.bincount(ranks, minlength=len(config.tiers)) / n
    return {
        "customers": n,
        "runs": runs,
        "indices_ms": statistics.median(samples) * 1000,
        "indices_ms_min": min(samples) * 1000,
        "tiers_ms": statistics.median(tier_samples) * 1000,
        "equity_mean": float(equity.mean()),
        "tier_shares": dict(zip(config.tier_names, shares.round(4).tolist(), strict=True)),
    }


def bench_twin(n: int, config: EquityConfig, batch_ms: float, batch_n: int) -> dict[str, Any]:
    params = kernel_params(config)
    facts, retention = synthetic_customers(n, config, seed=1)
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        compute_indices_py(facts, NOW_MS, retention, params)
        samples.append(time.perf_counter() - start)
    twin_ns = statistics.median(samples) * 1e9 / n
    compiled_ns = batch_ms * 1e6 / batch_n
    return {
        "customers": n,
        "twin_ns_per_customer": twin_ns,
        "compiled_ns_per_customer": compiled_ns,
        "ratio": twin_ns / compiled_ns,
    }


def bench_one(calls: int, config: EquityConfig) -> dict[str, float]:
    params = kernel_params(config)
    facts, _ = synthetic_customers(1, config, seed=2)
    row = facts[0]
    stored = {name.encode(): repr(float(v)).encode() for name, v in zip(FACT_FIELDS, row.tolist(), strict=True)}
    bounds = tier_bounds(config)
    rng = np.random.default_rng(3)
    target = rng.integers(-1, len(config.tiers), CANDIDATES).astype(np.int64)
    uplift = rng.uniform(0.0, 0.3, CANDIDATES)
    money = config.money_per_point
    _, _, _, _, equity = equity_one(row, NOW_MS, 0.8, params)
    return {
        "facts_row_us": median_us(lambda: facts_row(stored), calls),
        "equity_one_us": median_us(lambda: equity_one(row, NOW_MS, 0.8, params), calls),
        "equity_one_nan_retention_us": median_us(lambda: equity_one(row, NOW_MS, math.nan, params), calls),
        "equity_one_py_us": median_us(lambda: equity_one_py(row, NOW_MS, 0.8, params), max(calls // 10, 100)),
        "tier_gains_us": median_us(lambda: tier_gains(equity, target, uplift, bounds, money), calls),
        **bench_per_decision(calls, config),
    }


def bench_per_decision(calls: int, config: EquityConfig) -> dict[str, float]:
    """What a decision pays for customer value: ValueModel.evaluate on facts as read from Redis,
    without and with a fitted lifetime model (P(alive), expected purchases and CLV on top)."""
    from engine.equity.clv import BGNBDParams, GammaGammaParams
    from engine.equity.value import LifetimeModel, ValueModel
    from engine.seed import DEMO_PURCHASES, DEMO_SPEND, demo_value_facts

    (_, facts), *_ = demo_value_facts(["bench"], NOW_MS, config, seed=11)
    lifetime = LifetimeModel(1, BGNBDParams(**_params(DEMO_PURCHASES)), GammaGammaParams(**_params(DEMO_SPEND)), NOW_MS, 1)
    plain, fitted = ValueModel(config), ValueModel(config, lifetime)
    return {
        "per_decision_us": median_us(lambda: plain.evaluate(facts, NOW_MS), calls),
        "per_decision_with_clv_us": median_us(lambda: fitted.evaluate(facts, NOW_MS), calls),
    }


def _params(p: Any) -> dict[str, float]:
    return {k: v for k, v in p.to_dict().items() if k != "model"}


def render(warm: float, batch: dict[str, Any], twin: dict[str, Any], one: dict[str, float]) -> None:
    table = Table(title=f"equity for {batch['customers']:,} customers from arrays (median of {batch['runs']} runs)", min_width=70)
    table.add_column("step")
    table.add_column("ms", justify="right")
    table.add_column("ns/customer", justify="right")
    n = batch["customers"]
    table.add_row("4 indices + equity (numba)", f"{batch['indices_ms']:.1f}", f"{batch['indices_ms'] * 1e6 / n:.1f}")
    table.add_row("tier of each score (numba)", f"{batch['tiers_ms']:.1f}", f"{batch['tiers_ms'] * 1e6 / n:.1f}")
    console.print(table)

    table = Table(title=f"plain-Python twin on {twin['customers']:,} customers (median of 3 runs)", min_width=70)
    table.add_column("kernel")
    table.add_column("ns/customer", justify="right")
    table.add_row("compiled (numba)", f"{twin['compiled_ns_per_customer']:.1f}")
    table.add_row("plain Python twin", f"{twin['twin_ns_per_customer']:,.0f}")
    table.add_row("ratio", f"{twin['ratio']:.0f}×")
    console.print(table)

    table = Table(title="one customer, the hot path (median per call)", min_width=70)
    table.add_column("step")
    table.add_column("µs/call", justify="right")
    table.add_row("stored hash → facts row (facts_row)", f"{one['facts_row_us']:.2f}")
    table.add_row("equity_one (numba)", f"{one['equity_one_us']:.2f}")
    table.add_row("equity_one, retention unknown", f"{one['equity_one_nan_retention_us']:.2f}")
    table.add_row("equity_one_py (twin)", f"{one['equity_one_py_us']:.2f}")
    table.add_row(f"tier gains of {CANDIDATES} candidates (numba)", f"{one['tier_gains_us']:.2f}")
    table.add_row("per decision: indices, equity, tier", f"{one['per_decision_us']:.2f}")
    table.add_row("per decision, with P(alive), purchases and CLV", f"{one['per_decision_with_clv_us']:.2f}")
    console.print(table)
    shares = ", ".join(f"{k} {v:.1%}" for k, v in batch["tier_shares"].items())
    console.print(f"warm_up {warm:.3f} s; mean equity {batch['equity_mean']:.1f}; tiers: {shares}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="batch size (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=7, help="timed batch runs (default 7)")
    parser.add_argument("--twin-customers", type=int, default=20_000, help="batch size for the twin (default 20,000)")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per one-customer measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="directory for equity.json")
    args = parser.parse_args(argv)

    config = EquityConfig.default()
    warm = warm_up()
    batch = bench_batch(args.customers, args.runs, config)
    twin = bench_twin(args.twin_customers, config, batch["indices_ms"], args.customers)
    one = bench_one(args.calls, config)
    render(warm, batch, twin, one)

    figures = {
        "warm_up_seconds": warm,
        "batch": batch,
        "twin": twin,
        "one_customer": one,
    }
    path = write(args.out, "equity.json", figures, ("numba", "numpy"))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
