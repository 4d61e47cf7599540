"""Rule tests: run every case of the `*_test.yaml` files beside a rule set, and measure coverage.

Each case goes through the real, pure `decide` with the greedy policy, no response model, a
fixed clock and a seeded generator, so a case passes or fails the same way on every machine and
on every run. A case reads a customer the marketer described (see engine.rules.casefile); this
module turns it into the `CustomerState` the store would have read, by replaying the events
through the rule set's triggers as the store applies them.

Coverage answers the reviewer's question "what did nobody test?": treatments no case names in
an expectation, and eligibility conditions that no case saw both true and false.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.decision.events import effects_of
from engine.decision.pipeline import DecisionPlan, decide, eval_context
from engine.domain import CustomerState, DecisionRequest, Event
from engine.equity.facts import merge
from engine.errors import RuleProblem, RuleSetError
from engine.rules.casefile import Case, CaseFileLoad, LoadedCase, load_case_file
from engine.rules.loader import TEST_SUFFIXES, load_ruleset
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.triggers import TriggerEffects, effects_of_event, effects_of_timer
from engine.settings import Settings
from engine.state.keys import group_cap_field, treatment_cap_field

RECENT_LIMIT: int = Settings.model_fields["recent_limit"].default
"""Interactions the store keeps per customer: a case's history is bounded the same way."""
SEED = 0
_POLICY_NAMED = re.compile(r"contact policy `([^`]+)`")


# -- the customer a case describes -----------------------------------------------------------


class _Replay:
    """A customer's history built event by event, in time order, as the store would apply it."""

    def __init__(self, customer_id: str, rules: RuleSet) -> None:
        self.customer_id = customer_id
        self.rules = rules
        self.last: dict[str, dict[str, Any]] = {}
        self.recent: list[dict[str, Any]] = []
        self.topics: dict[str, int] = {}
        self.facts: dict[str, float] = {}
        self.flags: dict[str, int] = {}
        self.counters: dict[str, list[int]] = {}
        self.counter_windows: dict[str, int] = {}
        self.timers: dict[str, tuple[int, str]] = {}
        """Timer id -> (due ms, trigger id) of the timers still pending."""

    def event(self, event: Event, now_ms: int) -> None:
        assert event.ts is not None
        self.fire_timers(event.ts)
        fx = effects_of(event, self.rules.vocabulary, now_ms, equity=self.rules.equity)
        self.last[event.type] = {"ts": fx.ts, **event.attributes}
        self.recent.insert(0, fx.interaction)
        del self.recent[RECENT_LIMIT:]
        if fx.voice is not None:
            self.topics[f"{fx.voice[0]}:{fx.voice[1]}"] = fx.ts
        if fx.facts:
            self.facts = merge(self.facts, fx.facts)
        rules = self.rules
        self.apply(effects_of_event(event, fx.ts, rules.triggers_by_event, rules.timer_cancels, lookbacks=rules.lookbacks))

    def apply(self, fx: TriggerEffects) -> None:
        self.flags.update(fx.flags_set)
        for name in fx.flags_clear:
            self.flags.pop(name, None)
        for name, ts, window_ms, _cause in fx.increments:
            stamps = [s for s in self.counters.get(name, []) if s >= ts - window_ms]
            self.counters[name] = [*stamps, ts]
            self.counter_windows[name] = window_ms
        for watched in fx.thresholds:
            # As the store's count script does (engine.state.scripts.COUNT_OCCURRENCE).
            since = (fx.now_ms if fx.now_ms is not None else watched.ts) - watched.window_ms
            stamps = [s for s in [*self.counters.get(watched.counter, []), watched.ts] if s >= since]
            self.counters[watched.counter] = stamps
            self.counter_windows[watched.counter] = watched.window_ms
            if watched.ts >= since and len(stamps) == watched.at:
                self.flags.update(watched.then.flags_set)
                for name in watched.then.flags_clear:
                    self.flags.pop(name, None)
        for tid, until in fx.timers_cancel.items():
            if tid in self.timers and self.timers[tid][0] <= until:  # as the store's SCHEDULE_TIMERS
                del self.timers[tid]
        for tid, (due, payload) in fx.timers_set.items():
            self.timers[tid] = (due, payload["trigger"])

    def fire_timers(self, until_ms: int) -> None:
        """Fire every pending timer due by `until_ms`, earliest first."""
        for tid, (due, trigger_id) in sorted(self.timers.items(), key=lambda item: item[1][0]):
            if due > until_ms:
                break
            del self.timers[tid]
            trigger = self.rules.triggers_by_id.get(trigger_id)
            if trigger is not None:
                self.apply(effects_of_timer(trigger, self.customer_id, due))

    def finish(self, now_ms: int) -> None:
        self.fire_timers(now_ms)
        for name, window in self.counter_windows.items():
            # The store lets a counter's key expire one window after its last increment.
            if self.counters[name] and self.counters[name][-1] + window <= now_ms:
                self.counters[name] = []


def _caps(case: Case, rules: RuleSet) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The day, week and total counters, keyed as the store keys them."""
    out: list[dict[str, int]] = []
    for window in ("day", "week", "total"):
        counts: dict[str, int] = {}
        for key, n in getattr(case.customer.caps, window).items():
            treatment = rules.by_id.get(key)
            if treatment is not None:
                counts[treatment_cap_field(key)] = counts.get(treatment_cap_field(key), 0) + n
                key = treatment.group
            counts[group_cap_field(key)] = counts.get(group_cap_field(key), 0) + n
        out.append(counts)
    return out[0], out[1], out[2]


def build_state(case: Case, rules: RuleSet, now_ms: int) -> CustomerState:
    """The state the store would hold for the customer the case describes, at `now_ms`."""
    customer = case.customer
    replay = _Replay(case.request.customer_id, rules)
    # Oldest first; a stable sort keeps events of the same age in the order they are written.
    for i, ev in sorted(enumerate(customer.events), key=lambda item: -item[1].ago):
        event = Event(f"case-event-{i}", case.request.customer_id, ev.type, now_ms - ev.ago, ev.channel, dict(ev.attributes))
        replay.event(event, now_ms)
    replay.finish(now_ms)
    flags = dict(replay.flags)
    flags.update({name: now_ms + left for name, left in customer.flags.items()})
    counters = {name: list(stamps) for name, stamps in replay.counters.items() if stamps}
    for name, ages in customer.counters.items():
        counters[name] = sorted([*counters.get(name, []), *(now_ms - age for age in ages)])
    day, week, total = _caps(case, rules)
    cart = {sku: {"qty": item.qty, "price": item.price, "name": item.name or sku} for sku, item in customer.cart.items()}
    return CustomerState(
        customer_id=case.request.customer_id,
        profile=dict(customer.profile),
        cart=cart,
        last=replay.last,
        recent=replay.recent,
        caps_day=day,
        caps_week=week,
        caps_total=total,
        topics=replay.topics,
        flags=flags,
        counters=counters,
        facts=replay.facts,
    )


def decision_request(case: Case) -> DecisionRequest:
    r = case.request
    return DecisionRequest(r.customer_id, r.channel, r.placement, dict(r.context), r.limit, r.event, explain=True)


# -- what happened to each treatment, and the expectations ---------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One decision, seen from the treatments' side."""

    plan: DecisionPlan
    request: DecisionRequest
    rules: RuleSet

    @property
    def answer(self) -> list[str]:
        return [t.id for t in self.plan.treatments]

    def verdict(self, tid: str) -> tuple[str, str] | None:
        for v in self.plan.verdicts:
            if v.treatment_id == tid:
                return v.stage, v.reason
        return None

    def policy(self, tid: str) -> str | None:
        """The contact policy that held a treatment back, from the verdict's data when it has
        any, else from its words."""
        for v in self.plan.verdicts:
            if v.treatment_id == tid:
                detail = getattr(v, "detail", None) or {}
                if isinstance(detail.get("policy"), str):
                    return str(detail["policy"])
                named = _POLICY_NAMED.search(v.reason)
                return named.group(1) if named else None
        return None

    def stage(self, tid: str) -> str | None:
        found = self.verdict(tid)
        return found[0] if found else None

    def candidate(self, tid: str) -> bool:
        return any(t.id == tid for t in self.rules.candidates(self.request.channel, self.request.placement))

    def what(self, tid: str) -> str:
        """What became of a treatment, in the words a failure message needs."""
        for i, t in enumerate(self.plan.treatments):
            if t.id == tid:
                shown = " as a fallback" if self.plan.fallback else ""
                return f"it was chosen{shown} (#{i + 1} of {len(self.plan.treatments)}, score {t.score:.4g})"
        found = self.verdict(tid)
        if found is not None:
            return f"it was dropped at {found[0]}: {found[1]}"
        t = self.rules.by_id[tid]
        if not t.available(self.request.channel, self.request.placement):
            return _not_offered(t, self.request)
        if tid in self.rules.arbitration.fallback:
            return "it is a fallback, shown only when nothing else is, and something else was"
        return "it was neither chosen nor dropped with a reason"


def _not_offered(t: CompiledTreatment, request: DecisionRequest) -> str:
    if request.channel not in t.channels:
        return f"it is not offered on channel `{request.channel}` (its channels: {', '.join(sorted(t.channels))})"
    where = f"placement `{request.placement}`" if request.placement else "a request without a placement"
    return f"it is not offered at {where} (its placements: {', '.join(sorted(t.placements))})"


def _listed(ids: Sequence[str]) -> str:
    return f"[{', '.join(ids)}]" if ids else "empty"


def check_expectations(case: Case, outcome: Outcome) -> list[str]:
    """One message per unmet expectation: what was expected, and what happened instead."""
    e = case.expect
    answer = outcome.answer
    fails: list[str] = []
    for tid in e.chosen:
        if tid not in answer:
            fails.append(f"expected `{tid}` to be chosen, but {outcome.what(tid)}")
    if e.first is not None and answer[:1] != [e.first]:
        top = f"the answer starts with `{answer[0]}`" if answer else "the answer is empty"
        fails.append(f"expected `{e.first}` first, but {top}; {outcome.what(e.first)}")
    if e.exactly is not None and answer != e.exactly:
        missing = "".join(f"; `{tid}`: {outcome.what(tid)}" for tid in e.exactly if tid not in answer)
        fails.append(f"expected exactly {_listed(e.exactly)}, but the answer is {_listed(answer)}{missing}")
    for tid in e.not_chosen:
        if tid in answer:
            fails.append(f"expected `{tid}` not to be chosen, but {outcome.what(tid)}")
    for tid in e.eligible:
        if not outcome.candidate(tid) or outcome.stage(tid) == "eligibility":
            fails.append(f"expected `{tid}` to be eligible, but {outcome.what(tid)}")
    for tid in e.not_eligible:
        if outcome.stage(tid) != "eligibility":
            fails.append(f"expected `{tid}` not to be eligible, but {outcome.what(tid)}")
    fails.extend(_dropped(outcome, "capped", e.capped, ("cap", "policy")))
    fails.extend(_dropped(outcome, "suppressed", e.suppressed, ("suppression",)))
    for tid in e.outranked:
        if outcome.stage(tid) != "arbitration":
            fails.append(f"expected `{tid}` to be outranked, but {outcome.what(tid)}")
    if e.fallback is True and not outcome.plan.fallback:
        fails.append(f"expected the fallback, but the answer is {_listed(answer)}")
    if e.fallback is False and outcome.plan.fallback:
        fails.append(f"expected no fallback, but nothing else survived and the answer is the fallback {_listed(answer)}")
    value = outcome.plan.value
    if e.tier is not None and (value is None or value.tier != e.tier):
        got = f"`{value.tier}` (equity {value.equity:.1f})" if value is not None else "unknown"
        fails.append(f"expected equity tier `{e.tier}`, but the customer is in {got}")
    return fails


def _dropped(outcome: Outcome, word: str, expected: dict[str, str | None], stages: Sequence[str]) -> list[str]:
    fails = []
    for tid, policy in expected.items():
        found = outcome.verdict(tid)
        if found is None or found[0] not in stages or (policy is not None and outcome.policy(tid) != policy):
            by = f" by `{policy}`" if policy else ""
            fails.append(f"expected `{tid}` to be {word}{by}, but {outcome.what(tid)}")
    return fails


# -- results and coverage -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    file: str
    line: int
    failures: tuple[str, ...]
    answer: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "where": self.where,
            "passed": self.passed,
            "failures": list(self.failures),
            "answer": list(self.answer),
        }


@dataclass(frozen=True, slots=True)
class ConditionCoverage:
    treatment_id: str
    condition: str
    true: int
    false: int

    @property
    def gap(self) -> str | None:
        """Why this condition is not fully tested, or None when cases saw it both ways."""
        if self.true and self.false:
            return None
        if self.true:
            return "only ever true"
        if self.false:
            return "only ever false"
        return "never evaluated: no case offers it"

    def to_dict(self) -> dict[str, Any]:
        return {
            "treatment_id": self.treatment_id,
            "condition": self.condition,
            "true": self.true,
            "false": self.false,
            "gap": self.gap,
        }


@dataclass(frozen=True, slots=True)
class Coverage:
    treatments: tuple[str, ...]
    uncovered: tuple[str, ...]
    """Treatments no case names in an expectation."""
    conditions: tuple[ConditionCoverage, ...]

    @property
    def gaps(self) -> tuple[ConditionCoverage, ...]:
        return tuple(c for c in self.conditions if c.gap is not None)

    @property
    def complete(self) -> bool:
        return not self.uncovered and not self.gaps

    def to_dict(self) -> dict[str, Any]:
        return {
            "treatments": len(self.treatments),
            "uncovered": list(self.uncovered),
            "conditions": [c.to_dict() for c in self.conditions],
            "complete": self.complete,
        }


@dataclass
class CoverageTally:
    """Running coverage while the cases run."""

    named: set[str] = field(default_factory=set)
    seen: dict[str, list[int]] = field(default_factory=dict)

    def evaluate(self, rules: RuleSet, state: CustomerState, request: DecisionRequest, now_ms: int) -> None:
        value = rules.value_model.evaluate(state.facts, now_ms)
        ctx = eval_context(state, request, now_ms, value, rules.lookbacks)
        for t in rules.candidates(request.channel, request.placement):
            if t.eligibility is not None:
                counts = self.seen.setdefault(t.id, [0, 0])
                counts[0 if t.eligibility(ctx) else 1] += 1

    def coverage(self, rules: RuleSet) -> Coverage:
        ids = tuple(t.id for t in rules.treatments)
        conditions = tuple(
            ConditionCoverage(t.id, t.eligibility.source, *self.seen.get(t.id, (0, 0)))
            for t in rules.treatments
            if t.eligibility is not None
        )
        return Coverage(ids, tuple(tid for tid in ids if tid not in self.named), conditions)


@dataclass(frozen=True, slots=True)
class RuleTestReport:
    directory: str
    rules_version: str | None
    files: tuple[str, ...]
    cases: tuple[CaseResult, ...]
    problems: tuple[RuleProblem, ...]
    coverage: Coverage | None

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.passed)

    @property
    def passed(self) -> bool:
        return not self.problems and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "rules_version": self.rules_version,
            "passed": self.passed,
            "files": list(self.files),
            "cases": [c.to_dict() for c in self.cases],
            "errors": [{"where": str(p.pos) if p.pos else None, "message": p.message, "hint": p.hint} for p in self.problems],
            "coverage": self.coverage.to_dict() if self.coverage is not None else None,
        }


def case_files(directory: Path) -> list[Path]:
    """Every test file under `directory`, sorted so reports list them in a stable order."""
    return [p for p in sorted(directory.rglob("*")) if p.is_file() and p.name.endswith(TEST_SUFFIXES)]


def run_case(loaded: LoadedCase, rules: RuleSet, tally: CoverageTally | None = None) -> CaseResult:
    case, now = loaded.case, loaded.now_ms
    state = build_state(case, rules, now)
    request = decision_request(case)
    plan = decide(state, request, rules, now, model=None, rng=np.random.default_rng(SEED))
    if tally is not None:
        tally.named.update(case.expect.treatment_ids())
        tally.evaluate(rules, state, request, now)
    failures = check_expectations(case, Outcome(plan, request, rules))
    return CaseResult(case.name, loaded.file, loaded.line, tuple(failures), tuple(t.id for t in plan.treatments))


def run_rule_tests(directory: Path) -> RuleTestReport:
    """Load the rule set under `directory`, run every case of its `*_test.yaml` files, and report.

    A rule set that does not load, a test file with errors, or no test file at all fails the
    run; the problems say where. The well-formed cases of a file still run beside a bad one,
    unless the file's own keys (`now`, `cases`) are refused.
    """
    directory = Path(directory)
    try:
        rules = load_ruleset(directory)
    except RuleSetError as exc:
        return RuleTestReport(str(directory), None, (), (), tuple(exc.problems), None)
    paths = case_files(directory)
    problems: list[RuleProblem] = []
    if not paths:
        problems.append(RuleProblem(None, f"no test files (*{TEST_SUFFIXES[0]}) in {directory}"))
    loads: list[CaseFileLoad] = [load_case_file(p, rules) for p in paths]
    tally = CoverageTally()
    results: list[CaseResult] = []
    for load in loads:
        problems.extend(load.problems)
        results.extend(run_case(loaded, rules, tally) for loaded in load.cases)
    return RuleTestReport(
        str(directory), rules.version, tuple(load.file for load in loads), tuple(results), tuple(problems), tally.coverage(rules)
    )


# -- the terminal ----------------------------------------------------------------------------


def _cases(report: RuleTestReport) -> Table:
    table = Table(title=f"Rule tests in {report.directory}", title_justify="left")
    table.add_column("result")
    table.add_column("case")
    table.add_column("where", style="dim")
    for c in report.cases:
        mark = Text("PASS", style="green") if c.passed else Text("FAIL", style="bold red")
        detail = Text(c.name)
        for failure in c.failures:
            detail.append("\n  " + failure, style="red")
        table.add_row(mark, detail, c.where)
    return table


def _coverage(coverage: Coverage) -> Table:
    table = Table(title="Coverage", title_justify="left")
    table.add_column("treatment")
    table.add_column("in a case")
    table.add_column("eligibility")
    table.add_column("true", justify="right")
    table.add_column("false", justify="right")
    conditions = {c.treatment_id: c for c in coverage.conditions}
    uncovered = set(coverage.uncovered)
    for tid in coverage.treatments:
        named = Text("no", style="red") if tid in uncovered else Text("yes", style="green")
        c = conditions.get(tid)
        if c is None:
            table.add_row(tid, named, Text("(none)", style="dim"), "", "")
            continue
        condition = Text(c.condition)
        if c.gap is not None:
            condition.append(f"  ({c.gap})", style="yellow")
        table.add_row(tid, named, condition, str(c.true), str(c.false))
    return table


def _summary(report: RuleTestReport) -> Text:
    passed = sum(c.passed for c in report.cases)
    parts = [f"{passed} passed", f"{len(report.failed)} failed"]
    if report.problems:
        parts.append(f"{len(report.problems)} error(s)")
    text = Text(", ".join(parts), style="bold green" if report.passed else "bold red")
    cov = report.coverage
    if cov is not None:
        n = len(cov.treatments)
        both = len(cov.conditions) - len(cov.gaps)
        text.append(
            f"; {n - len(cov.uncovered)} of {n} treatments in a case, "
            f"{both} of {len(cov.conditions)} conditions seen true and false",
            style="default",
        )
    return text


def render(report: RuleTestReport) -> list[RenderableType]:
    """Errors first (they stop cases from running), then every case, coverage, and a summary line."""
    out: list[RenderableType] = []
    if report.problems:
        out.append(Group(*(Text(p.render(), style="red") for p in report.problems)))
    if report.cases:
        out.append(_cases(report))
    if report.coverage is not None and report.cases:
        out.append(_coverage(report.coverage))
    out.append(_summary(report))
    return out


def rule_tests_gate(rules: RuleSet, directory: Path) -> list[str]:
    """The test cases as a reload gate (engine.rules.registry.Gate): one message per failure.

    A directory without test files passes: tests are how marketers opt in to the gate.
    """
    if not case_files(directory):
        return []
    report = run_rule_tests(directory)
    messages = [p.render() for p in report.problems]
    messages += [f"{c.where}: case `{c.name}` failed: {'; '.join(c.failures)}" for c in report.failed]
    return messages
