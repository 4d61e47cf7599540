"""Rule simulation benchmark: eligibility of every treatment for a million customers at once.

Run as ``python -m loadtests.simulate_bench``. Measures, in this process, with the example rule
set (``rules/``):

* generating the synthetic customers (``engine.simulation.customers.synthetic_customers``);
* the vectorised eligibility of every treatment over all of them (``engine.rules.vectorised``):
  the `value.*` columns from the value facts, then every condition (median of several runs);
* the scalar evaluator on a smaller sample, per customer: every condition against contexts
  already built, and building those contexts (state, value, context) as a decision does;
  and the ratio to the vectorised cost per customer;
* the decision pipeline per customer, which the chosen shares cost.

It prints a table and asserts nothing: timings on a shared machine are for reading, not gating.
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

from engine.decision.pipeline import decide, eval_context
from engine.domain import DecisionRequest
from engine.equity.facts import N_FACTS
from engine.rules.loader import load_ruleset
from engine.rules.vectorised import Frame, evaluate_all, vectorise
from engine.simulation.customers import synthetic_customers
from engine.simulation.rules import context_columns, value_columns

EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "rules"
NOW_MS = 1_795_428_000_000  # 2026-11-23 10:00 UTC
CONTEXT = {"companion": "friends"}

console = Console(width=None if sys.stdout.isatty() else 150)


def timed(fn: Callable[[], Any], runs: int = 1) -> tuple[float, Any]:
    """Median seconds over `runs` calls, and the last result."""
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="customers for the scalar evaluator")
    parser.add_argument("--decisions", type=int, default=5_000, help="customers for the decision pipeline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rules = load_ruleset(EXAMPLE_RULES)
    request = DecisionRequest("", "web", context=CONTEXT)
    treatments = [t for t in rules.treatments if t.eligibility is not None]
    conditions = [vectorise(t.eligibility, rules.vocabulary) for t in treatments]  # type: ignore[arg-type]
    value_columns(rules.value_model, np.zeros((2, N_FACTS)), NOW_MS)  # compile (or load) the kernels first

    gen_s, batch = timed(lambda: synthetic_customers(args.customers, args.seed, rules, now_ms=NOW_MS))
    n = len(batch)

    def eligibility() -> tuple[float, float, list[Any]]:
        start = time.perf_counter()
        columns = {**batch.columns, **value_columns(rules.value_model, batch.facts, NOW_MS), **context_columns(CONTEXT, n)}
        middle = time.perf_counter()
        frame = Frame(n, columns, NOW_MS, _context, batch.inexact)
        results = evaluate_all(conditions, frame)
        return middle - start, time.perf_counter() - middle, results

    def _context(row: int) -> Any:
        state = batch.state(row)
        return eval_context(state, request, NOW_MS, rules.value_model.evaluate(state.facts, NOW_MS))

    runs = [eligibility() for _ in range(args.runs)]
    values_s = statistics.median(r[0] for r in runs)
    conditions_s = statistics.median(r[1] for r in runs)
    results = runs[-1][2]
    vector_s = values_s + conditions_s

    rows = range(min(args.sample, n))
    contexts_s, contexts = timed(lambda: [_context(row) for row in rows])
    scalar_s, scalar = timed(lambda: [[t.eligibility(ctx) for t in treatments] for ctx in contexts])  # type: ignore[misc]
    agree = all(bool(results[j].matches[i]) == scalar[i][j] for i in range(len(contexts)) for j in range(len(treatments)))
    decided = range(min(args.decisions, n))
    rng = np.random.default_rng(args.seed)
    decide_s, _ = timed(
        lambda: [
            decide(batch.state(i), DecisionRequest(str(batch.ids[i]), "web", context=CONTEXT), rules, NOW_MS, rng=rng)
            for i in decided
        ]
    )

    per_vector_ns = vector_s * 1e9 / n
    per_scalar_ns = scalar_s * 1e9 / len(contexts)
    per_context_ns = contexts_s * 1e9 / len(contexts)
    table = Table(title=f"Rule simulation, {len(conditions)} conditions, example rule set", show_edge=False)
    for name in ("measure", "customers", "time", "per customer"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    table.add_row("synthetic generation", f"{n:,}", f"{gen_s:.2f} s", f"{gen_s * 1e9 / n:,.0f} ns")
    table.add_row("vectorised: value.* columns", f"{n:,}", f"{values_s:.3f} s", f"{values_s * 1e9 / n:,.0f} ns")
    table.add_row("vectorised: every condition", f"{n:,}", f"{conditions_s:.3f} s", f"{conditions_s * 1e9 / n:,.0f} ns")
    table.add_row(
        "[bold]vectorised eligibility, total[/bold]", f"{n:,}", f"[bold]{vector_s:.3f} s[/bold]", f"{per_vector_ns:,.0f} ns"
    )
    table.add_row("scalar: every condition", f"{len(contexts):,}", f"{scalar_s:.3f} s", f"{per_scalar_ns:,.0f} ns")
    table.add_row("scalar: building contexts", f"{len(contexts):,}", f"{contexts_s:.3f} s", f"{per_context_ns:,.0f} ns")
    table.add_row(
        "decision pipeline (chosen shares)", f"{len(decided):,}", f"{decide_s:.3f} s", f"{decide_s * 1e9 / len(decided):,.0f} ns"
    )
    console.print(table)
    console.print(
        f"scalar / vectorised per customer: {per_scalar_ns / per_vector_ns:,.0f}× for the conditions alone, "
        f"{(per_scalar_ns + per_context_ns) / per_vector_ns:,.0f}× counting the contexts; "
        f"rows handed to the scalar evaluator: {sum(r.scalar_rows for r in results):,}; "
        f"both evaluators agree on the sample: {agree}"
    )
    shares = ", ".join(f"{t.id} {r.matches.mean():.1%}" for t, r in zip(treatments, results, strict=True))
    console.print(f"condition shares: {shares}", style="dim")


if __name__ == "__main__":
    main()
