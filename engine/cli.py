"""The `nba` command: run the engine, seed demo data, check rules."""

from __future__ import annotations

import asyncio
import enum
import itertools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from engine.errors import RuleSetError
from engine.settings import Settings
from engine.value_commands import clv_app, equity_app, report_app

app = typer.Typer(help="Next-best-action engine.", no_args_is_help=True, add_completion=False)
rules_app = typer.Typer(help="Work with rule sets.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(equity_app, name="equity")
app.add_typer(clv_app, name="clv")
app.add_typer(report_app, name="report")
console = Console()
err = Console(stderr=True)


class TrainChoice(enum.StrEnum):
    """When `nba evaluate` trains a `model:` policy's learner on part of the log (engine.evaluation.training)."""

    auto = "auto"
    always = "always"
    never = "never"


RulesDir = Annotated[Path | None, typer.Option("--rules", help="Rules directory (default: NBA_RULES_DIR or ./rules).")]


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


async def seed_customers(settings: Settings, count: int, seed: int, now_ms: int | None = None) -> int:
    """Demo profiles and value histories; then, with enough buyers, a lifetime-value model
    fitted on them, so a demo shows CLV from the first decision."""
    from engine.clock import SystemClock
    from engine.equity.batch import MIN_CUSTOMERS_TO_FIT, fit_lifetime
    from engine.rules.registry import RuleRegistry
    from engine.seed import demo_profiles, demo_value_facts
    from engine.state.connect import open_redis, store_for
    from engine.state.value_store import ValueStore

    equity = RuleRegistry.from_directory(settings.rules_dir).current.equity
    now = now_ms if now_ms is not None else SystemClock().now_ms()
    client, embedded = open_redis(settings)
    store = store_for(client, settings)
    written = 0
    try:
        profiles = demo_profiles(count, seed)
        while chunk := list(itertools.islice(profiles, 1_000)):
            await store.seed_profiles(chunk)
            await store.seed_value_facts(list(demo_value_facts([cid for cid, _ in chunk], now, equity, seed + written)))
            written += len(chunk)
        if written >= MIN_CUSTOMERS_TO_FIT:
            await fit_lifetime(ValueStore(client), now)
    finally:
        await store.aclose()
        await client.aclose()
        if embedded is not None:
            embedded.close()
    return written


@app.command()
def seed(
    customers: Annotated[int, typer.Option(help="Synthetic customers besides the named demo ones.")] = 1_000,
    random_seed: Annotated[int, typer.Option("--seed", help="Random seed, for a repeatable base.")] = 7,
) -> None:
    """Write demo customer profiles (alice, ben, carla, dev and cust-000001...)."""
    written = asyncio.run(seed_customers(_settings(), customers, random_seed))
    console.print(f"seeded {written} customer profiles")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default: NBA_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: NBA_PORT or 8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default: NBA_GRPC_PORT or 50051).")] = None,
    http_only: Annotated[bool, typer.Option("--http-only", help="Serve HTTP only.")] = False,
    grpc_only: Annotated[bool, typer.Option("--grpc-only", help="Serve gRPC only.")] = False,
    rules: RulesDir = None,
    seed_count: Annotated[int, typer.Option("--seed-customers", help="Seed this many demo customers first.")] = 0,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "info",
) -> None:
    """Run the engine: HTTP and gRPC over one engine (embedded Redis unless NBA_REDIS_URL is set)."""
    from engine.api.serve import run
    from engine.rules.loader import load_ruleset

    if http_only and grpc_only:
        err.print("[red]--http-only and --grpc-only exclude each other[/red]")
        raise typer.Exit(2)
    settings = _settings(host=host, port=port, grpc_port=grpc_port, rules_dir=rules)
    try:
        ruleset = load_ruleset(settings.rules_dir)
    except RuleSetError as exc:
        # The listing quotes rule lines, whose `[...]` rich would read as markup (swallowed, or a
        # MarkupError for `[/b]`); unwrapped, each line stays whole for copying and grepping.
        err.print("[red]refusing to start:[/red]", end=" ")
        err.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    if seed_count:
        written = asyncio.run(seed_customers(settings, seed_count, 7))
        console.print(f"seeded {written} demo customers")
    redis = settings.redis_url or f"embedded Redis (data in {settings.data_dir / 'nba.rdb'})"
    treatments = len(ruleset.treatments)
    console.print(f"NBA engine: rules {settings.rules_dir} (version {ruleset.version}, {treatments} treatments)")
    console.print(f"state in {redis}")
    if not grpc_only:
        console.print(f"HTTP listening on http://{settings.host}:{settings.port}  (API docs: /docs)")

    def announce(bound: int) -> None:
        console.print(f"gRPC listening on {settings.host}:{bound}  (health and reflection on)")

    run(settings, http=not grpc_only, grpc=not http_only, log_level=log_level, on_ready=announce)


@app.command()
def learner(
    models: Annotated[Path | None, typer.Option("--models", help="Model specs (default: NBA_MODELS_DIR or ./models).")] = None,
    rules: RulesDir = None,
) -> None:
    """Run the learners as their own process (several processes share the models through leases)."""
    from engine.api.learner import run_learners

    settings = _settings(models_dir=models, rules_dir=rules)
    try:
        asyncio.run(run_learners(settings, announce=lambda line: console.print(line, markup=False)))
    except RuleSetError as exc:
        err.print(f"[red]refusing to start:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc


@app.command()
def worker(rules: RulesDir = None) -> None:
    """Fire trigger timers as a process of its own (any number can run side by side)."""
    from engine.api.worker import run_timer_worker

    settings = _settings(rules_dir=rules)
    try:
        asyncio.run(run_timer_worker(settings, announce=console.print))
    except RuleSetError as exc:
        err.print(f"[red]refusing to start:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc


@app.command()
def evaluate(
    policy: Annotated[
        str,
        typer.Option(
            help="Candidate policy: fixed:<treatment>, greedy, random, epsilon:<e>, softmax:<T>, model:<id>, rules:<dir>."
        ),
    ],
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Logged rounds (.jsonl or .csv); default: the Redis streams.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model spec whose reward defines the rewards read from Redis.")] = None,
    clip: Annotated[float | None, typer.Option(help="Clip importance weights at this value.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1_000,
    random_seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    export: Annotated[Path | None, typer.Option(help="Also write the rounds read to this .jsonl/.csv file.")] = None,
    since_ms: Annotated[int | None, typer.Option(help="Only decisions logged at or after this time (ms).")] = None,
    until_ms: Annotated[int | None, typer.Option(help="Only decisions logged at or before this time (ms).")] = None,
    train: Annotated[
        TrainChoice,
        typer.Option(help="For model: policies: auto (train the spec's learner when no weights are published), always, never."),
    ] = TrainChoice.auto,
    train_share: Annotated[
        float, typer.Option(min=0.05, max=0.95, help="Share of the earliest decisions a trained model learns from.")
    ] = 0.5,
) -> None:
    """Estimate what another policy would have earned, from the decision and feedback logs (IPS, SNIPS, DR)."""
    from engine.errors import EngineError, InvalidInput
    from engine.evaluation.report import render, run_evaluation
    from engine.state.connect import open_redis

    settings = _settings()

    async def go() -> None:
        client, embedded = (None, None) if from_file else open_redis(settings)
        try:
            report = await run_evaluation(
                source=from_file,
                redis_client=client,
                policy=policy,
                rules_dir=settings.rules_dir,
                models_dir=settings.models_dir,
                model_id=model,
                clip=clip,
                n_boot=bootstrap,
                seed=random_seed,
                export=export,
                since_ms=since_ms,
                until_ms=until_ms,
                train=train.value,
                train_share=train_share,
            )
        finally:
            if client is not None:
                await client.aclose()
            if embedded is not None:
                embedded.close()
        if report.no_overlap is not None:
            # A table of zeros would read as a verdict on the policy; it is only silence of the log.
            raise InvalidInput(report.no_overlap, field="policy")
        console.print(render(report))
        for note in report.notes:
            console.print(f"[dim]note: {note}[/dim]")

    try:
        asyncio.run(go())
    except EngineError as exc:
        # Messages quote paths and policy text, whose `[...]` rich would read as markup; one line
        # each, unwrapped, so it can be copied and grepped.
        err.print(exc.message, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


@app.command("simulate-learning")
def simulate_learning(
    decisions: Annotated[int, typer.Option(min=1, help="Decisions to run.")] = 20_000,
    random_seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
) -> None:
    """Watch the engine learn: a synthetic population with known acceptance rates, through the real path."""
    from engine.simulation.learning import run_learning
    from engine.state.embedded import EmbeddedRedis

    async def go() -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            server = EmbeddedRedis(Path(tmp))
            client = server.client()
            try:
                run = await run_learning(
                    client,
                    decisions=decisions,
                    seed=random_seed,
                    on_progress=lambda n, v: console.print(f"{n:>7,} decisions: learned policy value {v:.3f}"),
                )
            finally:
                await client.aclose()
                server.close()
        console.print(f"accepted {run.accepted:,} of {run.decisions:,} offers; model version {run.model_version}")
        console.print(f"expected acceptance: learned {run.learned_value:.3f}, oracle {run.oracle_value:.3f} ", end="")
        console.print(f"({run.share_of_oracle:.0%} of oracle), static prior {run.prior_value:.3f}")
        console.print(f"learned choice per segment: {run.learned_choice}")

    asyncio.run(go())


@rules_app.command("check")
def rules_check(
    directory: Annotated[Path, typer.Argument(help="Rules directory.")] = Path("rules"),
    strict: Annotated[bool, typer.Option(help="Fail (exit code 1) on warnings too.")] = False,
) -> None:
    """Load and compile a rule set; list every error (exit code 1), then every warning: conditions
    that can never be true, unreachable treatments, caps that can never bind."""
    from engine.rules.lint import check

    try:
        ruleset, warnings = check(directory)
    except RuleSetError as exc:
        for problem in exc.problems:
            err.print(problem.render(), markup=False, highlight=False)
        err.print(f"[red]{len(exc.problems)} error(s)[/red]")
        raise typer.Exit(1) from exc
    for warning in warnings:
        err.print(warning.render(), markup=False, highlight=False)
    console.print(f"ok: {len(ruleset.treatments)} treatments, version {ruleset.version}, {len(warnings)} warning(s)")
    if strict and warnings:
        raise typer.Exit(1)


@rules_app.command("test")
def rules_test(
    directory: Annotated[Path, typer.Argument(help="Rules directory, with *_test.yaml cases beside the rules.")] = Path("rules"),
    strict: Annotated[bool, typer.Option(help="Also fail when a treatment or condition is not fully covered.")] = False,
) -> None:
    """Run the rule test cases (`*_test.yaml`): pass/fail per case with the reason, then coverage."""
    from engine.rules.testing import render, run_rule_tests

    report = run_rule_tests(directory)
    for part in render(report):
        console.print(part)
    if not report.passed or (strict and (report.coverage is None or not report.coverage.complete)):
        raise typer.Exit(1)


@app.command()
def simulate(
    rules: Annotated[Path, typer.Option("--rules", help="Rule set to simulate.")] = Path("rules"),
    baseline: Annotated[Path | None, typer.Option(help="Rule set to compare against (e.g. the one live now).")] = None,
    customers: Annotated[int, typer.Option(min=1, max=10_000_000, help="Synthetic customers.")] = 100_000,
    from_redis: Annotated[bool, typer.Option("--from-redis", help="Real customers from Redis instead.")] = False,
    channel: Annotated[str, typer.Option(help="Channel of the simulated requests.")] = "web",
    placement: Annotated[str | None, typer.Option(help="Placement of the simulated requests.")] = None,
    random_seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic customers.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """What a rule set would do across many customers, without side effects: per treatment the
    eligible and chosen shares, expected value, change against a baseline, and rules matching
    0 % or 100 % of customers."""
    import orjson

    from engine.clock import SystemClock
    from engine.rules.loader import load_ruleset
    from engine.rules.ruleset import merged_lookbacks
    from engine.simulation.customers import load_customers, synthetic_customers
    from engine.simulation.rules import planned_work, progress_bar, render
    from engine.simulation.rules import simulate as run_simulation
    from engine.state.connect import open_redis

    try:
        ruleset = load_ruleset(rules)
        base = load_ruleset(baseline) if baseline is not None else None
    except RuleSetError as exc:
        for problem in exc.problems:
            err.print(problem.render(), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    now = SystemClock().now_ms()
    if from_redis:
        settings = _settings()
        counters = sorted({*ruleset.counters_read(True), *(base.counters_read(True) if base else ())})
        lookbacks = merged_lookbacks(ruleset, base)

        async def read() -> Any:
            client, embedded = open_redis(settings)
            try:
                return await load_customers(
                    client, now_ms=now, recent_limit=settings.recent_limit, counters=counters, lookbacks=lookbacks
                )
            finally:
                await client.aclose()
                if embedded is not None:
                    embedded.close()

        batch = asyncio.run(read())
    else:
        batch = synthetic_customers(customers, random_seed, ruleset, now_ms=now)
    with progress_bar(planned_work(len(batch), baseline=base is not None)) as advance:
        report = run_simulation(ruleset, batch, baseline=base, channel=channel, placement=placement, now_ms=now, progress=advance)
    if as_json:
        console.print_json(orjson.dumps(report.to_dict()).decode())
        return
    for part in render(report):
        console.print(part)


if __name__ == "__main__":
    app()
