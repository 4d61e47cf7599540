"""Rule reload benchmark: how long the example rule set takes to go live after an edit.

Run as ``python -m loadtests.reload_bench``. Measures, in this process, over ``--runs`` reloads
each (p50 and max):

* loading and compiling rules/ (``load_ruleset``, including the git revision lookup);
* a reload that swaps, through ``RuleReloader.reload`` as the admin endpoint calls it (a temporary
  copy of rules/ is edited before each one, so every reload finds a new version);
* a reload that finds the same version (not swapped);
* edit to live through the file watcher: from writing the file to the new set being in force,
  which adds the watcher's grouping of changes to the reload itself.

The target is under 1 s for a swap. It prints a table and writes bench-results/reload.json; it
asserts nothing, because timings on a shared machine are for reading, not gating.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.clock import SystemClock
from engine.metrics import MetricsRegistry
from engine.rules.loader import load_ruleset
from engine.rules.registry import RuleRegistry
from engine.rules.reload import RuleReloader, watch_rules
from loadtests.results import write

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
EDITED = "offers.yaml"
VALUE = "    value: 25\n"  # welcome_coupon's value; each edit sets another one
TARGET_S = 1.0
WATCH_TIMEOUT_S = 10.0

console = Console(width=None if sys.stdout.isatty() else 150)


class Editor:
    """Edits the copy's welcome coupon value, to a new number each time."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / EDITED
        self.text = self.path.read_text()
        assert self.text.count(VALUE) == 1, f"{VALUE!r} is not in {self.path} exactly once"
        self.edits = 0

    def edit(self) -> None:
        self.edits += 1
        self.path.write_text(self.text.replace(VALUE, f"    value: {25 + self.edits}\n"))


def summary(samples: list[float]) -> dict[str, float]:
    return {"runs": len(samples), "p50_s": statistics.median(samples), "max_s": max(samples), "min_s": min(samples)}


async def timed(runs: int, before: Callable[[], None], step: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_reloads(directory: Path, runs: int) -> dict[str, dict[str, float]]:
    editor = Editor(directory)
    registry = RuleRegistry.from_directory(directory)
    reloader = RuleReloader(registry, SystemClock(), MetricsRegistry())

    async def load() -> object:
        return await asyncio.to_thread(load_ruleset, RULES)

    async def swap() -> None:
        outcome = await reloader.reload("benchmark")
        assert outcome.changed, outcome

    async def same() -> None:
        outcome = await reloader.reload("benchmark")
        assert outcome.ok and not outcome.changed, outcome

    return {
        "load_rules": summary(await timed(runs, lambda: None, load)),
        "reload_swapped": summary(await timed(runs, editor.edit, swap)),
        "reload_unchanged": summary(await timed(runs, lambda: None, same)),
        "edit_to_live_watched": summary(await bench_watched(directory, editor, registry, reloader, runs)),
    }


async def bench_watched(
    directory: Path, editor: Editor, registry: RuleRegistry, reloader: RuleReloader, runs: int
) -> list[float]:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_rules(reloader, stop))
    await asyncio.sleep(0.2)  # the watcher is set up
    samples = []
    try:
        for _ in range(runs):
            before = registry.current.version
            start = time.perf_counter()
            editor.edit()
            while registry.current.version == before:
                if time.perf_counter() - start > WATCH_TIMEOUT_S:
                    raise RuntimeError(f"the watcher did not reload {directory} within {WATCH_TIMEOUT_S} s")
                await asyncio.sleep(0.002)
            samples.append(time.perf_counter() - start)
    finally:
        stop.set()
        await watcher
    return samples


def render(results: dict[str, dict[str, float]]) -> None:
    table = Table(title=f"rule reloads of the example set ({RULES.name}/), target under {TARGET_S:.0f} s", min_width=70)
    table.add_column("what")
    table.add_column("runs", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("max ms", justify="right")
    labels = {
        "load_rules": "load and compile rules/ (with git revision)",
        "reload_swapped": "reload that swaps (admin request path)",
        "reload_unchanged": "reload, same version (not swapped)",
        "edit_to_live_watched": "edit to live, through the file watcher",
    }
    for key, label in labels.items():
        r = results[key]
        table.add_row(label, str(r["runs"]), f"{r['p50_s'] * 1000:.1f}", f"{r['max_s'] * 1000:.1f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="reloads per measurement (default 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="directory for reload.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nba-reload-") as tmp:
        directory = Path(tmp) / "rules"
        shutil.copytree(RULES, directory)
        results = asyncio.run(bench_reloads(directory, args.runs))
    render(results)

    path = write(args.out, "reload.json", {"target_s": TARGET_S, "results": results})
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
