"""Condition benchmark: what evaluating the shipped conditions costs, and what explaining them costs.

Run as ``python -m loadtests.condition_bench``. Every condition of the example rule set
(eligibility, context weights, trigger conditions) is evaluated against a few customers, the way
the decision pipeline calls it (`Condition.__call__`), and then explained (`Condition.explain`),
which only requests with `explain: true` pay for.

It prints a table of nanoseconds per call (best of several repeats, each the mean of many calls)
and asserts nothing: timings on a shared machine are for reading, not gating.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.rules.conditions import Condition
from engine.rules.loader import load_ruleset
from engine.rules.vocabulary import EvalContext

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_795_428_000_000

console = Console(width=None if sys.stdout.isatty() else 150)


def shipped_conditions(rules_dir: Path) -> list[Condition]:
    rules = load_ruleset(rules_dir)
    found: dict[str, Condition] = {}
    for t in rules.treatments:
        for condition in (t.eligibility, *(c for c, _ in t.context_weights)):
            if condition is not None:
                found.setdefault(condition.source, condition)
    for trigger in rules.triggers:
        if trigger.when is not None:
            found.setdefault(trigger.when.source, trigger.when)
    return list(found.values())


def contexts() -> list[EvalContext]:
    """A gold traveller with history, a young visitor with a cart, and a stranger."""
    history = [
        {"type": "page_view", "ts": NOW - 2 * MS_PER_HOUR, "channel": "web", "attributes": {}},
        {"type": "email_received", "ts": NOW - 3 * MS_PER_DAY, "channel": "email", "attributes": {}},
    ]
    return [
        EvalContext(
            data={
                "customer": {"tier": "gold", "age": 41, "segment": "business"},
                "context": {"companion": "friends"},
                "cart": {"value": 240.0, "items": 2, "skus": ["a", "b"]},
                "value": {"tier": "silver", "equity": 48.0},
                "event": {"type": "flight_delayed", "delay_minutes": 50},
            },
            now_ms=NOW,
            last={"purchase": {"ts": NOW - 3 * MS_PER_DAY, "amount": 120}, "complaint": {"ts": NOW - MS_PER_DAY}},
            recent=history,
            flags={"delayed_flight": NOW + MS_PER_DAY},
            counters={"premium_seat_views": [NOW - MS_PER_HOUR] * 3},
        ),
        EvalContext(
            data={
                "customer": {"tier": "silver", "age": 24, "segment": "family"},
                "context": {"companion": "child"},
                "cart": {"value": 35.0, "items": 1, "skus": ["c"]},
                "value": {"tier": "bronze", "equity": 20.0},
                "event": {},
            },
            now_ms=NOW,
            recent=history[:1],
        ),
        EvalContext(
            data={"customer": {}, "context": {}, "cart": {"value": 0.0, "items": 0, "skus": []}, "value": {}, "event": {}},
            now_ms=NOW,
        ),
    ]


def per_call_ns(fn: Callable[[EvalContext], object], ctxs: list[EvalContext], calls: int, repeats: int) -> float:
    """Best over `repeats` of the mean time of one call, the loop included (as in the pipeline)."""
    rounds = max(calls // len(ctxs), 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(rounds):
            for ctx in ctxs:
                fn(ctx)
        best = min(best, (time.perf_counter_ns() - start) / (rounds * len(ctxs)))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    conditions = shipped_conditions(args.rules)
    ctxs = contexts()
    table = Table(title=f"{len(conditions)} shipped conditions × {len(ctxs)} customers, ns per call")
    table.add_column("condition")
    table.add_column("call", justify="right")
    table.add_column("explain", justify="right")
    # All plain calls first: explaining allocates, and its garbage must not slow the calls timed.
    calls = [per_call_ns(c, ctxs, args.calls, args.repeats) for c in conditions]
    explained = [per_call_ns(c.explain, ctxs, args.calls // 10, args.repeats) for c in conditions]
    for condition, call, explain in zip(conditions, calls, explained, strict=True):
        table.add_row(condition.source, f"{call:,.0f}", f"{explain:,.0f}")
    n = len(conditions)
    table.add_row("mean", f"{sum(calls) / n:,.0f}", f"{sum(explained) / n:,.0f}", style="bold")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
