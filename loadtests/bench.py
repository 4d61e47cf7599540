"""Decision benchmark: what a decision costs compared with the cheapest Redis-backed request.

Run as ``python -m loadtests.bench --customers 100000`` (``make bench``). It starts a real
server process (``python -m engine.cli serve``, seeded, with the bench endpoints on), drives it
from this process with a small asyncio HTTP/1.1 keep-alive client, and measures in one run,
with the same concurrency and duration:

* ``bare``: ``GET /bench/bare/{id}``, one HGETALL and nothing else, written and routed like
  the decision endpoint and sent over the decisions' own Redis connection (engine.state.multiplex):
  the floor set by the web stack and one Redis round trip, the strictest baseline there is.
* ``bare_redis_py``: ``GET /bench/bare-redis-py/{id}``, the same HGETALL in the conventional bare
  endpoint, written as most Redis-backed endpoints are: FastAPI resolves the path parameter and
  a dependency, redis-py's pooled client reads, the answer is orjson bytes.
* ``decisions``: ``POST /v1/decisions`` with a realistic mix of channels and placements.
* ``events``: ``POST /v1/events`` in batches of 100 (page_view, cart_add, purchase).

The two baselines and decisions are measured in rounds (five by default), in that order in odd
rounds and the reverse in even ones. On a shared machine throughput drifts by a fifth or more
over tens of seconds; a ratio of two measurements taken seconds apart, in alternating order,
cancels that drift, and the median over rounds ignores a round spoilt by a background save.
Each reported ratio is that median, with the range over rounds beside it; the table shows every
round's figures.

The ratio decisions/bare throughput says how much of the request budget the decision logic
eats; the target is at least 0.5. It is reported against both baselines: the strict one prices
everything a decision does beyond one read on the engine's own fast path; the redis-py one is
the kind of endpoint the target was set against. The benchmark prints figures and writes them
to JSON; it never asserts, because figures on a shared two-core machine are for reading, not gating.

Why not locust: its Python client spends more CPU per request than the server under test, so
on a small machine it would measure itself. The client here does the bare minimum per request
(write prebuilt bytes, read the status line, headers and a Content-Length body) over one
persistent connection per concurrent worker, on uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import math
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
ROUNDS = 5
BARE, BARE_REDIS_PY, DECISIONS = "bare", "bare_redis_py", "decisions"
BASELINES = (BARE, BARE_REDIS_PY)
"""What decisions are compared against: the strict bare endpoint, and the conventional one (see above)."""
EVENTS_PER_BATCH = 100
PAUSE_BETWEEN_S = 0.5  # lets the server finish in-flight work so one measurement does not bleed into the next
MAX_ERROR_SAMPLES = 5

# Piped output (make, CI logs) would otherwise be cut to 80 columns and wrap the table into noise.
console = Console(width=None if sys.stdout.isatty() else 150)


# -- what the load generator sends --------------------------------------------------------------

DECISION_MIX: tuple[dict[str, Any], ...] = (
    # One rotation of ten: four web home pages, three app opens, two ticket pages, one call.
    {"channel": "web", "context": {"device": "desktop", "page": "home"}},
    {"channel": "mobile_app", "context": {"device": "ios", "page": "home"}},
    {
        "channel": "web",
        "placement": "event_tickets",
        "context": {"device": "desktop", "page": "event_detail", "companion": "child"},
    },
    {"channel": "web", "context": {"device": "desktop", "page": "home"}},
    {"channel": "mobile_app", "context": {"device": "android", "page": "home"}},
    {"channel": "call_center", "placement": "agent_prompt", "context": {"reason": "booking_change"}},
    {"channel": "web", "context": {"device": "desktop", "page": "home"}},
    {
        "channel": "web",
        "placement": "event_tickets",
        "context": {"device": "desktop", "page": "event_detail", "companion": "friends"},
    },
    {"channel": "mobile_app", "context": {"device": "ios", "page": "home"}},
    {"channel": "web", "context": {"device": "desktop", "page": "home"}},
)
PAGES = ("home", "search", "product", "event_list", "event_detail", "cart")
TRAINING_DECISIONS = 400
TRAINING_TIMEOUT_S = 20.0


async def train_through_feedback(
    decide: Callable[[int], Awaitable[tuple[str, str | None]]],
    feedback: Callable[[int, str, str, str], Awaitable[object]],
    versions: Callable[[], Awaitable[dict[str, int]]],
    *,
    decisions: int = TRAINING_DECISIONS,
    timeout_s: float = TRAINING_TIMEOUT_S,
) -> str | None:
    """Accept one shown offer in three and reject the rest until the learner publishes every
    model, so the benchmarks time decisions on the learned path (features, kernel, exploration)
    rather than on priors alone; one recipe, whichever front end carries it.

    `decide(i)` makes the i-th decision: (decision id, the first treatment shown, if any);
    `feedback(i, decision id, treatment id, outcome)` reports on it; `versions()` is each model's
    served version (0: none yet). Returns the served models (`id@version`), or None if not all
    were published within `timeout_s`.
    """
    for i in range(decisions):
        decision_id, shown = await decide(i)
        if shown is not None:
            await feedback(i, decision_id, shown, "accept" if i % 3 == 0 else "reject")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        served = await versions()
        if served and all(v > 0 for v in served.values()):
            return ", ".join(f"{k}@{v}" for k, v in served.items())
        await asyncio.sleep(0.2)
    return None


class RequestFactory:
    """Builds request bytes. Each request names a random seeded customer, so Redis reads are spread
    over the whole base instead of hitting a handful of hot keys."""

    def __init__(self, host: str, port: int, customers: int, seed: int = 1) -> None:
        self.head = f"Host: {host}:{port}\r\nUser-Agent: nba-bench\r\n".encode()
        self.customers = customers
        self.rng = random.Random(seed)
        self.rotation = 0
        self.id_prefix = uuid.uuid4().hex[:12]  # unique per run: the engine deduplicates event ids
        self.event_seq = 0

    def customer(self) -> str:
        return f"cust-{self.rng.randint(1, self.customers):06d}"

    def _post(self, path: bytes, body: bytes) -> bytes:
        return (
            b"POST "
            + path
            + b" HTTP/1.1\r\n"
            + self.head
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    def bare(self) -> bytes:
        return b"GET /bench/bare/" + self.customer().encode() + b" HTTP/1.1\r\n" + self.head + b"\r\n"

    def bare_redis_py(self) -> bytes:
        return b"GET /bench/bare-redis-py/" + self.customer().encode() + b" HTTP/1.1\r\n" + self.head + b"\r\n"

    def decision_fields(self) -> dict[str, Any]:
        """The next decision's JSON fields: a random customer, and the mix's next template."""
        template = DECISION_MIX[self.rotation % len(DECISION_MIX)]
        self.rotation += 1
        return {"customer_id": self.customer(), **template}

    def decision(self) -> bytes:
        return self._post(b"/v1/decisions", orjson.dumps(self.decision_fields()))

    def _event(self) -> dict[str, Any]:
        self.event_seq += 1
        rng = self.rng
        body: dict[str, Any] = {
            "event_id": f"{self.id_prefix}-{self.event_seq}",
            "customer_id": self.customer(),
            "channel": rng.choice(("web", "mobile_app")),
        }
        roll = rng.random()
        if roll < 0.6:
            body["type"], body["attributes"] = "page_view", {"page": rng.choice(PAGES)}
        elif roll < 0.9:
            sku = f"sku-{rng.randint(1, 200):04d}"
            body["type"], body["attributes"] = (
                "cart_add",
                {"sku": sku, "qty": rng.randint(1, 3), "price": rng.randint(500, 40_000) / 100},
            )
        else:
            body["type"], body["attributes"] = "purchase", {"amount": rng.randint(2_000, 90_000) / 100}
        return body

    def events(self) -> bytes:
        return self._post(b"/v1/events", orjson.dumps({"events": [self._event() for _ in range(EVENTS_PER_BATCH)]}))


# -- a minimal HTTP/1.1 client ------------------------------------------------------------------


class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server will close the connection after this response."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x response: {head[:60]!r}")
    status = int(head[9:12])
    length: int | None = None
    chunked = close = False
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if status in (204, 304) or status < 200:
        return status, b"", close  # never a body, whatever the headers say
    if chunked:
        parts: list[bytes] = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        await reader.readuntil(b"\r\n")  # no trailers are sent; this is the final CRLF
        return status, b"".join(parts), close
    if length is None:
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


@dataclass
class Tally:
    """Everything one measurement records; the workers of a measurement share it (one event loop)."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    degraded: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await writer.wait_closed()


async def worker(host: str, port: int, conn: Connection | None, make: Callable[[], bytes], deadline: float, tally: Tally) -> None:
    """Send one request at a time on one connection until the deadline (closed-loop load)."""
    perf = time.perf_counter
    while perf() < deadline:
        if conn is None:
            try:
                conn = await asyncio.open_connection(host, port)
            except OSError as exc:
                tally.error(f"connect: {exc}")
                await asyncio.sleep(0.05)
                continue
        reader, writer = conn
        request = make()
        started = perf()
        try:
            writer.write(request)
            if len(request) > 65_536:
                await writer.drain()
            status, body, close = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, ValueError) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            await close_quietly(writer)
            conn = None
            continue
        tally.latencies.append(perf() - started)
        if 200 <= status < 300:
            tally.ok += 1
            if b'"degraded":true' in body:
                tally.degraded += 1
        else:
            tally.error(f"HTTP {status}: {body[:300].decode(errors='replace')}")
        if close:
            await close_quietly(writer)
            conn = None
    if conn is not None:
        await close_quietly(conn[1])


# -- measuring ------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile: a latency some request really had, not an interpolation."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def proc_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    name: str
    requests: int
    errors: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    degraded: int = 0
    events_per_s: float | None = None
    cpu_pct: dict[str, float] = field(default_factory=dict)
    # Server CPU per successful request: steadier than req/s when other work shares the machine.
    server_cpu_ms_per_request: float | None = None
    error_samples: list[str] = field(default_factory=list)


class CpuMeter:
    """CPU seconds used by the named processes, and by this one (the load generator), since start."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float | None] = {}

    def start(self) -> None:
        self.before = {who: proc_cpu_seconds(pid) for who, pid in self.pids.items()}
        self.before["load generator"] = time.process_time()

    def used(self) -> dict[str, float]:
        after: dict[str, float | None] = {who: proc_cpu_seconds(pid) for who, pid in self.pids.items()}
        after["load generator"] = time.process_time()
        return {who: a - b for who, a in after.items() if a is not None and (b := self.before.get(who)) is not None}


@dataclass
class Sample:
    """One measurement as recorded, before it is summarised; samples of one kind add up."""

    tally: Tally
    elapsed_s: float
    cpu_s: dict[str, float]

    def __add__(self, other: Sample) -> Sample:
        t, o = self.tally, other.tally
        tally = Tally(t.latencies + o.latencies, t.ok + o.ok, t.errors + o.errors, t.degraded + o.degraded)
        tally.error_samples = (t.error_samples + o.error_samples)[:MAX_ERROR_SAMPLES]
        cpu = {who: self.cpu_s[who] + other.cpu_s[who] for who in self.cpu_s.keys() & other.cpu_s.keys()}
        return Sample(tally, self.elapsed_s + other.elapsed_s, cpu)


def summarize(name: str, sample: Sample, *, per_request: int = 1) -> Measurement:
    """Throughput counts successful requests only, so a server that fails fast cannot look fast."""
    tally, elapsed = sample.tally, sample.elapsed_s
    lat = sorted(tally.latencies)
    rps = tally.ok / elapsed
    server_s = sample.cpu_s.get("server")
    return Measurement(
        name=name,
        requests=len(lat),
        errors=tally.errors,
        duration_s=round(elapsed, 3),
        throughput_rps=round(rps, 1),
        p50_ms=round(percentile(lat, 50) * 1000, 3),
        p90_ms=round(percentile(lat, 90) * 1000, 3),
        p99_ms=round(percentile(lat, 99) * 1000, 3),
        max_ms=round((lat[-1] if lat else math.nan) * 1000, 3),
        degraded=tally.degraded,
        events_per_s=round(rps * per_request, 1) if per_request > 1 else None,
        cpu_pct={who: round(100 * s / elapsed, 1) for who, s in sample.cpu_s.items()},
        server_cpu_ms_per_request=round(1000 * server_s / tally.ok, 3) if server_s is not None and tally.ok else None,
        error_samples=tally.error_samples,
    )


@dataclass
class Comparison:
    """Baselines against decisions over rounds: every round, every kind over all rounds, and
    per baseline the medians of the per-round ratios (throughput, and server CPU per request)."""

    rounds: list[dict[str, Measurement]]
    totals: dict[str, Measurement]

    @property
    def baselines(self) -> list[str]:
        return [k for k in self.totals if k != DECISIONS]

    @property
    def bare(self) -> Measurement:
        return self.totals[BARE]

    @property
    def decisions(self) -> Measurement:
        return self.totals[DECISIONS]

    def ratios(self, baseline: str = BARE) -> list[float]:
        """Decisions' throughput over the baseline's, per round."""
        return [r[DECISIONS].throughput_rps / r[baseline].throughput_rps for r in self.rounds if r[baseline].throughput_rps]

    def cpu_ratios(self, baseline: str = BARE) -> list[float]:
        """The baseline's server CPU per request over a decision's, per round."""
        pairs = ((r[baseline].server_cpu_ms_per_request, r[DECISIONS].server_cpu_ms_per_request) for r in self.rounds)
        return [b / d for b, d in pairs if b and d]

    def ratio(self, baseline: str = BARE) -> float | None:
        ratios = self.ratios(baseline)
        return statistics.median(ratios) if ratios else None

    def cpu_ratio(self, baseline: str = BARE) -> float | None:
        ratios = self.cpu_ratios(baseline)
        return statistics.median(ratios) if ratios else None

    def as_json(self) -> dict[str, Any]:
        def rounded(x: float | None) -> float | None:
            return round(x, 4) if x is not None else None

        return {
            "ratio_decisions_to_bare": rounded(self.ratio()),
            "ratio_by_server_cpu_per_request": rounded(self.cpu_ratio()),
            "ratio_per_round": [round(r, 4) for r in self.ratios()],
            "ratios": {
                b: {
                    "throughput": rounded(self.ratio(b)),
                    "by_server_cpu_per_request": rounded(self.cpu_ratio(b)),
                    "per_round": [round(r, 4) for r in self.ratios(b)],
                }
                for b in self.baselines
            },
            "rounds": [{k: asdict(m) for k, m in r.items()} for r in self.rounds],
        }


async def alternating_rounds(
    rounds: int,
    duration_s: float,
    measure: Callable[[str, float], Awaitable[Sample]],
    kinds: Sequence[str] = (BARE, BARE_REDIS_PY, DECISIONS),
) -> Comparison:
    """`rounds` rounds of every kind, `duration_s` each, in `kinds` order in odd rounds and the
    reverse in even ones (see the module docstring); `measure(kind, seconds)` runs one."""
    per_round: list[dict[str, Measurement]] = []
    totals: dict[str, Sample] = {}
    for r in range(1, rounds + 1):
        got: dict[str, Measurement] = {}
        for kind in kinds if r % 2 else tuple(reversed(kinds)):
            console.print(f"[dim]round {r}/{rounds}: measuring {kind} for {duration_s:g} s ...[/dim]")
            sample = await measure(kind, duration_s)
            got[kind] = summarize(f"{kind}, round {r}", sample)
            totals[kind] = totals[kind] + sample if kind in totals else sample
            await asyncio.sleep(PAUSE_BETWEEN_S)
        per_round.append({k: got[k] for k in kinds})
    return Comparison(per_round, {k: summarize(f"{k}, all rounds", totals[k]) for k in kinds})


class Bench:
    """Runs the measurements against one server; `pids` name the processes whose CPU is reported."""

    def __init__(self, host: str, port: int, customers: int, concurrency: int, pids: dict[str, int]) -> None:
        self.host = host
        self.port = port
        self.model: str | None = None
        self.concurrency = concurrency
        self.pids = pids
        self.factory = RequestFactory(host, port, customers)

    async def _connect(self) -> list[Connection]:
        return list(await asyncio.gather(*(asyncio.open_connection(self.host, self.port) for _ in range(self.concurrency))))

    async def measure(self, make: Callable[[], bytes], duration_s: float) -> Sample:
        """Run `concurrency` closed-loop workers for `duration_s`."""
        conns = await self._connect()  # connected before the clock starts: set-up is not what is measured
        tally = Tally()
        meter = CpuMeter(self.pids)
        meter.start()
        started = time.perf_counter()
        deadline = started + duration_s
        await asyncio.gather(*(worker(self.host, self.port, c, make, deadline, tally) for c in conns))
        return Sample(tally, time.perf_counter() - started, meter.used())

    async def train_model(self) -> str | None:
        """The response model trained through `/v1/feedback` (see train_through_feedback)."""
        import httpx2

        async with httpx2.AsyncClient(base_url=f"http://{self.host}:{self.port}", timeout=10) as http:

            async def decide(_: int) -> tuple[str, str | None]:
                body = {"customer_id": self.factory.customer(), "channel": "web"}
                decision = (await http.post("/v1/decisions", json=body)).json()
                return decision["decision_id"], decision["treatments"][0]["id"] if decision["treatments"] else None

            async def feedback(i: int, decision_id: str, treatment_id: str, outcome: str) -> None:
                body = {"feedback_id": f"train-{self.factory.id_prefix}-{i}", "decision_id": decision_id}
                await http.post("/v1/feedback", json={**body, "treatment_id": treatment_id, "outcome": outcome})

            async def versions() -> dict[str, int]:
                return dict((await http.get("/readyz")).json().get("models", {}))

            return await train_through_feedback(decide, feedback, versions)

    async def run(self, duration_s: float, warmup_s: float, rounds: int) -> tuple[Comparison, Measurement]:
        """The baselines against decisions in rounds, then event ingest."""
        f = self.factory
        console.print("[dim]training the response model through feedback ...[/dim]")
        self.model = await self.train_model()
        console.print(f"[dim]decisions will be scored by {self.model or 'priors only (no model published)'}[/dim]")
        if warmup_s > 0:
            console.print(f"[dim]warming up for {warmup_s:g} s ...[/dim]")
            alternate = _alternating(f.decision, f.bare, f.bare_redis_py)
            await self.measure(lambda: next(alternate), warmup_s)
            await asyncio.sleep(PAUSE_BETWEEN_S)
        makers = {BARE: f.bare, BARE_REDIS_PY: f.bare_redis_py, DECISIONS: f.decision}
        comparison = await alternating_rounds(rounds, duration_s, lambda kind, seconds: self.measure(makers[kind], seconds))
        console.print(f"[dim]measuring events for {duration_s:g} s ...[/dim]")
        events = summarize("events", await self.measure(f.events, duration_s), per_request=EVENTS_PER_BATCH)
        return comparison, events


def _alternating(*makers: Callable[[], bytes]) -> Iterator[bytes]:
    while True:
        for make in makers:
            yield make()


# -- the server under test ------------------------------------------------------------------------


class ServerError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m engine.cli serve` in its own session, so a Ctrl-C in the terminal reaches the
    benchmark only, and the benchmark shuts the server down in order (uvicorn, then the embedded
    Redis, which saves and exits)."""

    def __init__(self, customers: int, data_dir: Path, redis_url: str | None, host: str = "127.0.0.1") -> None:
        self.customers = customers
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.host = host
        self.port = free_port()
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.seeded_at: float | None = None
        self.ready_at: float | None = None
        self._log: TextIO | None = None
        self._pump: threading.Thread | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "engine.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--seed-customers",
            str(self.customers),
        ]

    def start(self) -> None:
        env = {**os.environ, "NBA_BENCH_ENDPOINTS": "true", "NBA_DATA_DIR": str(self.data_dir), "COLUMNS": "200"}
        env.pop("NBA_REDIS_URL", None)
        if self.redis_url:
            env["NBA_REDIS_URL"] = self.redis_url
        self._log = self.log_path.open("w")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name="server-log", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        """Keep the server's output (it goes to the log file, shown only if something goes wrong) and
        note when seeding finished, to report how long it took."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._log is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if self.seeded_at is None and line.startswith("seeded "):
                self.seeded_at = time.perf_counter()
            self._log.write(line)
            self._log.flush()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        """Poll GET /readyz until 200; fail early if the process exits."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"the server exited with code {self.proc.returncode} before it was ready")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                try:
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        self.ready_at = time.perf_counter()
                        return
                finally:
                    conn.close()
            time.sleep(0.2)
        raise ServerError(f"the server was not ready after {timeout_s:.0f} s")

    def embedded_redis_pids(self) -> list[int]:
        """The embedded Redis daemonizes out of the server's process group; it is recognised by its
        working directory, which is this run's own data directory."""
        found: list[int] = []
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == self.data_dir and entry.name != str(os.getpid()):
                    found.append(int(entry.name))
        return [pid for pid in found if self.proc is None or pid != self.proc.pid]

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL to the server's process
        group; finally make sure no embedded Redis of this run is left behind."""
        stop_server(self.proc, [] if self.redis_url is not None else self.embedded_redis_pids())
        if self._pump is not None:
            self._pump.join(5)
        if self._log is not None:
            self._log.close()


# -- reporting ------------------------------------------------------------------------------------


def stop_server(proc: subprocess.Popen[bytes] | None, redis_pids: list[int]) -> None:
    """SIGINT (graceful shutdown), then SIGTERM, then SIGKILL to the server's process group;
    then the embedded Redis processes it left, if any."""
    if proc is not None and proc.poll() is None:
        for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    for pid in redis_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def git_revision() -> str | None:
    """The checked-out commit, read from .git directly (no git binary needed)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: `gitdir: <path>`
            git = (ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        bases = [git]
        if (git / "commondir").is_file():  # a worktree keeps its branches in the main repository
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


def machine_info(loop_name: str) -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_revision": git_revision(),
        "load_generator_loop": loop_name,
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def print_report(comparison: Comparison, header: str, extra: Sequence[Measurement] = ()) -> None:
    """Every round, every kind over all rounds, `extra` rows, then the ratios against the target."""
    last_of_rounds = list(comparison.rounds[-1].values())[-1]
    last_of_totals = list(comparison.totals.values())[-1]
    rows = [m for r in comparison.rounds for m in r.values()] + [*comparison.totals.values(), *extra]
    table = Table(title=header, title_justify="left")
    for column in (
        "measurement",
        "requests",
        "errors",
        "req/s",
        "events/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "server CPU ms/req",
        "CPU % server/redis/gen",
    ):
        table.add_column(column, justify="left" if column == "measurement" else "right", no_wrap=column == "measurement")
    for m in rows:
        cpu = "/".join(fmt(m.cpu_pct.get(k), 0) for k in ("server", "redis", "load generator"))
        table.add_row(
            m.name,
            f"{m.requests:,}",
            f"[red]{m.errors:,}[/red]" if m.errors else "0",
            fmt(m.throughput_rps),
            fmt(m.events_per_s, 0),
            fmt(m.p50_ms, 2),
            fmt(m.p90_ms, 2),
            fmt(m.p99_ms, 2),
            fmt(m.max_ms, 2),
            fmt(m.server_cpu_ms_per_request, 3),
            cpu,
            end_section=m is last_of_rounds or m is last_of_totals,
        )
    console.print(table)
    for m in rows:
        if m.degraded:
            console.print(f"[yellow]{m.name}: {m.degraded:,} degraded answers (state store too slow or unavailable)[/yellow]")
        for sample in m.error_samples:
            console.print(f"[red]{m.name} error:[/red] {sample}", markup=True, highlight=False)
    for baseline in comparison.baselines:
        ratio = comparison.ratio(baseline)
        if ratio is None:
            console.print(f"decisions / {baseline} throughput: [red]not available[/red]")
            continue
        verdict = "[green]meets the target[/green]" if ratio >= TARGET_RATIO else "[red]below the target[/red]"
        ratios = comparison.ratios(baseline)
        console.print(
            f"decisions / {baseline} throughput: [bold]{ratio:.2f}[/bold], median of {len(ratios)} rounds "
            f"({' '.join(f'{r:.2f}' for r in ratios)})  (target >= {TARGET_RATIO:.2f}: {verdict})"
        )
        cpu_ratio = comparison.cpu_ratio(baseline)
        if cpu_ratio is not None:
            per_round = " ".join(f"{r:.2f}" for r in comparison.cpu_ratios(baseline))
            console.print(
                f"  {baseline} / decisions server CPU per request: {cpu_ratio:.2f} ({per_round}): the same ratio, "
                "less sensitive to other load"
            )


def write_json(out_dir: Path, payload: dict[str, Any], stamp: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    path = out_dir / f"bench-{stamp}.json"
    path.write_bytes(data)
    (out_dir / "latest.json").write_bytes(data)
    return path


# -- entry point ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=100_000, help="customers to seed and spread requests over (default 100000)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per measurement (default 4)")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of the baselines and decisions (default {ROUNDS})")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent connections, one request in flight each (default 32)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of mixed traffic before measuring (default 2)")
    p.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="directory for the JSON results (default bench-results)"
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="state store for the server (default: the embedded Redis `nba serve` starts, in a temporary directory); "
        "the seeded profiles overwrite cust-* keys there",
    )
    args = p.parse_args(argv)
    if args.customers < 1 or args.concurrency < 1 or args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--customers, --concurrency and --rounds must be >= 1, --duration > 0 and --warmup >= 0")
    return args


def _event_loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so `finally` stops the server on kill too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started from a shell that ignores it
    loop_factory, loop_name = _event_loop_factory()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    startup: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="nba-bench-") as tmp:
        server = Server(args.customers, Path(tmp).resolve(), args.redis_url)
        try:
            console.print(f"starting the server on port {server.port}, seeding {args.customers:,} customers ...")
            server.start()
            server.wait_ready(timeout_s=120 + args.customers / 1_000)
            assert server.ready_at is not None
            assert server.proc is not None
            startup = {
                "seed_s": round(server.seeded_at - server.started_at, 2) if server.seeded_at else None,
                "start_to_ready_s": round(server.ready_at - server.started_at, 2),
            }
            console.print(
                f"ready after {startup['start_to_ready_s']} s (seeding done at {fmt(startup['seed_s'], 2)} s, "
                "including interpreter start)"
            )
            pids = {"server": server.proc.pid}
            redis_pids = server.embedded_redis_pids() if args.redis_url is None else []
            if redis_pids:
                pids["redis"] = redis_pids[0]
            bench = Bench(server.host, server.port, args.customers, args.concurrency, pids)
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                comparison, events = runner.run(bench.run(args.duration, args.warmup, args.rounds))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; stopping the server[/yellow]")
            return 130
        except (ServerError, OSError) as exc:
            console.print(f"[red]benchmark failed:[/red] {exc}")
            tail = server.log_tail()
            if tail:
                console.print("[dim]server output:[/dim]")
                console.print(tail, markup=False, highlight=False)
            return 1
        finally:
            server.stop()

    header = (
        f"{args.customers:,} customers, {args.concurrency} connections, {args.rounds} rounds of {args.duration:g} s, "
        f"{os.cpu_count()} CPUs (server, Redis and load generator share them)"
    )
    print_report(comparison, header, [events])

    payload = {
        "timestamp": stamp,
        "config": {
            "customers": args.customers,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "redis": args.redis_url or "embedded",
            "decision_mix": DECISION_MIX,
            "events_per_batch": EVENTS_PER_BATCH,
        },
        "machine": machine_info(loop_name),
        "server_startup": startup,
        "results": {
            **{k: asdict(m) for k, m in comparison.totals.items()},
            "events": asdict(events),
        },
        **comparison.as_json(),
        "decisions_scored_by": bench.model,
        "target_ratio": TARGET_RATIO,
    }
    path = write_json(args.out, payload, stamp)
    console.print(f"results written to {path} and {args.out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
