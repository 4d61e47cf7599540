"""What every in-process benchmark shares: timing one call, timing a fresh interpreter's start
(and its table), describing the machine, and writing the figures to bench-results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent


def median_us(fn: Callable[[], object], calls: int) -> float:
    """Median of individually timed calls: robust to the odd scheduler hiccup on a busy box."""
    fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000.0


def bench_start(snippet: str) -> dict[str, dict[str, float]]:
    """Cold start (compile, write numba's cache) then warm start (load it), each in a new
    interpreter running `snippet`, which prints one JSON line of seconds last."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = {}
        for label in ("cold", "warm"):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["process_total"] = time.perf_counter() - start
            out[label] = figures
        return out


def start_table(title: str, columns: dict[str, str], start: dict[str, dict[str, float]]) -> Table:
    """`bench_start`'s figures as a table: a row per start, a column per figure (heading: key)."""
    table = Table(title=title)
    table.add_column("start")
    for heading in columns:
        table.add_column(heading, justify="right")
    for label, fig in start.items():
        kind = "compile + write cache" if label == "cold" else "load cache"
        table.add_row(f"{label} ({kind})", *(f"{fig[key]:.3f}" for key in columns.values()))
    return table


def machine(*libraries: str) -> dict[str, Any]:
    """Python, platform, CPUs, and the versions of `libraries` (imported by name)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for name in libraries:
        info[name] = __import__(name).__version__
    return info


def write(out_dir: Path, name: str, figures: dict[str, Any], libraries: tuple[str, ...] = ()) -> Path:
    """`out_dir/name` as JSON: when, the machine, then the figures."""
    payload = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(*libraries), **figures}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
