"""`nba equity …`, `nba clv …` and `nba report …`: customer value from the command line.

Each command connects like `nba serve` does (NBA_REDIS_URL, or the embedded Redis under
NBA_DATA_DIR), reads the equity configuration from the rule set, and works in chunks so it
runs against millions of customers with bounded memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import EngineError
from engine.settings import Settings

equity_app = typer.Typer(help="Customer equity: indices, score and tier.", no_args_is_help=True)
clv_app = typer.Typer(help="Customer lifetime value (BG/NBD and Gamma-Gamma).", no_args_is_help=True)
report_app = typer.Typer(help="Reports from the decision and feedback logs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

RulesDir = Annotated[Path | None, typer.Option("--rules", help="Rules directory (default: NBA_RULES_DIR or ./rules).")]
Chunk = Annotated[int, typer.Option(min=100, max=100_000, help="Customers read per round trip.")]


@asynccontextmanager
async def _connected(rules_dir: Path | None) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(redis client, rule set, value model with the stored lifetime model)."""
    from engine.equity.value import LifetimeModel
    from engine.rules.registry import RuleRegistry
    from engine.state.connect import open_redis
    from engine.state.value_store import ValueStore

    settings = Settings(**({"rules_dir": rules_dir} if rules_dir else {}))
    rules = RuleRegistry.from_directory(settings.rules_dir).current
    client, embedded = open_redis(settings)
    try:
        stored = await ValueStore(client).load_lifetime_model()
        lifetime = LifetimeModel.from_dict(stored) if stored else None
        yield client, rules, rules.value_model.with_lifetime(lifetime)
    finally:
        await client.aclose()
        if embedded is not None:
            embedded.close()


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except EngineError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False)
        raise typer.Exit(2) from exc


def _progress(what: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(f"{what} [bold]{{task.completed:,}}[/bold] customers"), TimeElapsedColumn())


@equity_app.command("recompute")
def equity_recompute(rules: RulesDir = None, chunk: Chunk = 5_000) -> None:
    """Recompute every customer's indices, equity and tier, and store a snapshot and a summary."""
    from engine.clock import SystemClock
    from engine.equity.batch import recompute_equity
    from engine.state.value_store import ValueStore

    async def work() -> Any:
        async with _connected(rules) as (client, _, values):
            with _progress("equity of") as progress:
                task = progress.add_task("equity", total=None)
                return await recompute_equity(
                    ValueStore(client),
                    values,
                    SystemClock().now_ms(),
                    chunk=chunk,
                    on_progress=lambda n: progress.update(task, completed=n),
                )

    summary = _run(work)
    table = Table(title=f"Equity of {summary.customers:,} customers ({summary.seconds:.1f} s)")
    table.add_column("tier")
    table.add_column("customers", justify="right")
    table.add_column("share", justify="right")
    for tier, count in summary.per_tier.items():
        table.add_row(tier, f"{count:,}", f"{count / summary.customers:.1%}" if summary.customers else "-")
    console.print(table)
    if summary.customers:
        console.print(f"equity mean {summary.mean:.1f}, p10 {summary.p10:.1f}, median {summary.p50:.1f}, p90 {summary.p90:.1f}")


@clv_app.command("fit")
def clv_fit(rules: RulesDir = None, chunk: Chunk = 5_000) -> None:
    """Fit BG/NBD and Gamma-Gamma on every buyer's history and publish them as a new version."""
    from engine.clock import SystemClock
    from engine.equity.batch import fit_lifetime
    from engine.state.value_store import ValueStore

    async def work() -> Any:
        async with _connected(rules) as (client, _, _):
            with _progress("histories read:") as progress:
                task = progress.add_task("clv", total=None)
                return await fit_lifetime(
                    ValueStore(client),
                    SystemClock().now_ms(),
                    chunk=chunk,
                    on_progress=lambda n: progress.update(task, completed=n),
                )

    fit = _run(work)
    table = Table(title=f"Lifetime-value model v{fit.model.version}: {fit.model.customers:,} buyers ({fit.seconds:.1f} s)")
    for column in ("model", "parameters", "log-likelihood", "converged"):
        table.add_column(column)
    bg, gg = fit.purchases, fit.spend
    p, s = bg.params, gg.params
    table.add_row(
        "BG/NBD", f"r={p.r:.4g} α={p.alpha:.4g} a={p.a:.4g} b={p.b:.4g}", f"{bg.log_likelihood:,.1f}", str(bg.converged)
    )
    table.add_row("Gamma-Gamma", f"p={s.p:.4g} q={s.q:.4g} v={s.v:.4g}", f"{gg.log_likelihood:,.1f}", str(gg.converged))
    console.print(table)
    console.print("serving processes pick it up within 30 s")


@report_app.command("roi")
def report_roi(
    days: Annotated[int, typer.Option(min=1, max=366, help="Window: the last N days.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    rules: RulesDir = None,
) -> None:
    """ROI at four levels: campaign, brand, customer spend by tier, and equity against the holdout."""
    from engine.clock import SystemClock
    from engine.reports.roi_tables import render
    from engine.reports.run import run_roi

    async def work() -> Any:
        async with _connected(rules) as (client, ruleset, values):
            return await run_roi(client, ruleset, values, SystemClock().now_ms(), days)

    report = _run(work)
    if as_json:
        console.print_json(orjson.dumps(report.to_dict()).decode())
        return
    for table in render(report):
        console.print(table)


@report_app.command("arms")
def report_arms(
    days: Annotated[int, typer.Option(min=1, max=366, help="Window: the last N days.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    rules: RulesDir = None,
) -> None:
    """Experiment arms against the champion: acceptance and value per decision, with intervals."""
    from engine.clock import SystemClock
    from engine.reports.arms import render
    from engine.reports.run import run_arms

    async def work() -> Any:
        async with _connected(rules) as (client, _, _):
            return await run_arms(client, SystemClock().now_ms(), days)

    report = _run(work)
    if as_json:
        console.print_json(orjson.dumps(report.to_dict()).decode())
        return
    console.print(render(report))
