"""Learning benchmark: how fast the learner turns feedback into examples, and into served weights.

Run as ``python -m loadtests.learning_bench``. Everything runs in this process against one Redis
(an embedded one in a temporary directory unless ``--redis-url`` is given), and measures:

* **Learner throughput.** ``--records`` decision records scored by the ``response`` model (with
  the customer and context fields it reads, and two treatments from ``rules/offers.yaml`` each)
  and as many feedback entries (clicks, accepts, purchases and rejects) are logged first; then one
  ``LearnerWorker`` drains both streams with ``step()`` until nothing is left, and publishes once.
  Reported: feedback entries and examples learned per second by that one process, the CPU it
  used, and what a publish (snapshot, exported weights, acknowledgements) costs.
* **Feedback to served version.** ``learn_model`` and ``follow_models`` run as tasks of this
  event loop, on the system clock, exactly as a learner process and a serving process would;
  each sample logs one decision and an ``accept`` for it, and times how long until the
  ``ModelRegistry`` serves a newer version of the model. The design target is within a second.

The samples are spaced by a random pause because the learner publishes at most once per
snapshot interval: feedback that lands just after a publish waits for the rest of it, feedback
that lands after a quiet spell is published at once. Random arrival gives the distribution a
caller sees, rather than only the best or only the worst case.

It prints a table and writes ``<out>/learning.json``; it asserts nothing, because timings on a
shared machine are for reading, not gating.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import math
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from redis import asyncio as aioredis
from rich.console import Console
from rich.table import Table

from engine.clock import FixedClock, SystemClock
from engine.domain import Feedback, StoredDecision
from engine.learning.serving import ModelRegistry, ServedModel, follow_models
from engine.learning.spec import ModelSpec, load_model_specs
from engine.learning.worker import STREAMS, LearnerWorker, group_name, learn_model
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.seed import demo_profiles
from engine.state import keys
from engine.state.learning_store import LearningStore
from engine.state.redis_store import RedisStore
from loadtests.bench import ROOT, fmt, machine_info, percentile

MODEL_ID = "response"
TARGET_MS = 1000.0
CUSTOMERS = 5_000
WRITE_CONCURRENCY = 64  # writes in flight while logging: enough to keep Redis busy without a connection per record
SAMPLE_TIMEOUT_S = 10.0
POLL_S = 0.001
STEADY_PUBLISHES = 5
DEFAULT_SNAPSHOT_EVERY_S: float = inspect.signature(LearnerWorker.__init__).parameters["snapshot_every_s"].default

# Outcomes in the proportions a busy web shop sees them: most impressions that get any answer get
# a click or an explicit dismissal, fewer an accept, fewest a purchase.
OUTCOMES: tuple[tuple[str, float], ...] = (("click", 0.35), ("reject", 0.35), ("accept", 0.20), ("purchase", 0.10))
PAGES = ("home", "search", "product", "event_list", "event_detail", "cart")
COMPANIONS = ("child", "partner", "friends", "none")

console = Console(width=None if sys.stdout.isatty() else 150)


# -- what is logged ------------------------------------------------------------------------------


class Traffic:
    """Decision records and feedback as the decision service would log them for the model.

    Profiles are the engine's own seeded customers, and the logged inputs are cut down to the
    fields the model reads by `ServedModel.inputs`, as the service does, so the learner featurizes
    the same shapes it meets in production.
    """

    def __init__(self, rules: RuleSet, model: ServedModel, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.model = model
        self.label = model.label
        self.population = list(itertools.islice(demo_profiles(CUSTOMERS), CUSTOMERS))
        self.by_channel = {channel: [t for t in rules.treatments if channel in t.channels] for channel in ("web", "mobile_app")}
        self.run = uuid.uuid4().hex[:8]  # feedback ids unique per run, should the store be reused
        self.seq = 0

    def _context(self, channel: str) -> dict[str, Any]:
        rng = self.rng
        device = "desktop" if channel == "web" and rng.random() < 0.7 else rng.choice(("ios", "android"))
        context: dict[str, Any] = {"device": device, "page": rng.choice(PAGES)}
        if rng.random() < 0.3:
            companion = rng.choice(COMPANIONS)
            sizes = {"child": (3, 5), "partner": (2, 2), "friends": (3, 6), "none": (1, 1)}[companion]
            context["companion"] = companion
            context["party_size"] = rng.randint(*sizes)
        return context

    def _slate(self, channel: str) -> list[dict[str, Any]]:
        """Two treatments from different groups, as arbitration (one per group) would leave them."""
        pool = self.by_channel[channel]
        first = self.rng.choice(pool)
        second = self.rng.choice([t for t in pool if t.group != first.group] or [t for t in pool if t is not first])
        return [
            {
                "id": t.id,
                "kind": t.kind,
                "group": t.group,
                "score": round(self.rng.uniform(0.05, 2.0), 4),
                "propensity": round(t.prior_alpha / (t.prior_alpha + t.prior_beta), 4),
                "selection_probability": 1.0,
            }
            for t in (first, second)
        ]

    def decision(self, ts: int) -> StoredDecision:
        customer_id, profile = self.rng.choice(self.population)
        channel = self.rng.choice(("web", "web", "mobile_app"))
        context = self._context(channel)
        return StoredDecision(
            decision_id=keys.new_decision_id(uuid.uuid4().hex, customer_id),
            customer_id=customer_id,
            channel=channel,
            placement=None,
            ts=ts,
            rules_version="bench",
            treatments=self._slate(channel),
            policy="epsilon_greedy",
            model=self.label,
            inputs=self.model.inputs(profile, context),
        )

    def feedback(self, record: StoredDecision, outcome: str | None = None) -> Feedback:
        self.seq += 1
        names, weights = zip(*OUTCOMES, strict=True)
        outcome = outcome or self.rng.choices(names, weights)[0]
        treatment = record.treatments[0 if self.rng.random() < 0.7 else 1]["id"]
        value = round(self.rng.uniform(20, 800), 2) if outcome == "purchase" else None
        return Feedback(f"bench-{self.run}-{self.seq}", record.decision_id, treatment, outcome, value)


async def bounded(jobs: Iterator[Awaitable[None]], limit: int) -> None:
    """Run the jobs with at most `limit` in flight, so logging is not one round trip at a time."""
    pending: set[asyncio.Future[None]] = set()
    for job in jobs:
        pending.add(asyncio.ensure_future(job))
        if len(pending) >= limit:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                d.result()
    if pending:
        for d in (await asyncio.wait(pending))[0]:
            d.result()


# -- measurements -----------------------------------------------------------------------------------


@dataclass
class Throughput:
    records: int
    feedback_entries: int
    log_s: float
    drain_s: float
    steps: int
    stream_entries: int
    examples: int
    positives: int
    negatives: int
    feedback_per_s: float
    examples_per_s: float
    stream_entries_per_s: float
    learner_cpu_pct: float
    final_publish_ms: float
    final_publish_acked: int
    steady_publish_ms: float
    snapshot_bytes: int
    served_weights_bytes: int
    unacknowledged_after_publish: int
    end_to_end_feedback_per_s: float


@dataclass
class Latency:
    samples: int
    missed: int
    snapshot_every_s: float
    p50_ms: float
    p90_ms: float
    max_ms: float
    mean_ms: float
    within_target: int
    latencies_ms: list[float] = field(default_factory=list)


async def measure_throughput(
    store: RedisStore, learning: LearningStore, spec: ModelSpec, traffic: Traffic, records: int
) -> Throughput:
    """Log everything first, then drain it: the learner's rate with a full backlog is its ceiling."""
    clock = FixedClock(SystemClock().now_ms())  # windows close a day later: no negatives fall due here
    logged: list[StoredDecision] = []

    def writes() -> Iterator[Awaitable[None]]:
        for _ in range(records):
            record = traffic.decision(clock.now_ms())
            logged.append(record)
            yield store.write_decision(record, [])

    def responses() -> Iterator[Awaitable[None]]:
        for record in logged:
            feedback = traffic.feedback(record)
            yield store.apply_feedback(feedback, record.customer_id, clock.now_ms())

    started = time.perf_counter()
    await bounded(writes(), WRITE_CONCURRENCY)
    await bounded(responses(), WRITE_CONCURRENCY)
    log_s = time.perf_counter() - started

    # A frozen monotonic clock keeps step() from snapshotting on its own (it would every 5 s once
    # positions moved), so the drain measures learning alone and the publish is timed apart.
    worker = LearnerWorker(learning, spec, clock, consumer="bench-drain", snapshot_every_s=math.inf, monotonic=lambda: 0.0)
    await worker.restore()
    steps = entries = positives = negatives = 0
    cpu0, started = time.process_time(), time.perf_counter()
    while True:
        report = await worker.step(block_ms=None)
        if not report.entries:
            break
        steps += 1
        entries += report.entries
        positives += report.positives
        negatives += report.negatives
    drain_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu0

    started = time.perf_counter()
    await worker.publish()
    final_publish_s = time.perf_counter() - started

    # A publish in steady state acknowledges a handful of entries but still snapshots the whole
    # learner; that is the recurring cost, so it is measured on its own.
    steady: list[float] = []
    for _ in range(STEADY_PUBLISHES):
        record = traffic.decision(clock.now_ms())
        await store.write_decision(record, [])
        await store.apply_feedback(traffic.feedback(record, "accept"), record.customer_id, clock.now_ms())
        while (await worker.step(block_ms=None)).entries:
            pass
        started = time.perf_counter()
        await worker.publish()
        steady.append(time.perf_counter() - started)

    snapshot = await learning.load_snapshot(spec.id)
    served = await learning.load_served(spec.id)
    pending = 0
    for stream in STREAMS:
        summary = await learning.client.xpending(stream, group_name(spec.id))
        pending += int(summary["pending"])
    examples = positives + negatives
    return Throughput(
        records=records,
        feedback_entries=records,
        log_s=round(log_s, 3),
        drain_s=round(drain_s, 3),
        steps=steps,
        stream_entries=entries,
        examples=examples,
        positives=positives,
        negatives=negatives,
        feedback_per_s=round(records / drain_s, 1),
        examples_per_s=round(examples / drain_s, 1),
        stream_entries_per_s=round(entries / drain_s, 1),
        learner_cpu_pct=round(100 * cpu_s / drain_s, 1),
        final_publish_ms=round(final_publish_s * 1000, 3),
        final_publish_acked=entries,
        steady_publish_ms=round(sorted(steady)[len(steady) // 2] * 1000, 3),
        snapshot_bytes=len(snapshot.learner) if snapshot else 0,
        served_weights_bytes=len(served.weights) if served else 0,
        unacknowledged_after_publish=pending,
        end_to_end_feedback_per_s=round(records / (drain_s + final_publish_s), 1),
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def measure_latency(
    store: RedisStore, learning: LearningStore, specs: Sequence[ModelSpec], traffic: Traffic, samples: int, seed: int = 2
) -> Latency:
    """A learner and a serving registry side by side, as two processes would run them."""
    spec = next(s for s in specs if s.id == MODEL_ID)
    clock = SystemClock()
    registry = ModelRegistry(specs)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(learn_model(learning, spec, clock, "bench-learner", stop)),
        asyncio.create_task(follow_models(registry, learning, stop)),
    ]
    rng = random.Random(seed)

    def served() -> int:
        return registry.versions()[MODEL_ID]

    async def one_sample() -> float | None:
        before = served()
        record = traffic.decision(clock.now_ms())
        await store.write_decision(record, [])
        started = time.perf_counter()  # from the moment the feedback is sent
        await store.apply_feedback(traffic.feedback(record, "accept"), record.customer_id, clock.now_ms())
        if not await wait_for(lambda: served() > before, SAMPLE_TIMEOUT_S):
            return None
        return (time.perf_counter() - started) * 1000

    latencies: list[float] = []
    missed = 0
    try:
        published = await learning.served_version(MODEL_ID)
        await wait_for(lambda: served() >= published, SAMPLE_TIMEOUT_S)
        await one_sample()  # warm-up: the learner restores its snapshot when it takes the lease
        for _ in range(samples):
            await asyncio.sleep(rng.uniform(0, 2 * DEFAULT_SNAPSHOT_EVERY_S))
            ms = await one_sample()
            if ms is None:
                missed += 1
            else:
                latencies.append(ms)
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        for task in tasks:
            task.cancel()
    ordered = sorted(latencies)
    return Latency(
        samples=samples,
        missed=missed,
        snapshot_every_s=DEFAULT_SNAPSHOT_EVERY_S,
        p50_ms=round(percentile(ordered, 50), 1),
        p90_ms=round(percentile(ordered, 90), 1),
        max_ms=round(ordered[-1], 1) if ordered else math.nan,
        mean_ms=round(sum(ordered) / len(ordered), 1) if ordered else math.nan,
        within_target=sum(ms <= TARGET_MS for ms in ordered),
        latencies_ms=[round(ms, 2) for ms in latencies],
    )


# -- running --------------------------------------------------------------------------------------


async def run(client: aioredis.Redis, args: argparse.Namespace) -> tuple[Throughput, Latency]:
    rules = load_ruleset(ROOT / "rules")
    vocabulary = rules.vocabulary.namespaces
    specs = load_model_specs(ROOT / "models", customer_fields=vocabulary["customer"], context_fields=vocabulary["context"])
    spec = next(s for s in specs if s.id == MODEL_ID)
    model = ModelRegistry(specs).get(MODEL_ID)
    if model is None:  # cannot happen: the spec was just found by the same id
        raise LookupError(MODEL_ID)
    store = RedisStore(
        client, decision_ttl_s=7 * 86_400, dedup_ttl_s=600, recent_limit=10, stream_maxlen=max(100_000, 2 * args.records)
    )
    await store.prepare()
    learning = LearningStore(client)
    traffic = Traffic(rules, model)
    console.print(f"logging {args.records:,} decisions and {args.records:,} feedback entries, then draining them ...")
    throughput = await measure_throughput(store, learning, spec, traffic, args.records)
    console.print(f"timing {args.latency_samples} feedback entries until a new model version is served ...")
    latency = await measure_latency(store, learning, specs, traffic, args.latency_samples)
    return throughput, latency


def print_report(t: Throughput, lat: Latency, header: str) -> None:
    table = Table(title=header, title_justify="left")
    table.add_column("measurement", justify="left")
    table.add_column("value", justify="right")
    table.add_column("note", justify="left")
    rows = (
        ("feedback entries learned / s", fmt(t.feedback_per_s, 0), f"{t.feedback_entries:,} entries in {t.drain_s:.2f} s"),
        (
            "examples learned / s",
            fmt(t.examples_per_s, 0),
            f"{t.examples:,} ({t.positives:,} positive, {t.negatives:,} negative)",
        ),
        ("stream entries read / s", fmt(t.stream_entries_per_s, 0), f"feedback, {t.steps:,} steps"),
        ("learner CPU %", fmt(t.learner_cpu_pct, 0), "of one core, while draining"),
        ("final publish ms", fmt(t.final_publish_ms, 1), f"snapshot + weights, acknowledging {t.final_publish_acked:,} entries"),
        ("steady publish ms", fmt(t.steady_publish_ms, 1), f"median of {STEADY_PUBLISHES}, a few entries each"),
        (
            "snapshot / weights KiB",
            f"{t.snapshot_bytes / 1024:,.0f} / {t.served_weights_bytes / 1024:,.1f}",
            "learner pickle / served",
        ),
        (
            "feedback / s incl. publish",
            fmt(t.end_to_end_feedback_per_s, 0),
            f"unacknowledged after: {t.unacknowledged_after_publish}",
        ),
        ("feedback → served p50 ms", fmt(lat.p50_ms, 1), f"{lat.samples} samples, snapshot every {lat.snapshot_every_s:g} s"),
        ("feedback → served p90 ms", fmt(lat.p90_ms, 1), ""),
        ("feedback → served max ms", fmt(lat.max_ms, 1), f"mean {fmt(lat.mean_ms, 1)}, missed {lat.missed}"),
    )
    for row in rows:
        table.add_row(*row)
    console.print(table)
    ok = lat.within_target == lat.samples
    verdict = "[green]all within the target[/green]" if ok else "[red]some beyond the target[/red]"
    console.print(f"feedback to served version: {lat.within_target}/{lat.samples} within {TARGET_MS:g} ms ({verdict})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.learning_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=20_000, help="decision records, and feedback entries, to learn (default 20000)")
    p.add_argument(
        "--latency-samples", type=int, default=30, help="feedback entries timed until a new version is served (default 30)"
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for learning.json (default bench-results)")
    p.add_argument(
        "--redis-url",
        default=None,
        help="Redis to use instead of an embedded one in a temporary directory; its database must be empty, "
        "since the learner would otherwise consume (and acknowledge) whatever the streams already hold",
    )
    args = p.parse_args(argv)
    if args.records < 1 or args.latency_samples < 1:
        p.error("--records and --latency-samples must be >= 1")
    return args


def _event_loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """uvloop where installed, as the engine's processes use it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


async def _session(args: argparse.Namespace, tmp: Path) -> tuple[Throughput, Latency] | None:
    embedded = None
    if args.redis_url:
        client = aioredis.Redis.from_url(args.redis_url)
    else:
        from engine.state.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(tmp / "redis")
        client = embedded.client()
    try:
        if args.redis_url and await client.dbsize():
            console.print(f"[red]{args.redis_url} is not empty;[/red] use an empty database (e.g. another /<db> index)")
            return None
        return await run(client, args)
    finally:
        await client.aclose()
        if embedded is not None:
            embedded.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loop_factory, loop_name = _event_loop_factory()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="nba-learning-bench-") as tmp, asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_session(args, Path(tmp)))
    if result is None:
        return 2
    throughput, latency = result
    header = f"{args.records:,} decisions + feedback, one learner process, {args.redis_url or 'embedded Redis'}"
    print_report(throughput, latency, header)
    payload = {
        "timestamp": stamp,
        "config": {
            "records": args.records,
            "latency_samples": args.latency_samples,
            "redis": args.redis_url or "embedded",
            "model": MODEL_ID,
            "outcome_mix": dict(OUTCOMES),
            "treatments_per_decision": 2,
            "target_ms": TARGET_MS,
        },
        "machine": machine_info(loop_name),
        "throughput": asdict(throughput),
        "feedback_to_served": asdict(latency),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "learning.json"
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
