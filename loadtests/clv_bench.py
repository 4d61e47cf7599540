"""CLV benchmark: what fitting the BG/NBD and Gamma-Gamma models costs, and what a prediction costs.

Run as ``python -m loadtests.clv_bench``. Measures, on customers simulated from CDNOW-like
parameters (time in weeks, observed for 26–78 weeks):

* the BG/NBD fit on 25,000 customers and the Gamma-Gamma fit on their repeat buyers, in this
  process (median of a few fits), and in new processes sharing a fresh, empty
  ``NUMBA_CACHE_DIR``: the first start compiles every kernel and writes the cache, the second only
  loads it — import, ``warm_up()`` and the fit, which is what a job that refits from scratch pays;
* the BG/NBD and Gamma-Gamma log-likelihood kernels on those customers against their plain-Python
  twins, per call, and the ratio;
* a prediction — P(alive), expected purchases over the next 52 weeks, expected spend and the CLV
  over 12 monthly periods at 1% a month — for one customer (through the kernels, and through the
  checked functions that validate the input first) and for 1,000,000 customers.

It prints a table and writes bench-results/clv.json; it asserts nothing, because timings on a
shared machine are for reading, not gating. The fit target is 3 s for 25,000 customers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from loadtests.results import bench_start, start_table, write

ROOT = Path(__file__).resolve().parent.parent
FIT_CUSTOMERS = 25_000
BATCH_CUSTOMERS = 1_000_000
HORIZON_WEEKS = 52.0
PERIODS = 12
PERIOD_WEEKS = 52.0 / 12.0
MARGIN = 0.3
DISCOUNT = 0.01
FIT_TARGET_SECONDS = 3.0

console = Console(width=None if sys.stdout.isatty() else 150)

# Runs in a fresh interpreter; prints one JSON line of seconds.
_START_SNIPPET = f"""
import json, time
import numpy as np
t0 = time.perf_counter()
from engine.equity import clv, clv_fit, clv_simulate
t1 = time.perf_counter()
warm = clv.warm_up()
rng = np.random.default_rng(0)
truth = clv.BGNBDParams(0.243, 4.414, 0.793, 2.426)
c = clv_simulate.simulate_customers(truth, rng.uniform(26, 78, {FIT_CUSTOMERS}), rng)
t2 = time.perf_counter()
clv_fit.fit_bgnbd(c.x, c.t_x, c.age)
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "warm_up": warm, "fit": t3 - t2, "import_warm_up_fit": (t1 - t0) + warm + (t3 - t2)}}))
"""


def median_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median of individually timed calls: robust to the odd scheduler hiccup on a busy box."""
    fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def population(n: int, seed: int) -> Any:
    from engine.equity.clv import BGNBDParams, GammaGammaParams
    from engine.equity.clv_simulate import simulate_customers

    rng = np.random.default_rng(seed)
    truth = BGNBDParams(0.243, 4.414, 0.793, 2.426)
    return simulate_customers(truth, rng.uniform(26, 78, n), rng, GammaGammaParams(6.25, 3.74, 15.44))


def bench_fits(repeats: int) -> dict[str, Any]:
    from engine.equity.clv_fit import fit_bgnbd, fit_gamma_gamma

    c = population(FIT_CUSTOMERS, 0)
    repeat = c.x > 0
    bg = fit_bgnbd(c.x, c.t_x, c.age)
    gg = fit_gamma_gamma(c.x[repeat], c.m[repeat])
    return {
        "customers": FIT_CUSTOMERS,
        "repeat_customers": int(repeat.sum()),
        "bgnbd_seconds": median_seconds(lambda: fit_bgnbd(c.x, c.t_x, c.age), repeats),
        "gamma_gamma_seconds": median_seconds(lambda: fit_gamma_gamma(c.x[repeat], c.m[repeat]), repeats),
        "bgnbd": bg.to_dict(),
        "gamma_gamma": gg.to_dict(),
    }


def bench_likelihood(calls: int) -> dict[str, dict[str, float]]:
    from engine.equity.clv_likelihood import (
        bgnbd_log_likelihood,
        bgnbd_log_likelihood_py,
        gamma_gamma_log_likelihood,
        gamma_gamma_log_likelihood_py,
    )

    c = population(FIT_CUSTOMERS, 1)
    repeat = c.x > 0
    x, m = np.ascontiguousarray(c.x[repeat]), np.ascontiguousarray(c.m[repeat])
    bg = (c.x, c.t_x, c.age, 0.243, 4.414, 0.793, 2.426)
    gg = (x, m, 6.25, 3.74, 15.44)
    out = {}
    for name, kernel, twin, args, n in (
        ("bgnbd", bgnbd_log_likelihood, bgnbd_log_likelihood_py, bg, c.x.size),
        ("gamma_gamma", gamma_gamma_log_likelihood, gamma_gamma_log_likelihood_py, gg, x.size),
    ):
        compiled = median_seconds(lambda k=kernel, a=args: k(*a), calls) * 1e6
        python = median_seconds(lambda t=twin, a=args: t(*a), max(calls // 50, 3)) * 1e6
        out[name] = {"customers": n, "compiled_us": compiled, "python_us": python, "speedup": python / compiled}
    return out


def _predict_kernels(c: Any, bg: Any, gg: Any) -> tuple[np.ndarray, ...]:
    from engine.equity.clv_predict import discounted_clv, expected_spend, expected_transactions, p_alive

    alive = p_alive(c.x, c.t_x, c.age, bg.r, bg.alpha, bg.a, bg.b)
    purchases = expected_transactions(HORIZON_WEEKS, c.x, c.t_x, c.age, bg.r, bg.alpha, bg.a, bg.b)
    spend = expected_spend(c.x, c.m, gg.p, gg.q, gg.v)
    value = discounted_clv(c.x, c.t_x, c.age, spend, bg.r, bg.alpha, bg.a, bg.b, PERIODS, PERIOD_WEEKS, MARGIN, DISCOUNT)
    return alive, purchases, value


def _predict_checked(c: Any, bg: Any, gg: Any) -> tuple[np.ndarray, ...]:
    from engine.equity.clv import conditional_expected_transactions, customer_lifetime_value, probability_alive

    alive = probability_alive(bg, c.x, c.t_x, c.age)
    purchases = conditional_expected_transactions(bg, HORIZON_WEEKS, c.x, c.t_x, c.age)
    value = customer_lifetime_value(
        bg,
        gg,
        c.x,
        c.t_x,
        c.age,
        c.m,
        periods=PERIODS,
        period_length=PERIOD_WEEKS,
        margin=MARGIN,
        discount_rate=DISCOUNT,
    )
    return alive, purchases, value


def bench_prediction(calls: int) -> dict[str, float]:
    from dataclasses import replace

    from engine.equity.clv import BGNBDParams, GammaGammaParams

    bg = BGNBDParams(0.243, 4.414, 0.793, 2.426)
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    batch = population(BATCH_CUSTOMERS, 2)
    one = replace(batch, **{f: getattr(batch, f)[3:4].copy() for f in ("x", "t_x", "age", "m")})
    kernel_one = median_seconds(lambda: _predict_kernels(one, bg, gg), calls) * 1e6
    checked_one = median_seconds(lambda: _predict_checked(one, bg, gg), calls) * 1e6
    batch_seconds = median_seconds(lambda: _predict_kernels(batch, bg, gg), 3)
    alive, purchases, value = _predict_kernels(batch, bg, gg)
    return {
        "one_customer_kernels_us": kernel_one,
        "one_customer_checked_us": checked_one,
        "batch_customers": BATCH_CUSTOMERS,
        "batch_seconds": batch_seconds,
        "batch_ns_per_customer": batch_seconds / BATCH_CUSTOMERS * 1e9,
        "batch_mean_p_alive": float(np.mean(alive)),
        "batch_mean_expected_purchases": float(np.mean(purchases)),
        "batch_mean_clv": float(np.mean(value)),
    }


def render(fits: dict[str, Any], likelihood: dict[str, dict[str, float]], prediction: dict[str, float], start: dict) -> None:
    table = Table(title="fits, in this process (median)", min_width=70, caption=f"target: BG/NBD ≤ {FIT_TARGET_SECONDS:g} s")
    table.add_column("model")
    table.add_column("customers", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("estimate")
    bg, gg = fits["bgnbd"], fits["gamma_gamma"]
    table.add_row(
        "BG/NBD",
        f"{fits['customers']:,}",
        f"{fits['bgnbd_seconds']:.3f}",
        f"r={bg['r']:.3f} α={bg['alpha']:.2f} a={bg['a']:.3f} b={bg['b']:.3f}",
    )
    table.add_row(
        "Gamma-Gamma",
        f"{fits['repeat_customers']:,}",
        f"{fits['gamma_gamma_seconds']:.3f}",
        f"p={gg['p']:.2f} q={gg['q']:.2f} v={gg['v']:.2f}",
    )
    console.print(table)

    table = Table(title="log-likelihood over all customers, per call (median)", min_width=70)
    for col in ("model", "customers", "compiled µs", "Python twin µs", "speed-up"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, row in likelihood.items():
        table.add_row(
            name,
            f"{row['customers']:,}",
            f"{row['compiled_us']:.0f}",
            f"{row['python_us']:.0f}",
            f"{row['speedup']:.0f}×",
        )
    console.print(table)

    table = Table(
        title="prediction: P(alive) + expected purchases (52 weeks) + expected spend + CLV (12 months)",
        min_width=70,
        caption="checked: through the functions that validate their input first",
    )
    table.add_column("what")
    table.add_column("time", justify="right")
    table.add_row("one customer, kernels", f"{prediction['one_customer_kernels_us']:.1f} µs")
    table.add_row("one customer, checked", f"{prediction['one_customer_checked_us']:.1f} µs")
    table.add_row(
        f"{prediction['batch_customers']:,} customers, kernels",
        f"{prediction['batch_seconds']:.2f} s ({prediction['batch_ns_per_customer']:.0f} ns each)",
    )
    console.print(table)

    if start:
        title = f"new process, fresh NUMBA_CACHE_DIR: import + warm_up + BG/NBD fit of {FIT_CUSTOMERS:,} (seconds)"
        columns = {
            "import": "import",
            "warm_up": "warm_up",
            "fit": "fit",
            "import+warm_up+fit": "import_warm_up_fit",
            "process total": "process_total",
        }
        console.print(start_table(title, columns, start))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per compiled measurement (default 200)")
    parser.add_argument("--fits", type=int, default=5, help="timed fits per model (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="directory for clv.json")
    parser.add_argument("--skip-start", action="store_true", help="skip the cold/warm start subprocesses")
    args = parser.parse_args(argv)

    from engine.equity.clv import warm_up

    warm_up()
    fits = bench_fits(args.fits)
    likelihood = bench_likelihood(args.calls)
    prediction = bench_prediction(args.calls)
    start = {} if args.skip_start else bench_start(_START_SNIPPET)
    render(fits, likelihood, prediction, start)

    figures = {
        "fit_target_seconds": FIT_TARGET_SECONDS,
        "fits": fits,
        "log_likelihood": likelihood,
        "prediction": {
            "horizon_weeks": HORIZON_WEEKS,
            "periods": PERIODS,
            "period_weeks": PERIOD_WEEKS,
            "margin": MARGIN,
            "discount_rate": DISCOUNT,
            **prediction,
        },
        "start_seconds": start,
    }
    path = write(args.out, "clv.json", figures, ("numba", "numpy", "scipy"))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
