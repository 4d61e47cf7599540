"""What a rule set would do if it went live: its treatments run over many customers, no side effects.

For each treatment the simulation reports

* the share of customers whose condition holds (`match_share`, over everyone) and the share for
  whom it is eligible here (`eligible_share`: condition true and the treatment offered on this
  channel and placement), both from the vectorised conditions (engine.rules.vectorised) over
  every customer;
* the share to whom the real decision pipeline (`engine.decision.pipeline.decide`, pure) would
  show it (`chosen_share`), caps, contact policies and arbitration included, and the expected
  value: the mean over customers of propensity × value where it is chosen. The pipeline runs
  for every customer up to `decision_sample`, and for a seeded random sample of that many
  beyond (the report says so);
* against a baseline rule set, the same figures for the baseline and their differences;
* rules that match no customer, or every customer.

Nothing is written anywhere: `decide` returns the writes a decision would make, and they are
dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.decision.pipeline import decide, eval_context
from engine.domain import DecisionRequest
from engine.equity.indices import INDEX_NAMES
from engine.equity.value import ValueModel
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.vectorised import Frame, column, evaluate_all, vectorise
from engine.rules.vocabulary import EvalContext
from engine.simulation.customers import CustomerBatch

DEFAULT_DECISION_SAMPLE = 100_000
PROGRESS_STEP = 1_000

Change = Literal["same", "changed", "added", "removed"]


@dataclass(frozen=True, slots=True)
class Shares:
    """One rule set's figures for one treatment."""

    condition: str | None
    available: bool
    match_share: float
    eligible_share: float
    chosen_share: float
    expected_value: float


@dataclass(frozen=True, slots=True)
class TreatmentResult:
    id: str
    kind: str
    group: str
    current: Shares | None
    """None when the simulated rules no longer have this treatment."""
    baseline: Shares | None
    """None without a baseline, or when the baseline lacks this treatment."""
    change: Change | None
    """How it differs from the baseline (None without one)."""
    flag: Literal["never", "always"] | None
    """The condition matches no customer, or every customer."""
    fallback: str | None
    """Why its condition was evaluated customer by customer, if it was."""

    def _delta(self, name: str) -> float | None:
        if self.change is None:
            return None
        now = getattr(self.current, name) if self.current else 0.0
        before = getattr(self.baseline, name) if self.baseline else 0.0
        return float(now - before)

    @property
    def eligible_delta(self) -> float | None:
        return self._delta("eligible_share")

    @property
    def chosen_delta(self) -> float | None:
        return self._delta("chosen_share")

    @property
    def value_delta(self) -> float | None:
        return self._delta("expected_value")

    def to_dict(self) -> dict[str, Any]:
        def shares(s: Shares | None) -> dict[str, Any] | None:
            return None if s is None else {k: getattr(s, k) for k in Shares.__slots__}

        return {
            "id": self.id,
            "kind": self.kind,
            "group": self.group,
            "current": shares(self.current),
            "baseline": shares(self.baseline),
            "change": self.change,
            "eligible_delta": self.eligible_delta,
            "chosen_delta": self.chosen_delta,
            "value_delta": self.value_delta,
            "flag": self.flag,
            "fallback": self.fallback,
        }


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What the decisions of one rule set came to, over the customers decided for."""

    nothing_share: float
    """Share of decisions that showed nothing at all."""
    fallback_share: float
    """Share answered by the fallback treatments only."""
    scalar_rows: int
    """Customer × condition evaluations the vectorised conditions handed to the scalar evaluator."""
    eligibility_seconds: float
    decision_seconds: float


@dataclass(frozen=True, slots=True)
class SimulationReport:
    rules_version: str
    baseline_version: str | None
    channel: str
    placement: str | None
    now_ms: int
    customers: int
    decided: int
    """Customers the decision pipeline ran for (all of them, or a sample)."""
    treatments: tuple[TreatmentResult, ...]
    outcomes: Outcomes
    baseline_outcomes: Outcomes | None = None

    @property
    def sampled(self) -> bool:
        return self.decided < self.customers

    @property
    def fallbacks(self) -> list[TreatmentResult]:
        return [t for t in self.treatments if t.fallback is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules_version": self.rules_version,
            "baseline_version": self.baseline_version,
            "channel": self.channel,
            "placement": self.placement,
            "now_ms": self.now_ms,
            "customers": self.customers,
            "decided": self.decided,
            "sampled": self.sampled,
            "treatments": [t.to_dict() for t in self.treatments],
            "outcomes": _outcomes_dict(self.outcomes),
            "baseline_outcomes": _outcomes_dict(self.baseline_outcomes),
        }


def _outcomes_dict(o: Outcomes | None) -> dict[str, Any] | None:
    return None if o is None else {k: getattr(o, k) for k in Outcomes.__slots__}


# --- one rule set over the batch ---------------------------------------------------------------


def value_columns(values: ValueModel, facts: np.ndarray, now_ms: int) -> dict[str, np.ndarray]:
    """`value.*` for every customer, as `CustomerValue.condition_fields` gives them one by one
    (without a lifetime model, so `value.clv` and `value.p_alive` stay absent)."""
    if values.lifetime is not None:
        raise ValueError("value columns are computed without a lifetime model, as the rule set's own value model is")
    indices, equity, ranks = values.evaluate_many(facts, now_ms, np.full(len(facts), math.nan))
    tiers = np.fromiter(values.tier_names, dtype=object, count=len(values.tier_names))[ranks]
    return {"value.equity": equity, "value.tier": tiers, **{f"value.{name}": indices[:, j] for j, name in enumerate(INDEX_NAMES)}}


def context_columns(context: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """The request's context, the same for every customer."""
    out = {}
    for name, value in context.items():
        if column([value]).dtype == np.float64:
            out[f"context.{name}"] = np.full(n, math.nan if value is None else float(value))
        else:
            filled = np.empty(n, dtype=object)
            filled.fill(value)
            out[f"context.{name}"] = filled
    return out


@dataclass(slots=True)
class _Pass:
    """One rule set's figures over the batch, by treatment id."""

    match: dict[str, int] = field(default_factory=dict)
    eligible: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, int] = field(default_factory=dict)
    value: dict[str, float] = field(default_factory=dict)
    nothing: int = 0
    fallbacks: int = 0
    scalar_rows: int = 0
    eligibility_seconds: float = 0.0
    decision_seconds: float = 0.0


def _request(channel: str, placement: str | None, context: Mapping[str, Any], customer_id: str = "") -> DecisionRequest:
    return DecisionRequest(customer_id=customer_id, channel=channel, placement=placement, context=dict(context))


def _eligibility(rules: RuleSet, batch: CustomerBatch, request: DecisionRequest, now_ms: int, out: _Pass) -> None:
    started = time.perf_counter()
    n = len(batch)
    values = rules.value_model

    def context_of(row: int) -> EvalContext:
        state = batch.state(row)
        return eval_context(state, request, now_ms, values.evaluate(state.facts, now_ms), batch.lookbacks)

    columns = {**batch.columns, **value_columns(values, batch.facts, now_ms), **context_columns(request.context, n)}
    frame = Frame(n, columns, now_ms, context_of, batch.inexact)
    conditional = [t for t in rules.treatments if t.eligibility is not None]
    compiled = [vectorise(t.eligibility, rules.vocabulary) for t in conditional]  # type: ignore[arg-type]
    results = dict(zip((t.id for t in conditional), evaluate_all(compiled, frame), strict=True))
    for t, vc in zip(conditional, compiled, strict=True):
        if vc.fallback is not None:
            out.fallback[t.id] = vc.fallback
    for t in rules.treatments:
        result = results.get(t.id)
        out.match[t.id] = n if result is None else int(result.matches.sum())
        out.eligible[t.id] = out.match[t.id] if t.available(request.channel, request.placement) else 0
        out.scalar_rows += 0 if result is None else result.scalar_rows
    out.eligibility_seconds = time.perf_counter() - started


def _decisions(
    rules: RuleSet,
    batch: CustomerBatch,
    rows: np.ndarray,
    request: DecisionRequest,
    now_ms: int,
    seed: int,
    out: _Pass,
    progress: Callable[[int], None] | None,
) -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    by_id = rules.by_id
    out.chosen = dict.fromkeys(by_id, 0)
    out.value = dict.fromkeys(by_id, 0.0)
    for k, row in enumerate(rows.tolist(), start=1):
        customer = DecisionRequest(str(batch.ids[row]), request.channel, request.placement, request.context)
        plan = decide(batch.state(row), customer, rules, now_ms, rng=rng)
        out.nothing += not plan.treatments
        out.fallbacks += plan.fallback
        for chosen in plan.treatments:
            out.chosen[chosen.id] += 1
            out.value[chosen.id] += chosen.propensity * by_id[chosen.id].value
        if progress is not None and k % PROGRESS_STEP == 0:
            progress(PROGRESS_STEP)
    if progress is not None and len(rows) % PROGRESS_STEP:
        progress(len(rows) % PROGRESS_STEP)
    out.decision_seconds = time.perf_counter() - started


def _run(
    rules: RuleSet,
    batch: CustomerBatch,
    rows: np.ndarray,
    request: DecisionRequest,
    now_ms: int,
    seed: int,
    progress: Callable[[int], None] | None,
) -> _Pass:
    out = _Pass()
    _eligibility(rules, batch, request, now_ms, out)
    if progress is not None:
        progress(len(batch))
    _decisions(rules, batch, rows, request, now_ms, seed, out, progress)
    return out


# --- the simulation ----------------------------------------------------------------------------


def decision_rows(customers: int, decision_sample: int, seed: int) -> np.ndarray:
    """Every row, or a seeded random sample of `decision_sample` of them, in order."""
    if customers <= decision_sample:
        return np.arange(customers)
    return np.sort(np.random.default_rng(seed).choice(customers, size=decision_sample, replace=False))


def planned_work(customers: int, *, baseline: bool, decision_sample: int = DEFAULT_DECISION_SAMPLE) -> int:
    """The total the `progress` callback of `simulate` counts up to."""
    return (customers + min(customers, decision_sample)) * (2 if baseline else 1)


def simulate(
    rules: RuleSet,
    customers: CustomerBatch,
    *,
    baseline: RuleSet | None = None,
    channel: str,
    placement: str | None = None,
    now_ms: int,
    progress: Callable[[int], None] | None = None,
    context: Mapping[str, Any] | None = None,
    decision_sample: int = DEFAULT_DECISION_SAMPLE,
    seed: int = 0,
) -> SimulationReport:
    """Run `rules` (and `baseline`, if given) over `customers` for a request on `channel` and
    `placement` with `context`, at `now_ms`.

    `progress` is called with how much work was just done: the customers whose eligibility was
    evaluated, then the decisions made; `planned_work` is the total. Both rule sets decide for
    the same customers with the same random stream, so their differences are not sampling noise.
    """
    request = _request(channel, placement, context or {})
    rows = decision_rows(len(customers), decision_sample, seed)
    current = _run(rules, customers, rows, request, now_ms, seed, progress)
    before = _run(baseline, customers, rows, request, now_ms, seed, progress) if baseline is not None else None
    return SimulationReport(
        rules_version=rules.version,
        baseline_version=baseline.version if baseline is not None else None,
        channel=channel,
        placement=placement,
        now_ms=now_ms,
        customers=len(customers),
        decided=len(rows),
        treatments=tuple(_results(rules, current, baseline, before, request, len(customers), len(rows))),
        outcomes=_outcomes(current, len(rows)),
        baseline_outcomes=_outcomes(before, len(rows)) if before is not None else None,
    )


def _share(count: float, total: int) -> float:
    return count / total if total else 0.0


def _outcomes(p: _Pass, decided: int) -> Outcomes:
    return Outcomes(
        _share(p.nothing, decided), _share(p.fallbacks, decided), p.scalar_rows, p.eligibility_seconds, p.decision_seconds
    )


def _shares(t: CompiledTreatment, p: _Pass, request: DecisionRequest, n: int, decided: int) -> Shares:
    return Shares(
        condition=t.eligibility.source if t.eligibility is not None else None,
        available=t.available(request.channel, request.placement),
        match_share=_share(p.match[t.id], n),
        eligible_share=_share(p.eligible[t.id], n),
        chosen_share=_share(p.chosen[t.id], decided),
        expected_value=_share(p.value[t.id], decided),
    )


def _change(now: CompiledTreatment | None, before: CompiledTreatment | None) -> Change:
    if now is None:
        return "removed"
    if before is None:
        return "added"

    def shape(t: CompiledTreatment) -> tuple[Any, ...]:
        source = t.eligibility.source if t.eligibility is not None else None
        weights = tuple((c.source, w) for c, w in t.context_weights)
        return (source, weights, t.channels, t.placements, t.group, t.value, t.lever, t.prior_alpha, t.prior_beta)

    caps = ("cap_per_day", "cap_per_week", "cap_total")
    same = shape(now) == shape(before) and all(getattr(now, c) == getattr(before, c) for c in caps)
    return "same" if same else "changed"


def _results(
    rules: RuleSet,
    current: _Pass,
    baseline: RuleSet | None,
    before: _Pass | None,
    request: DecisionRequest,
    n: int,
    decided: int,
) -> Iterator[TreatmentResult]:
    old = baseline.by_id if baseline is not None else {}
    ids = [t.id for t in rules.treatments] + [i for i in old if i not in rules.by_id]
    for tid in ids:
        t, b = rules.by_id.get(tid), old.get(tid)
        either = t or b
        assert either is not None
        flag: Literal["never", "always"] | None = None
        if t is not None and t.eligibility is not None and n:
            flag = "never" if current.match[tid] == 0 else "always" if current.match[tid] == n else None
        yield TreatmentResult(
            id=tid,
            kind=either.kind,
            group=either.group,
            current=_shares(t, current, request, n, decided) if t is not None else None,
            baseline=_shares(b, before, request, n, decided) if b is not None and before is not None else None,
            change=_change(t, b) if baseline is not None else None,
            flag=flag,
            fallback=current.fallback.get(tid),
        )


# --- presentation ------------------------------------------------------------------------------


@contextmanager
def progress_bar(
    total: int, *, console: Console | None = None, description: str = "simulating", transient: bool = True
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; the callback it yields advances it (pass it as `progress`). A
    transient bar disappears when done."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=transient) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _delta(x: float | None, *, money: bool = False) -> Text:
    if x is None:
        return Text("")
    if abs(x) < (5e-4 if money else 5e-5):
        return Text("=", style="dim")
    shown = f"{x:+,.2f}" if money else f"{x * 100:+.1f} pt"
    return Text(shown, style="green" if x > 0 else "red")


def render(report: SimulationReport) -> list[RenderableType]:
    """The report as rich renderables: a heading, the table by treatment, and notes."""
    where = report.channel + (f" / {report.placement}" if report.placement else "")
    heading = Text.assemble(
        ("Simulation ", "bold"),
        f"of rules {report.rules_version} over {report.customers:,} customers on {where}",
        f" against baseline {report.baseline_version}" if report.baseline_version else "",
    )
    has_baseline = report.baseline_version is not None
    table = Table(show_edge=False, header_style="bold")
    for name, justify in [("treatment", "left"), ("kind", "left"), ("eligible", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if has_baseline:
        table.add_column("Δ", justify="right")
    table.add_column("chosen", justify="right")
    if has_baseline:
        table.add_column("Δ", justify="right")
    table.add_column("exp. value", justify="right")
    table.add_column("notes")
    for t in report.treatments:
        cur = t.current
        cells: list[RenderableType] = [t.id, t.kind, _pct(cur.eligible_share if cur else 0.0)]
        if has_baseline:
            cells.append(_delta(t.eligible_delta))
        cells.append(_pct(cur.chosen_share if cur else 0.0))
        if has_baseline:
            cells.append(_delta(t.chosen_delta))
        cells.append(f"{cur.expected_value:,.2f}" if cur else "")
        cells.append(_notes(t))
        table.add_row(*cells)
    return [heading, table, *_footer(report)]


def _notes(t: TreatmentResult) -> Text:
    notes = Text()
    if t.change in ("added", "removed", "changed"):
        notes.append(t.change + " ", style="cyan")
    if t.current is not None and not t.current.available:
        notes.append("not offered here ", style="dim")
    if t.flag == "never":
        notes.append("matches no customer ", style="yellow")
    elif t.flag == "always":
        notes.append("matches every customer ", style="yellow")
    if t.fallback is not None:
        notes.append("per customer", style="magenta")
    return notes


def _footer(report: SimulationReport) -> Sequence[RenderableType]:
    o = report.outcomes
    lines = [
        Text(
            f"Decisions: {report.decided:,} customers"
            + (f" (a random sample of {report.customers:,})" if report.sampled else "")
            + f"; nothing shown to {o.nothing_share:.1%}, fallbacks only to {o.fallback_share:.1%}."
        ),
        Text(
            f"Eligibility of every customer took {o.eligibility_seconds:.2f} s, decisions {o.decision_seconds:.2f} s"
            + (f"; {o.scalar_rows:,} customer conditions were evaluated one by one." if o.scalar_rows else "."),
            style="dim",
        ),
    ]
    for t in report.fallbacks:
        source = t.current.condition if t.current else ""
        lines.append(Text(f"`{t.id}`: `{source}` was evaluated customer by customer: {t.fallback}", style="magenta"))
    return lines
