"""gRPC decision benchmark: what a Decide call costs compared with the cheapest Redis-backed call.

Run as ``python -m loadtests.grpc_bench --customers 100000``.
It seeds the customers (``nba seed``) into an embedded Redis in a temporary directory, starts
a real server process serving gRPC only (this module's ``--serve`` mode, with the bench service
on), and drives it from this process over one channel, keeping `concurrency` calls in flight:

* ``bare``: ``nba.v1.Bench/Bare``, one HGETALL and nothing else, over the decisions' own Redis
  connection: the floor set by the gRPC stack and one Redis round trip.
* ``bare_redis_py``: ``nba.v1.Bench/BareRedisPy``, the same read through redis-py's pooled
  client, as a Redis-backed handler is usually written.
* ``decisions``: ``nba.v1.DecisionService/Decide`` with the HTTP benchmark's mix of channels
  and placements, scored by a learned model as in the HTTP benchmark: before measuring, offers
  are accepted and rejected over ``RecordFeedback`` until the learner publishes one.

They are measured in rounds in alternating order, and each ratio is the median over rounds,
as in the HTTP benchmark (see loadtests.bench), which says why there are two baselines.

Every call carries a deadline, as a production client's would, so the server's deadline
handling is part of what is measured. The ratio decisions/bare throughput says how much of the
call budget the decision logic eats (target: at least 0.5). Figures go to stdout and to
``bench-results/grpc-latest.json``; nothing is asserted (figures on a shared machine are for
reading, not gating).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import orjson
import uvloop
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console

from engine.api.grpc.gen import bench_pb2, bench_pb2_grpc
from engine.api.grpc.gen import decision_pb2 as pb
from engine.api.grpc.gen.decision_pb2_grpc import DecisionServiceStub
from loadtests.bench import (
    BARE,
    BARE_REDIS_PY,
    DECISION_MIX,
    DECISIONS,
    ROUNDS,
    TARGET_RATIO,
    Comparison,
    CpuMeter,
    Sample,
    Tally,
    alternating_rounds,
    free_port,
    machine_info,
    print_report,
    stop_server,
    train_through_feedback,
)

ROOT = Path(__file__).resolve().parent.parent
CALL_TIMEOUT_S = 2.0
PREBUILT_REQUESTS = 20_000  # built before the clock starts, so the load generator spends its CPU on calls
PAUSE_BETWEEN_S = 0.5
READY_LINE = "grpc-bench: serving on port "

console = Console()


# -- the server process -------------------------------------------------------------------------


def serve(port: int) -> int:
    """The server process: the engine from NBA_* settings, gRPC only, until SIGINT/SIGTERM."""
    from engine.api.grpc.server import serve_grpc
    from engine.settings import Settings

    def ready(bound: int) -> None:
        print(f"{READY_LINE}{bound}", flush=True)

    # The event loop `nba serve` uses, so the figures are the served engine's.
    uvloop.run(serve_grpc(Settings(), "127.0.0.1", port, grace=5.0, on_ready=ready))
    return 0


class Server:
    """The seeded server in its own session, so Ctrl-C reaches the benchmark only and the
    benchmark stops the server in order (gRPC, then the embedded Redis, which saves and exits)."""

    def __init__(self, customers: int, data_dir: Path, redis_url: str | None) -> None:
        self.customers = customers
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.port = free_port()
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "NBA_BENCH_ENDPOINTS": "true", "NBA_DATA_DIR": str(data_dir), "COLUMNS": "200"}
        self.env.pop("NBA_REDIS_URL", None)
        if redis_url:
            self.env["NBA_REDIS_URL"] = redis_url

    def seed(self) -> float:
        started = time.perf_counter()
        command = [sys.executable, "-m", "engine.cli", "seed", "--customers", str(self.customers)]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"seeding failed ({done.returncode}): {done.stderr[-2000:]}")
        return time.perf_counter() - started

    def start(self) -> None:
        command = [sys.executable, "-m", "loadtests.grpc_bench", "--serve", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        return ""

    def wait_ready(self, timeout_s: float) -> None:
        """Poll the standard health check until the decision service is SERVING."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout_s
        request = health_pb2.HealthCheckRequest(service="nba.v1.DecisionService")
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with code {self.proc.returncode} before it was ready")
                with contextlib.suppress(grpc.RpcError):
                    if health.Check(request, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")

    def redis_pids(self) -> list[int]:
        """The embedded Redis daemonizes out of the server's process group; it runs in our data directory."""
        found: list[int] = []
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == self.data_dir:
                    found.append(int(entry.name))
        ours = {os.getpid(), self.proc.pid if self.proc else None}
        return [pid for pid in found if pid not in ours]

    def stop(self) -> None:
        stop_server(self.proc, [] if self.redis_url is not None else self.redis_pids())


# -- the load -------------------------------------------------------------------------------------


def decide_requests(customers: int, count: int, seed: int = 1) -> list[pb.DecideRequest]:
    rng = random.Random(seed)
    requests = []
    for template in itertools.islice(itertools.cycle(DECISION_MIX), count):
        req = pb.DecideRequest(customer_id=f"cust-{rng.randint(1, customers):06d}", channel=template["channel"])
        if "placement" in template:
            req.placement = template["placement"]
        req.context.update(template["context"])
        requests.append(req)
    return requests


def bare_requests(customers: int, count: int, seed: int = 2) -> list[bench_pb2.BareRequest]:
    rng = random.Random(seed)
    return [bench_pb2.BareRequest(customer_id=f"cust-{rng.randint(1, customers):06d}") for _ in range(count)]


async def train_model(channel: aio.Channel, customers: int) -> str | None:
    """The response model trained over `RecordFeedback`, as the HTTP benchmark trains it over
    `/v1/feedback` (train_through_feedback)."""
    stub = DecisionServiceStub(channel)
    rng = random.Random(3)

    async def decide(_: int) -> tuple[str, str | None]:
        request = pb.DecideRequest(customer_id=f"cust-{rng.randint(1, customers):06d}", channel="web")
        decision = await stub.Decide(request, timeout=CALL_TIMEOUT_S)
        return decision.decision_id, decision.treatments[0].id if decision.treatments else None

    async def feedback(i: int, decision_id: str, treatment_id: str, outcome: str) -> None:
        request = pb.RecordFeedbackRequest(
            feedback_id=f"grpc-train-{i}", decision_id=decision_id, treatment_id=treatment_id, outcome=outcome
        )
        await stub.RecordFeedback(request, timeout=CALL_TIMEOUT_S)

    probe = pb.DecideRequest(customer_id="cust-000001", channel="web")

    async def versions() -> dict[str, int]:
        """What a decision says it was scored by (`id@version`): gRPC has no readiness document."""
        model, _, version = (await stub.Decide(probe, timeout=CALL_TIMEOUT_S)).model_version.rpartition("@")
        return {model: int(version)} if model and version.isdigit() else {}

    return await train_through_feedback(decide, feedback, versions)


async def _worker(call: Any, requests: list[Any], start: int, deadline: float, tally: Tally) -> None:
    """One call in flight at a time until the deadline (closed-loop load)."""
    perf = time.perf_counter
    i = start
    while perf() < deadline:
        request = requests[i % len(requests)]
        i += 1
        started = perf()
        try:
            response = await call(request, timeout=CALL_TIMEOUT_S)
        except aio.AioRpcError as exc:
            tally.latencies.append(perf() - started)
            tally.error(f"{exc.code().name}: {exc.details()}")
            continue
        tally.latencies.append(perf() - started)
        tally.ok += 1
        if getattr(response, "degraded", False):
            tally.degraded += 1


async def measure(call: Any, requests: list[Any], concurrency: int, duration_s: float, pids: dict[str, int]) -> Sample:
    """`concurrency` closed-loop callers on the one channel for `duration_s`."""
    tally = Tally()
    meter = CpuMeter(pids)
    meter.start()
    started = time.perf_counter()
    deadline = started + duration_s
    step = max(1, len(requests) // concurrency)
    await asyncio.gather(*(_worker(call, requests, w * step, deadline, tally) for w in range(concurrency)))
    return Sample(tally, time.perf_counter() - started, meter.used())


async def run(port: int, args: argparse.Namespace, pids: dict[str, int]) -> tuple[Comparison, str | None]:
    decides = decide_requests(args.customers, PREBUILT_REQUESTS)
    bares = bare_requests(args.customers, PREBUILT_REQUESTS)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        console.print("[dim]training the response model through feedback ...[/dim]")
        model = await train_model(channel, args.customers)
        console.print(f"[dim]decisions will be scored by {model or 'priors only (no model published)'}[/dim]")
        bench = bench_pb2_grpc.BenchStub(channel)
        calls = {
            BARE: (bench.Bare, bares),
            BARE_REDIS_PY: (bench.BareRedisPy, bares),
            DECISIONS: (DecisionServiceStub(channel).Decide, decides),
        }
        if args.warmup > 0:
            console.print(f"[dim]warming up for {args.warmup:g} s ...[/dim]")
            for call, requests in calls.values():
                await measure(call, requests, args.concurrency, args.warmup / len(calls), pids)
            await asyncio.sleep(PAUSE_BETWEEN_S)

        async def one(kind: str, seconds: float) -> Sample:
            call, requests = calls[kind]
            return await measure(call, requests, args.concurrency, seconds, pids)

        return await alternating_rounds(args.rounds, args.duration, one), model


# -- entry point ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.grpc_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=100_000, help="customers to seed and spread calls over (default 100000)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per measurement (default 4)")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of the baselines and decisions (default {ROUNDS})")
    p.add_argument("--concurrency", type=int, default=32, help="calls kept in flight on the one channel (default 32)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of mixed calls before measuring (default 2)")
    p.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="directory for the JSON results (default bench-results)"
    )
    p.add_argument("--redis-url", default=None, help="state store (default: an embedded Redis in a temporary directory)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process's own mode
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.customers < 1 or args.concurrency < 1 or args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--customers, --concurrency and --rounds must be >= 1, --duration > 0 and --warmup >= 0")
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.port)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so `finally` stops the server on kill too
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="nba-grpc-bench-") as tmp:
        server = Server(args.customers, Path(tmp).resolve(), args.redis_url)
        try:
            console.print(f"seeding {args.customers:,} customers ...")
            seed_s = server.seed()
            console.print(f"starting the gRPC server on port {server.port} ...")
            started = time.perf_counter()
            server.start()
            server.wait_ready(timeout_s=60 + args.customers / 5_000)
            startup = {"seed_s": round(seed_s, 2), "start_to_ready_s": round(time.perf_counter() - started, 2)}
            assert server.proc is not None
            pids = {"server": server.proc.pid}
            redis = server.redis_pids() if args.redis_url is None else []
            if redis:
                pids["redis"] = redis[0]
            comparison, model = asyncio.run(run(server.port, args, pids))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; stopping the server[/yellow]")
            return 130
        except (RuntimeError, OSError) as exc:
            console.print(f"[red]benchmark failed:[/red] {exc}")
            console.print(server.log_tail(), markup=False, highlight=False)
            return 1
        finally:
            server.stop()

    header = (
        f"gRPC: {args.customers:,} customers, {args.concurrency} calls in flight on one channel, {args.rounds} "
        f"rounds of {args.duration:g} s, {os.cpu_count()} CPUs (server, Redis and load generator share them)"
    )
    print_report(comparison, header)
    payload = {
        "timestamp": stamp,
        "protocol": "grpc",
        "config": {
            "customers": args.customers,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "call_timeout_s": CALL_TIMEOUT_S,
            "redis": args.redis_url or "embedded",
            "decision_mix": DECISION_MIX,
        },
        "machine": machine_info("asyncio"),
        "server_startup": startup,
        "decisions_scored_by": model,
        "results": {k: asdict(m) for k, m in comparison.totals.items()},
        **comparison.as_json(),
        "target_ratio": TARGET_RATIO,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    (args.out / f"grpc-{stamp}.json").write_bytes(data)
    (args.out / "grpc-latest.json").write_bytes(data)
    console.print(f"results written to {args.out / 'grpc-latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
