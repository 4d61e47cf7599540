"""Kernel benchmark: what scoring and exploration cost per decision, and what compilation costs.

Run as ``python -m loadtests.kernel_bench``. Measures, in this process:

* the compiled scoring kernel on 200 candidates × 32 hashed features (2^18 weights), and its
  plain-Python twin on the same input, per call (median over many calls) and their ratio;
* one exploration step (choose a slate of 3 and compute the selection probabilities) for
  epsilon-greedy, Thompson, greedy and softmax at 10 and 200 candidates;

and, in subprocesses sharing a fresh, empty ``NUMBA_CACHE_DIR``: the first start, which compiles
every kernel and writes the cache, then a second start, which only loads it. That is the cost
``warm_up()`` moves out of the first decision and into start-up.

It prints a table and writes bench-results/kernels.json; it asserts nothing, because timings on
a shared machine are for reading, not gating.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from loadtests.results import bench_start, median_us, start_table, write

ROOT = Path(__file__).resolve().parent.parent
N_CANDIDATES = 200
N_FEATURES = 32
N_WEIGHTS = 2**18
SLATE = 3

console = Console(width=None if sys.stdout.isatty() else 150)

# Runs in a fresh interpreter; prints one JSON line of seconds.
_START_SNIPPET = """
import json, time
t0 = time.perf_counter()
import numba  # noqa: F401
t1 = time.perf_counter()
from engine.scoring import kernels
from engine.decision import exploration
t2 = time.perf_counter()
scoring = kernels.warm_up()
explore = exploration.warm_up()
print(json.dumps({"import_numba": t1 - t0, "import_modules": t2 - t1, "scoring": scoring, "exploration": explore}))
"""


def scoring_inputs(seed: int = 0) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    n, k = N_CANDIDATES, N_FEATURES
    idx = rng.integers(0, N_WEIGHTS, size=(n, k)).astype(np.int32)
    idx[:, -4:] = -1  # a few padded slots, as in real rows of uneven length
    val = rng.random((n, k), dtype=np.float32)
    weights = rng.normal(scale=0.05, size=N_WEIGHTS)
    prior_mean = rng.uniform(0.01, 0.2, n)
    prior_strength = rng.uniform(2.0, 50.0, n)
    evidence = rng.choice([0.0, 10.0, 1_000.0, 100_000.0], size=n)
    context_weight = rng.uniform(0.5, 2.0, n)
    value = rng.uniform(1.0, 100.0, n)
    return idx, val, weights, -2.0, prior_mean, prior_strength, evidence, context_weight, value, np.ones(n)


def bench_scoring(calls: int) -> dict[str, float]:
    from engine.scoring.kernels import score_candidates, score_candidates_py

    args = scoring_inputs()
    compiled = median_us(lambda: score_candidates(*args), calls)
    python = median_us(lambda: score_candidates_py(*args), max(calls // 100, 20))
    return {"compiled_us": compiled, "python_us": python, "speedup": python / compiled}


def bench_exploration(calls: int) -> list[dict[str, Any]]:
    from engine.decision.exploration import ExplorationPolicy, select_slate

    rows = []
    policies = [
        ("epsilon_greedy(0.1)", ExplorationPolicy.epsilon_greedy(0.1)),
        ("thompson", ExplorationPolicy.thompson()),
        ("greedy", ExplorationPolicy.greedy()),
        ("softmax(0.5)", ExplorationPolicy.softmax(0.5)),
    ]
    for n in (10, N_CANDIDATES):
        rng = np.random.default_rng(n)
        pri = rng.gamma(0.8, size=n)
        groups = [("sales", "service", "retention", "info")[g] for g in rng.integers(0, 4, n)]
        alpha = rng.uniform(1, 30, n)
        beta = rng.uniform(20, 300, n)
        multiplier = rng.uniform(0.5, 50, n)
        for name, policy in policies:
            step = functools.partial(
                select_slate,
                pri,
                groups,
                limit=SLATE,
                max_per_group=2,
                budgets={"sales": 1},
                policy=policy,
                rng=rng,
                alpha=alpha,
                beta=beta,
                multiplier=multiplier,
            )
            method = step().method
            reps = calls if policy.kind != "thompson" else max(calls // 20, 20)
            rows.append({"policy": name, "n": n, "limit": SLATE, "method": method, "median_us": median_us(step, reps)})
    return rows


def render(scoring: dict[str, float], exploration: list[dict[str, Any]], start: dict[str, dict[str, float]]) -> None:
    table = Table(
        title="scoring kernel (median per call)",
        min_width=70,
        caption=f"{N_CANDIDATES} candidates × {N_FEATURES} hashed features, 2^18 weights",
    )
    table.add_column("kernel")
    table.add_column("µs/call", justify="right")
    table.add_row("compiled (numba)", f"{scoring['compiled_us']:.1f}")
    table.add_row("plain Python twin", f"{scoring['python_us']:.0f}")
    table.add_row("speed-up", f"{scoring['speedup']:.0f}×")
    console.print(table)

    table = Table(title=f"exploration step: slate of {SLATE}, 4 groups, max 2 per group (median per call)")
    for col in ("policy", "candidates", "selection probability by", "µs/call"):
        table.add_column(col, justify="right" if col == "µs/call" else "left")
    for row in exploration:
        table.add_row(row["policy"], str(row["n"]), row["method"], f"{row['median_us']:.1f}")
    console.print(table)

    columns = {
        "import numba": "import_numba",
        "import modules": "import_modules",
        "scoring warm_up": "scoring",
        "exploration warm_up": "exploration",
        "process total": "process_total",
    }
    console.print(start_table("start-up in a new process, fresh NUMBA_CACHE_DIR (seconds)", columns, start))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per compiled measurement (default 2000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="directory for kernels.json")
    parser.add_argument("--skip-start", action="store_true", help="skip the cold/warm start subprocesses")
    args = parser.parse_args(argv)

    from engine.decision.exploration import warm_up as warm_exploration
    from engine.scoring.kernels import warm_up as warm_scoring

    warm_scoring()
    warm_exploration()
    scoring = bench_scoring(args.calls)
    exploration = bench_exploration(args.calls)
    start = {} if args.skip_start else bench_start(_START_SNIPPET)
    render(scoring, exploration, start)

    figures = {
        "scoring": {"candidates": N_CANDIDATES, "features": N_FEATURES, "weights": N_WEIGHTS, **scoring},
        "exploration": exploration,
        "start_seconds": start,
    }
    path = write(args.out, "kernels.json", figures, ("numba", "numpy"))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
