"""The ROI report as terminal tables: one per level, the notes under the last.

Money is printed with two decimals and no currency, because the logs carry none; ROI and
acceptance rates as percentages, and a dash wherever a ratio has nothing to divide by.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.table import Table

from engine.reports.roi import GroupValue, RoiReport, Spend
from engine.reports.welch import Difference

__all__ = ["render"]

_SPEND_COLUMNS = ("shows", "accepts", "acceptance", "cost", "revenue", "ROI")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def _share(x: float | None, sign: str = "") -> str:
    return "—" if x is None else f"{x:{sign}.1%}"


def _spend(s: Spend) -> list[str]:
    return [f"{s.shows:,}", f"{s.accepts:,}", _share(s.acceptance_rate), _money(s.cost), _money(s.revenue), _share(s.roi, "+")]


def _table(title: str, first: Sequence[str], rest: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in first:
        table.add_column(name)
    for name in rest:
        table.add_column(name, justify="right")
    return table


def _campaigns(report: RoiReport, window: str) -> Table:
    table = _table(f"Campaign ROI, {window}", ("campaign / treatment", "brand"), _SPEND_COLUMNS)
    for c in report.campaigns:
        brands = sorted({t.brand for t in c.treatments})
        table.add_row(c.campaign, ", ".join(brands), *_spend(c.spend), style="bold")
        for t in c.treatments:
            name = f"  {t.treatment_id}" + ("" if t.priced else " *")
            table.add_row(name, t.brand, *_spend(t.spend))
    table.add_row("all campaigns", "", *_spend(report.total), style="bold", end_section=True)
    if any(not t.priced for c in report.campaigns for t in c.treatments):
        table.caption = "* no longer in the rule set: counted at zero cost"
        table.caption_justify = "left"
    return table


def _brands(report: RoiReport, window: str) -> Table:
    table = _table(f"Brand ROI, {window}", ("brand",), ("campaigns", *_SPEND_COLUMNS))
    for b in report.brands:
        table.add_row(b.brand, f"{b.campaigns:,}", *_spend(b.spend))
    return table


def _tiers(report: RoiReport, window: str) -> Table:
    columns = ("customers", "cost", "revenue", "ROI", "revenue per customer")
    table = _table(f"Customer-spend ROI by tier at first decision, {window}", ("tier",), columns)
    for t in report.tiers:
        s = t.spend
        table.add_row(
            t.tier, f"{t.customers:,}", _money(s.cost), _money(s.revenue), _share(s.roi, "+"), _money(t.revenue_per_customer)
        )
    return table


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+,.2f}"


def _difference(d: Difference) -> str:
    if d.estimate is None:
        return "—"
    if d.ci_low is None or d.ci_high is None:
        return f"{_signed(d.estimate)} (too few customers for an interval)"
    return f"{_signed(d.estimate)} [{_signed(d.ci_low)}, {_signed(d.ci_high)}]"


def _group(g: GroupValue) -> list[str]:
    return [g.group, f"{g.customers:,}", _signed(g.equity_change), f"{g.clv_customers:,}", _signed(g.clv_change)]


def _value(report: RoiReport, window: str) -> Table:
    v = report.value
    columns = ("customers", "mean equity change", "customers with CLV", "mean CLV change")
    table = _table(f"Customer value, treated against holdout, {window}", ("group",), columns)
    table.add_row(*_group(v.treated))
    table.add_row(*_group(v.holdout), end_section=True)
    level = f"{v.equity_difference.level:.0%}"
    table.add_row(
        f"treated − holdout ({level} Welch t)",
        "",
        _difference(v.equity_difference),
        "",
        _difference(v.clv_difference),
        style="bold",
    )
    c = report.counts
    caption = [
        f"decisions: {c.decisions_in_window:,} in the window of {c.decisions_read:,} read",
        f"feedback: {c.feedback_joined:,} joined of {c.feedback_read:,} read",
        *report.notes,
    ]
    table.caption = "\n".join(caption)
    table.caption_justify = "left"
    return table


def render(report: RoiReport) -> list[Table]:
    """Campaigns, brands, tiers, then customer value with the counts and notes beneath it."""
    window = f"{_when(report.since_ms)} to {_when(report.until_ms)}"
    return [_campaigns(report, window), _brands(report, window), _tiers(report, window), _value(report, window)]
