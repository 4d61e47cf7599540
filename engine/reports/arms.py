"""Experiment arms compared: does the challenger (or the engine, against its holdout) do better?

Per arm — `champion`, `holdout`, `challenger:<id>`, as each decision record names it — the
report gives customers, decisions, shows, acceptances, the acceptance rate (acceptances per
show) with a Wilson 95 % interval, and the value per decision (purchase values joined to the
arm's decisions, zero for a decision that earned nothing). Against the champion, each other arm
gets the difference in acceptance rate (normal-approximation interval for two proportions) and
in value per decision (Welch's t interval, engine.reports.welch). Decisions logged before arms
were recorded count as `unassigned`.

Attribution follows the ROI report: feedback belongs to the decision and treatment it names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from engine.reports.welch import Difference, welch_difference

Z95 = 1.959963984540054
UNASSIGNED = "unassigned"
CHAMPION = "champion"


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float | None, float | None]:
    if trials == 0:
        return None, None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference(a: tuple[int, int], b: tuple[int, int], z: float = Z95) -> tuple[float | None, float | None, float | None]:
    """(difference, low, high) of success rates a − b, each given as (successes, trials)."""
    (sa, na), (sb, nb) = a, b
    if na == 0 or nb == 0:
        return None, None, None
    pa, pb = sa / na, sb / nb
    half = z * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    return pa - pb, pa - pb - half, pa - pb + half


@dataclass(frozen=True, slots=True)
class ArmRow:
    arm: str
    customers: int
    decisions: int
    shows: int
    accepts: int
    revenue: float
    acceptance_rate: float | None
    acceptance_low: float | None
    acceptance_high: float | None
    value_per_decision: float | None
    rate_vs_champion: tuple[float | None, float | None, float | None] | None
    value_vs_champion: Difference | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "arm",
                "customers",
                "decisions",
                "shows",
                "accepts",
                "revenue",
                "acceptance_rate",
                "acceptance_low",
                "acceptance_high",
                "value_per_decision",
            )
        }
        if self.rate_vs_champion is not None:
            d, lo, hi = self.rate_vs_champion
            out["acceptance_rate_vs_champion"] = {"estimate": d, "ci_low": lo, "ci_high": hi}
        if self.value_vs_champion is not None:
            v = self.value_vs_champion
            out["value_per_decision_vs_champion"] = {"estimate": v.estimate, "ci_low": v.ci_low, "ci_high": v.ci_high}
        return out


@dataclass(frozen=True, slots=True)
class ArmsReport:
    since_ms: int
    until_ms: int
    arms: tuple[ArmRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"window": {"since_ms": self.since_ms, "until_ms": self.until_ms}, "arms": [a.to_dict() for a in self.arms]}


@dataclass
class _Tally:
    customers: set[str]
    decisions: dict[str, float]
    shows: int = 0


def arms_report(
    decisions: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]], *, since_ms: int, until_ms: int
) -> ArmsReport:
    arms: dict[str, _Tally] = {}
    arm_of: dict[str, str] = {}
    shown: dict[str, set[str]] = {}
    for d in decisions:
        ts, decision_id = d.get("ts"), d.get("decision_id")
        if not isinstance(ts, int) or not since_ms <= ts <= until_ms or not isinstance(decision_id, str):
            continue
        arm = str(d.get("arm") or UNASSIGNED)
        tally = arms.setdefault(arm, _Tally(set(), {}))
        tally.customers.add(str(d.get("customer_id")))
        tally.decisions[decision_id] = 0.0
        ids = {str(t.get("id")) for t in d.get("treatments") or () if isinstance(t, Mapping)}
        tally.shows += len(ids)
        arm_of[decision_id] = arm
        shown[decision_id] = ids
    accepted: set[tuple[str, str]] = set()
    for f in feedback:
        decision_id, treatment = str(f.get("decision_id")), str(f.get("treatment_id"))
        arm = arm_of.get(decision_id)
        if arm is None or treatment not in shown[decision_id]:
            continue
        outcome = f.get("outcome")
        if outcome in ("accept", "purchase"):
            accepted.add((decision_id, treatment))
        value = f.get("value")
        if outcome == "purchase" and isinstance(value, int | float) and math.isfinite(value):
            arms[arm].decisions[decision_id] += float(value)
    accepts = {arm: 0 for arm in arms}
    for decision_id, _ in accepted:
        accepts[arm_of[decision_id]] += 1
    champion = arms.get(CHAMPION)
    rows = []
    for arm in sorted(arms, key=lambda a: (a != CHAMPION, a)):
        tally = arms[arm]
        values = list(tally.decisions.values())
        low, high = wilson(accepts[arm], tally.shows)
        compare = champion is not None and arm != CHAMPION
        rows.append(
            ArmRow(
                arm=arm,
                customers=len(tally.customers),
                decisions=len(values),
                shows=tally.shows,
                accepts=accepts[arm],
                revenue=math.fsum(values),
                acceptance_rate=accepts[arm] / tally.shows if tally.shows else None,
                acceptance_low=low,
                acceptance_high=high,
                value_per_decision=math.fsum(values) / len(values) if values else None,
                rate_vs_champion=rate_difference((accepts[arm], tally.shows), (accepts[CHAMPION], champion.shows))
                if compare and champion is not None
                else None,
                value_vs_champion=welch_difference(values, list(champion.decisions.values()))
                if compare and champion is not None
                else None,
            )
        )
    return ArmsReport(since_ms, until_ms, tuple(rows))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _interval(lo: float | None, hi: float | None, fmt: str = "{:+.1%}") -> str:
    return "—" if lo is None or hi is None else f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def render(report: ArmsReport) -> Table:
    table = Table(title="Experiment arms (95 % intervals; differences against the champion)")
    for column in ("arm", "customers", "decisions", "acceptance", "interval", "Δ acceptance", "value/decision", "Δ value"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for row in report.arms:
        rate = row.rate_vs_champion
        value = row.value_vs_champion
        table.add_row(
            row.arm,
            f"{row.customers:,}",
            f"{row.decisions:,}",
            _pct(row.acceptance_rate),
            _interval(row.acceptance_low, row.acceptance_high, "{:.1%}"),
            "—" if rate is None or rate[0] is None else f"{rate[0]:+.1%} {_interval(rate[1], rate[2])}",
            "—" if row.value_per_decision is None else f"{row.value_per_decision:,.2f}",
            "—"
            if value is None or value.estimate is None
            else f"{value.estimate:+,.2f} {_interval(value.ci_low, value.ci_high, '{:+,.2f}')}",
        )
    return table
