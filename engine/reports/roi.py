"""Return on the engine's treatments, read from its own decision and feedback logs, at four levels.

Which records count
-------------------
A decision counts when its ``ts`` lies in ``[since_ms, until_ms]`` (both ends included, as
everywhere else in the engine). Feedback counts when it answers a decision that counts,
whenever it arrived: a purchase made next week against a decision made in this window is this
window's revenue, so a report over a recent window still grows as late feedback comes in.

Attribution (last touch, per decision)
--------------------------------------
- A **show** is a treatment returned in a decision.
- An **accept** is a (decision, treatment) pair with at least one ``accept`` or ``purchase``
  feedback; a pair reported twice is still one accept.
- **Revenue** goes to the treatment the feedback names, in the decision it names; nothing is
  moved to an earlier or later treatment. A pair's revenue is the sum of the values of its
  ``purchase`` feedback. When a pair has no purchase with a value, the largest value reported
  with its ``accept`` counts instead: some channels price a conversion when it is accepted and
  never send a purchase. An accept's value never adds to a purchase's, so one conversion reported
  both ways is counted once.
- Feedback naming a treatment its decision did not show is not attributed (the notes count it).
- **Cost** = shows × cost per show + accepts × cost per accept, at the rule set's current
  prices. A treatment since removed from the rule set costs nothing and is named in the notes.
- **ROI** = (revenue − cost) / cost, none when the cost is 0; **acceptance rate** = accepts / shows.

The levels
----------
1. Campaigns, and the treatments within each (a treatment's campaign defaults to its id).
2. Brands (``unbranded`` when the treatment names none).
3. Customer spend: each customer's revenue and cost, rolled up by their value tier at their
   first decision in the window (``unknown`` when that decision recorded no value).
4. Customer value: the change in equity (and in CLV, where both ends are known) from a
   customer's first decision in the window to now, for *treated* customers against *holdout*
   customers. Treated: at least one decision chosen by a policy other than ``holdout`` that
   showed something other than the fallback. Holdout: at least one ``holdout`` decision and none
   that treated; fallback answers do not disqualify, because every customer gets the same
   fallback whichever arm they are in, and nor do answers at a placement that exempts the
   holdout's members (logged ``holdout: exempt``, as the agent's prompt does), for the same
   reason: without this, the holdout would lose its members who use such a placement, the
   callers say, and stop being a random share of customers. A decision recorded without its
   policy cannot tell the arms apart, so a customer whose arm depends on one is left out, as is
   a customer whose first decision recorded no value or who has no current value (the notes
   count each). Means are plain means over customers. The holdout is shown a
   uniformly random choice among the same eligible treatments, so the difference measures what
   the engine's choice adds over a random one, not the worth of contacting customers at all.
   The interval is Welch's t interval at 95% (:mod:`engine.reports.welch`), which does not
   assume the two groups spread alike.

The caller reads the streams and the current customer values; this module only counts, in one
pass over the decisions and one over the feedback (:mod:`engine.reports.attribution`), holding
the decisions of the window. :func:`engine.reports.roi_tables.render` draws the tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import InvalidInput
from engine.reports.attribution import UNKNOWN_TIER, CustomerBook, Ledger, TreatmentBook, TreatmentEconomics, attribute, finite
from engine.reports.welch import Difference, welch_difference

__all__ = [
    "BrandRow",
    "CampaignRow",
    "GroupValue",
    "LogCounts",
    "RoiReport",
    "Spend",
    "TierRow",
    "TreatmentEconomics",
    "TreatmentRow",
    "ValueComparison",
    "roi_report",
]

UNBRANDED = "unbranded"
_LEFT_OUT = "customers left out of the value comparison: "
_NAMED = 10
"""How many ids a note names before it only counts."""


@dataclass(frozen=True, slots=True)
class Spend:
    """Shows, accepts, cost and revenue of a set of (decision, treatment) pairs."""

    shows: int = 0
    accepts: int = 0
    cost: float = 0.0
    revenue: float = 0.0

    @property
    def roi(self) -> float | None:
        return (self.revenue - self.cost) / self.cost if self.cost > 0 else None

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepts / self.shows if self.shows else None

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.shows + other.shows, self.accepts + other.accepts, self.cost + other.cost, self.revenue + other.revenue)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "roi": self.roi, "acceptance_rate": self.acceptance_rate}


@dataclass(frozen=True, slots=True)
class TreatmentRow:
    treatment_id: str
    campaign: str
    brand: str
    spend: Spend
    priced: bool
    """False when the treatment is no longer in the rule set, so its cost was taken as 0."""

    def to_dict(self) -> dict[str, Any]:
        return {"treatment_id": self.treatment_id, "campaign": self.campaign, "brand": self.brand, "priced": self.priced}


@dataclass(frozen=True, slots=True)
class CampaignRow:
    campaign: str
    spend: Spend
    treatments: tuple[TreatmentRow, ...]

    def to_dict(self) -> dict[str, Any]:
        rows = [{**t.to_dict(), **t.spend.to_dict()} for t in self.treatments]
        return {"campaign": self.campaign, **self.spend.to_dict(), "treatments": rows}


@dataclass(frozen=True, slots=True)
class BrandRow:
    brand: str
    campaigns: int
    spend: Spend

    def to_dict(self) -> dict[str, Any]:
        return {"brand": self.brand, "campaigns": self.campaigns, **self.spend.to_dict()}


@dataclass(frozen=True, slots=True)
class TierRow:
    tier: str
    customers: int
    spend: Spend

    @property
    def revenue_per_customer(self) -> float | None:
        return self.spend.revenue / self.customers if self.customers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "customers": self.customers,
            **self.spend.to_dict(),
            "revenue_per_customer": self.revenue_per_customer,
        }


@dataclass(frozen=True, slots=True)
class GroupValue:
    """One arm of level 4; means are None when the group has no customer to average."""

    group: str
    customers: int
    equity_change: float | None
    clv_customers: int
    clv_change: float | None


@dataclass(frozen=True, slots=True)
class ValueComparison:
    treated: GroupValue
    holdout: GroupValue
    equity_difference: Difference
    """Treated minus holdout mean equity change."""
    clv_difference: Difference
    interval: str = "welch_t"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LogCounts:
    decisions_read: int
    decisions_in_window: int
    feedback_read: int
    feedback_joined: int


@dataclass(frozen=True, slots=True)
class RoiReport:
    since_ms: int
    until_ms: int
    campaigns: tuple[CampaignRow, ...]
    brands: tuple[BrandRow, ...]
    tiers: tuple[TierRow, ...]
    value: ValueComparison
    total: Spend
    counts: LogCounts
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: the CLI prints it and dashboards store it."""
        return {
            "window": {"since_ms": self.since_ms, "until_ms": self.until_ms},
            "total": self.total.to_dict(),
            "campaigns": [c.to_dict() for c in self.campaigns],
            "brands": [b.to_dict() for b in self.brands],
            "tiers": [t.to_dict() for t in self.tiers],
            "value": self.value.to_dict(),
            "counts": asdict(self.counts),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# The levels


def _spend(tally: TreatmentBook, price: TreatmentEconomics | None) -> Spend:
    cost = 0.0 if price is None else tally.shows * price.cost_per_show + tally.accepts * price.cost_per_accept
    return Spend(tally.shows, tally.accepts, cost, tally.revenue)


def _campaigns(ledger: Ledger) -> tuple[CampaignRow, ...]:
    by_campaign: dict[str, list[TreatmentRow]] = {}
    for treatment_id, tally in ledger.treatments.items():
        price = ledger.economics.get(treatment_id)
        campaign = (price.campaign if price else None) or treatment_id
        brand = (price.brand if price else None) or UNBRANDED
        row = TreatmentRow(treatment_id, campaign, brand, _spend(tally, price), priced=price is not None)
        by_campaign.setdefault(campaign, []).append(row)
    return tuple(
        CampaignRow(name, sum((r.spend for r in rows), Spend()), tuple(sorted(rows, key=lambda r: r.treatment_id)))
        for name, rows in sorted(by_campaign.items())
    )


def _brands(campaigns: tuple[CampaignRow, ...]) -> tuple[BrandRow, ...]:
    spend: dict[str, Spend] = {}
    names: dict[str, set[str]] = {}
    for c in campaigns:
        for t in c.treatments:
            spend[t.brand] = spend.get(t.brand, Spend()) + t.spend
            names.setdefault(t.brand, set()).add(c.campaign)
    return tuple(BrandRow(brand, len(names[brand]), spend[brand]) for brand in sorted(spend))


def _tiers(ledger: Ledger) -> tuple[TierRow, ...]:
    rows: dict[str, tuple[int, Spend]] = {}
    for c in ledger.customers.values():
        n, spend = rows.get(c.tier, (0, Spend()))
        rows[c.tier] = (n + 1, spend + Spend(c.shows, c.accepts, c.cost, c.revenue))
    order = sorted(rows, key=lambda tier: (tier == UNKNOWN_TIER, tier))
    return tuple(TierRow(tier, *rows[tier]) for tier in order)


def _changes(first: Any, now: tuple[float, float | None]) -> tuple[float, float | None] | None:
    """(equity change, CLV change or None), or None when either end's equity is unknown."""
    if not isinstance(first, Mapping):
        return None
    start, current = finite(first.get("equity")), finite(now[0])
    if start is None or current is None:
        return None
    clv_start, clv_now = finite(first.get("clv")), finite(now[1])
    return current - start, None if clv_start is None or clv_now is None else clv_now - clv_start


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _arm_of(c: CustomerBook) -> str | None:
    if c.treated:
        return "treated"
    if c.policy_unknown:
        return None
    return "holdout" if c.holdout else None


def _value(ledger: Ledger, current_value: Mapping[str, tuple[float, float | None]]) -> ValueComparison:
    equity: dict[str, list[float]] = {"treated": [], "holdout": []}
    clv: dict[str, list[float]] = {"treated": [], "holdout": []}
    for customer_id, c in ledger.customers.items():
        arm = _arm_of(c)
        if arm is None:
            ledger.count(
                _LEFT_OUT
                + (
                    "a decision recorded without its policy hides their arm"
                    if c.policy_unknown
                    else "in neither arm (only fallback, empty or holdout-exempt answers)"
                )
            )
            continue
        now = current_value.get(customer_id)
        change = None if now is None else _changes(c.first_value, now)
        if change is None:
            ledger.count(
                _LEFT_OUT
                + ("no current value" if now is None or finite(now[0]) is None else "no value recorded at their first decision")
            )
            continue
        equity[arm].append(change[0])
        if change[1] is not None:
            clv[arm].append(change[1])
    groups = {arm: GroupValue(arm, len(equity[arm]), _mean(equity[arm]), len(clv[arm]), _mean(clv[arm])) for arm in equity}
    return ValueComparison(
        groups["treated"],
        groups["holdout"],
        welch_difference(equity["treated"], equity["holdout"]),
        welch_difference(clv["treated"], clv["holdout"]),
    )


# ---------------------------------------------------------------------------------------------
# The report


def _named(ids: Iterable[str]) -> str:
    ordered = sorted(ids)
    shown = ", ".join(ordered[:_NAMED])
    return shown if len(ordered) <= _NAMED else f"{shown} and {len(ordered) - _NAMED} more"


def roi_report(
    decisions: Iterable[Mapping[str, Any]],
    feedback: Iterable[Mapping[str, Any]],
    economics: Mapping[str, TreatmentEconomics],
    current_value: Mapping[str, tuple[float, float | None]],
    *,
    since_ms: int,
    until_ms: int,
) -> RoiReport:
    """The four levels for the decisions in ``[since_ms, until_ms]`` and the feedback that answers them.

    ``decisions`` is read to the end before ``feedback`` is started, so both may be one-shot
    iterators over a stream. ``current_value`` maps a customer id to their equity and CLV now.
    """
    if until_ms < since_ms:
        raise InvalidInput(f"until_ms ({until_ms}) is before since_ms ({since_ms})", field="until_ms")
    ledger = attribute(decisions, feedback, economics, since_ms=since_ms, until_ms=until_ms)
    campaigns = _campaigns(ledger)
    value = _value(ledger, current_value)
    notes: list[str] = []
    unpriced = [t for t in ledger.treatments if t not in economics]
    if unpriced:
        notes.append(f"treatments no longer in the rule set, counted at zero cost: {_named(unpriced)}")
    notes.extend(f"{n} {what}" for what, n in sorted(ledger.odd.items()))
    return RoiReport(
        since_ms=since_ms,
        until_ms=until_ms,
        campaigns=campaigns,
        brands=_brands(campaigns),
        tiers=_tiers(ledger),
        value=value,
        total=sum((c.spend for c in campaigns), Spend()),
        counts=LogCounts(ledger.decisions_read, len(ledger.shown), ledger.feedback_read, ledger.feedback_joined),
        notes=tuple(notes),
    )
