"""Where a served decision's CPU goes, and how far the decision logic alone could move the ratio.

`loadtests.bench` measures real server processes and reports decisions/bare. This asks why the
ratio is what it is. It builds the engine and its ASGI app in this process, as `nba serve` would
(embedded Redis, the example rules, seeded customers, a response model trained through feedback,
the start-up heap settled), drives the app directly with `--concurrency` requests in flight, and
times the CPU of this process per request (Redis runs in its own process, so it is not counted):

* ``bare``: ``GET /bench/bare/{id}``, one HGETALL, as in the bench;
* ``decisions``: ``POST /v1/decisions`` with the bench's mix of channels and placements;
* ``decisions, logic replayed``: the same requests with the decision logic
  (`engine.decision.pipeline.decide`: eligibility, caps and suppressions, customer value,
  scoring, exploration) replaced by a plan it made once per channel and placement. Everything
  else runs as served: parsing and checking the request, the customer read, the decision and
  its stored record (as large as a real one), the write-back, the answer. Its ratio to bare is
  the most that any speed-up of the decision logic could reach;
* the decision service (with and without the logic replayed) and the bare read called directly,
  without the web stack.

Measurements rotate in rounds (default 7 of 1 s each); figures are medians over rounds, and a
ratio is the median of per-round ratios. Without sockets or a load generator, ratios come out
close to the bench's; what this is for is their split. It prints a table and writes
bench-results/anatomy.json; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import uvloop
from rich.console import Console
from rich.table import Table

import engine.decision.service as service_module
from engine import domain
from engine.api.http.app import create_app
from engine.api.process import settle_heap
from engine.bootstrap import Engine, open_engine
from engine.cli import seed_customers
from engine.decision.pipeline import DecisionPlan
from engine.settings import Settings
from loadtests.bench import RequestFactory, train_through_feedback
from loadtests.results import write

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=None if sys.stdout.isatty() else 150)

BARE, DECISIONS, REPLAYED = "bare", "decisions", "decisions, logic replayed"
SERVICE, SERVICE_REPLAYED, READ = "service alone", "service alone, logic replayed", "bare read alone"
KINDS = (BARE, DECISIONS, REPLAYED, SERVICE, SERVICE_REPLAYED, READ)
REPLAYING = (REPLAYED, SERVICE_REPLAYED)


class Asgi:
    """Requests straight into the ASGI app: what uvicorn would call, minus the socket and the
    HTTP parser, which cost the same for either endpoint."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, method: str, path: str, body: bytes = b"") -> int:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"host", b"anatomy"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        await self.app(scope, receive, send)
        return int(sent[0]["status"])


@contextlib.contextmanager
def replayed_logic(plans: dict[tuple[str, str | None], DecisionPlan]) -> Iterator[None]:
    """Within the block, the decision service replays one plan per channel and placement instead
    of running the decision logic; a missing plan is made by the real pipeline and kept in `plans`."""
    real = service_module.decide

    def replay(state: domain.CustomerState, request: domain.DecisionRequest, *args: Any, **kwargs: Any) -> DecisionPlan:
        key = (request.channel, request.placement)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = real(state, request, *args, **kwargs)
        return plan

    with mock.patch.object(service_module, "decide", replay):
        yield


@dataclass
class Figures:
    """Per kind of request: CPU µs per request of each round, requests made and how many failed."""

    cpu_us: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    plans_replayed: int = 0

    def median(self, kind: str) -> float:
        return statistics.median(self.cpu_us[kind])

    def ratios(self, kind: str) -> list[float]:
        """bare / kind per round: the throughput ratio were the process CPU-bound."""
        return [b / k for b, k in zip(self.cpu_us[BARE], self.cpu_us[kind], strict=True)]

    def logic_share(self) -> float:
        """The decision logic's share of a served decision: the median over rounds, each round
        comparing decisions with the replayed ones measured moments apart."""
        pairs = zip(self.cpu_us[DECISIONS], self.cpu_us[REPLAYED], strict=True)
        return statistics.median(1 - replayed / full for full, replayed in pairs)

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu_us_per_request": {k: {"median": self.median(k), "rounds": v} for k, v in self.cpu_us.items()},
            "ratio_to_bare": {k: statistics.median(self.ratios(k)) for k in (DECISIONS, REPLAYED)},
            "decision_logic_share": self.logic_share(),
            "requests": self.requests,
            "failures": self.failures,
            "plans_replayed": self.plans_replayed,
        }


async def closed_loop(call: Callable[[], Awaitable[bool]], seconds: float, concurrency: int) -> tuple[float, int, int]:
    """(CPU µs per call, calls, failed calls) of `concurrency` workers calling back to back."""
    deadline = time.perf_counter() + seconds
    done = failed = 0

    async def work() -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            ok = await call()
            done += 1
            failed += not ok

    started = time.process_time()
    await asyncio.gather(*(work() for _ in range(concurrency)))
    return (time.process_time() - started) * 1e6 / max(done, 1), done, failed


async def train(engine: Engine, traffic: RequestFactory, decisions: int) -> str | None:
    """The response model trained through feedback, as the bench trains it (train_through_feedback)."""
    service = engine.service

    async def decide(_: int) -> tuple[str, str | None]:
        d = await service.decide(domain.DecisionRequest(traffic.customer(), "web"))
        return d.decision_id, d.treatments[0].id if d.treatments else None

    async def feedback(i: int, decision_id: str, treatment_id: str, outcome: str) -> None:
        await service.record_feedback(domain.Feedback(f"anatomy-{i}", decision_id, treatment_id, outcome))

    async def versions() -> dict[str, int]:
        return engine.models.versions()

    return await train_through_feedback(decide, feedback, versions, decisions=decisions)


async def measure(
    *,
    customers: int,
    rounds: int,
    duration_s: float,
    concurrency: int,
    train_decisions: int = 400,
    redis_url: str | None = None,
) -> tuple[Figures, str | None]:
    """Seed, train, warm every path, then measure each kind once per round (`redis_url`: a
    Redis to use instead of an embedded one; its `cust-*` profiles are overwritten)."""
    with tempfile.TemporaryDirectory(prefix="nba-anatomy-") as tmp:
        settings = Settings(data_dir=Path(tmp), redis_url=redis_url, bench_endpoints=True, rules_dir=ROOT / "rules")
        await seed_customers(settings, customers, seed=7)
        async with open_engine(settings) as engine:
            app = create_app(engine=engine)
            app.state.engine = engine
            traffic = RequestFactory("anatomy", 0, customers)  # the bench's customers and mix, as JSON fields
            asgi, service, store = Asgi(app), engine.service, engine.store
            model = await train(engine, traffic, train_decisions) if train_decisions else None

            async def bare() -> bool:
                return await asgi("GET", "/bench/bare/" + traffic.customer()) == 200

            async def decision() -> bool:
                return await asgi("POST", "/v1/decisions", orjson.dumps(traffic.decision_fields())) == 200

            async def service_alone() -> bool:
                f = traffic.decision_fields()
                request = domain.DecisionRequest(f["customer_id"], f["channel"], f.get("placement"), f.get("context", {}))
                return not (await service.decide(request)).degraded

            async def read_alone() -> bool:
                await store.bare_read(traffic.customer())
                return True

            calls = {
                BARE: bare,
                DECISIONS: decision,
                REPLAYED: decision,
                SERVICE: service_alone,
                SERVICE_REPLAYED: service_alone,
                READ: read_alone,
            }
            figures = Figures()
            plans: dict[tuple[str, str | None], DecisionPlan] = {}

            async def run(kind: str, seconds: float) -> tuple[float, int, int]:
                with replayed_logic(plans) if kind in REPLAYING else contextlib.nullcontext():
                    return await closed_loop(calls[kind], seconds, concurrency)

            for kind in KINDS:  # every path warm (and the plans made) before anything is measured
                await run(kind, duration_s / 2)
            threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
            settle_heap(engine)  # as a serving process does once ready
            try:
                for r in range(rounds):
                    for kind in KINDS if r % 2 == 0 else reversed(KINDS):
                        us, done, failed = await run(kind, duration_s)
                        figures.cpu_us[kind].append(us)
                        figures.requests[kind] += done
                        figures.failures[kind] += failed
            finally:  # leave the garbage collector as it was (this may run inside another program, a test say)
                if not frozen:  # unfreezing cannot tell our objects from a host's: only when there were none
                    gc.unfreeze()
                gc.set_threshold(*threshold)
            figures.plans_replayed = len(plans)
            return figures, model


def report(figures: Figures, model: str | None) -> None:
    table = Table(title=f"CPU per request in one process (model: {model or 'priors only'})")
    table.add_column("measurement")
    table.add_column("requests", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("CPU µs / request, median", justify="right")
    table.add_column("rounds' range", justify="right")
    table.add_column("bare / this", justify="right")
    for kind in KINDS:
        rounds = figures.cpu_us[kind]
        ratio = f"{statistics.median(figures.ratios(kind)):.2f}" if kind in (DECISIONS, REPLAYED) else ""
        table.add_row(
            kind,
            f"{figures.requests[kind]:,}",
            str(figures.failures[kind]),
            f"{figures.median(kind):.1f}",
            f"{min(rounds):.1f}-{max(rounds):.1f}",
            ratio,
        )
    console.print(table)
    data = figures.as_json()
    console.print(
        f"the decision logic's share of a decision: {100 * data['decision_logic_share']:.0f} % (median over rounds); "
        "the rest is spent as much with a replayed plan.\n"
        f"decisions / bare: {data['ratio_to_bare'][DECISIONS]:.2f}; with the decision logic costing nothing it would be "
        f"{data['ratio_to_bare'][REPLAYED]:.2f} (target >= 0.50)."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000, help="customers seeded and spread over")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, each measuring every kind once")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="where anatomy.json goes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.print(f"[dim]seeding {args.customers:,} customers and training the response model ...[/dim]")
    figures, model = uvloop.run(
        measure(customers=args.customers, rounds=args.rounds, duration_s=args.duration, concurrency=args.concurrency)
    )
    report(figures, model)
    settings = {"customers": args.customers, "rounds": args.rounds, "duration_s": args.duration, "concurrency": args.concurrency}
    path = write(args.out, "anatomy.json", {"settings": settings, "model": model, **figures.as_json()})
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
