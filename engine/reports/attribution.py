"""The join behind the ROI report: who was shown what, which feedback pays for it, at what cost.

The rule it applies is written out for marketers in :mod:`engine.reports.roi`; this module only
keeps the books: one pass over the decisions of the window, then one over the feedback, holding
per decision its customer and the treatments it showed, and per (decision, treatment) pair that
was accepted its best-known revenue. Everything odd in the logs is counted under a readable
phrase rather than raised, because one damaged record should not hide a month of spend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain import holdout_exempt
from engine.errors import InvalidInput

__all__ = ["UNKNOWN_TIER", "CustomerBook", "Ledger", "TreatmentBook", "TreatmentEconomics", "attribute", "finite"]

UNKNOWN_TIER = "unknown"
_ACCEPTED = frozenset({"accept", "purchase"})


@dataclass(frozen=True, slots=True)
class TreatmentEconomics:
    """What a treatment costs and whose it is, as the rule set says today.

    ``campaign`` defaults to the treatment's id and ``brand`` to ``unbranded`` where they are read.
    """

    cost_per_show: float = 0.0
    cost_per_accept: float = 0.0
    brand: str | None = None
    campaign: str | None = None

    def __post_init__(self) -> None:
        for name in ("cost_per_show", "cost_per_accept"):
            value = getattr(self, name)
            if finite(value) is None or value < 0:
                raise InvalidInput(f"{name} must be a finite number >= 0, got {value!r}", field=name)


def finite(x: Any) -> float | None:
    """A finite number, or None: logs are decoded JSON and an older writer may have put anything there."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


@dataclass(slots=True)
class CustomerBook:
    """One customer over the window; ``first_value`` is the ``value`` of their earliest decision."""

    first_ts: int
    first_value: Any
    tier: str
    shows: int = 0
    accepts: int = 0
    cost: float = 0.0
    revenue: float = 0.0
    treated: bool = False
    holdout: bool = False
    policy_unknown: bool = False
    """A decision that would have settled the arm was recorded without its policy."""


@dataclass(slots=True)
class TreatmentBook:
    shows: int = 0
    accepts: int = 0
    revenue: float = 0.0


def _tier(value: Any) -> str:
    tier = value.get("tier") if isinstance(value, Mapping) else None
    return tier if isinstance(tier, str) and tier else UNKNOWN_TIER


@dataclass(slots=True)
class Ledger:
    economics: Mapping[str, TreatmentEconomics]
    since_ms: int
    until_ms: int
    shown: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    """Decision id → (customer id, treatments shown), for the decisions of the window."""
    customers: dict[str, CustomerBook] = field(default_factory=dict)
    treatments: dict[str, TreatmentBook] = field(default_factory=dict)
    odd: dict[str, int] = field(default_factory=dict)
    """Readable phrase → how many records it describes."""
    decisions_read: int = 0
    feedback_read: int = 0
    feedback_joined: int = 0
    _purchases: dict[tuple[str, str], float] = field(default_factory=dict)
    _accepts: dict[tuple[str, str], float | None] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.odd[what] = self.odd.get(what, 0) + 1

    def add_decision(self, d: Mapping[str, Any]) -> None:
        self.decisions_read += 1
        ts, decision_id, customer_id = finite(d.get("ts")), d.get("decision_id"), d.get("customer_id")
        if ts is None or not isinstance(decision_id, str) or not isinstance(customer_id, str):
            self.count("unreadable decisions (no ts, decision id or customer id)")
            return
        if not self.since_ms <= ts <= self.until_ms:
            return
        if decision_id in self.shown:
            self.count("repeated decision ids (the first one counts)")
            return
        shown = frozenset(str(t["id"]) for t in d.get("treatments") or () if isinstance(t, Mapping) and "id" in t)
        self.shown[decision_id] = (customer_id, shown)
        value = d.get("value")
        c = self.customers.get(customer_id)
        if c is None:
            c = self.customers[customer_id] = CustomerBook(int(ts), value, _tier(value))
        elif ts < c.first_ts:  # logs are mostly in order; ties keep the one read first
            c.first_ts, c.first_value, c.tier = int(ts), value, _tier(value)
        _sort_into_arm(c, d, shown)
        c.shows += len(shown)
        for t in shown:
            self.treatments.setdefault(t, TreatmentBook()).shows += 1
            price = self.economics.get(t)
            if price is not None:
                c.cost += price.cost_per_show

    def add_feedback(self, f: Mapping[str, Any]) -> None:
        self.feedback_read += 1
        decision_id = str(f.get("decision_id"))
        decision = self.shown.get(decision_id)
        if decision is None:
            self.count("feedback for decisions outside the window")
            return
        customer_id, shown = decision
        treatment_id = str(f.get("treatment_id"))
        if treatment_id not in shown:
            self.count("feedback naming a treatment its decision did not show (not attributed)")
            return
        self.feedback_joined += 1
        if f.get("customer_id") not in (None, customer_id):
            self.count("feedback naming another customer than its decision (credited to the decision's)")
        outcome = f.get("outcome")
        if outcome not in _ACCEPTED:
            return
        pair = (decision_id, treatment_id)
        value = finite(f.get("value"))
        if value is not None and value < 0:
            value = None
        if value is None and f.get("value") is not None:
            self.count("accept or purchase values that are not finite numbers >= 0 (taken as no value)")
        if outcome == "purchase" and value is not None:
            self._purchases[pair] = self._purchases.get(pair, 0.0) + value
        elif outcome == "purchase":
            self.count("purchases without a value (accepts with no revenue)")
        # An accept with a value stands in for a purchase only where none was priced: keep the largest.
        previous = self._accepts.get(pair)
        self._accepts[pair] = value if previous is None else (previous if value is None else max(previous, value))

    def settle(self) -> None:
        """Credit every accepted pair to its treatment and customer; call once, after the feedback."""
        for pair, accept_value in self._accepts.items():
            decision_id, treatment_id = pair
            revenue = self._purchases.get(pair, accept_value)
            book = self.treatments[treatment_id]
            customer = self.customers[self.shown[decision_id][0]]
            book.accepts += 1
            customer.accepts += 1
            price = self.economics.get(treatment_id)
            if price is not None:
                customer.cost += price.cost_per_accept
            if revenue is not None:
                book.revenue += revenue
                customer.revenue += revenue
        self._purchases.clear()
        self._accepts.clear()


def _sort_into_arm(c: CustomerBook, d: Mapping[str, Any], shown: frozenset[str]) -> None:
    policy = d.get("policy")
    if policy == "holdout":
        c.holdout = True
    elif d.get("fallback") or policy == "fallback" or not shown:
        return  # the same answer in either arm: it says nothing about which one the customer is in
    elif holdout_exempt(d.get("model")):
        return  # a member of the holdout, served at a placement that exempts it: the same answer too
    elif isinstance(policy, str):
        c.treated = True
    else:
        c.policy_unknown = True


def attribute(
    decisions: Iterable[Mapping[str, Any]],
    feedback: Iterable[Mapping[str, Any]],
    economics: Mapping[str, TreatmentEconomics],
    *,
    since_ms: int,
    until_ms: int,
) -> Ledger:
    """The settled books of a window: decisions are read to the end before feedback is started."""
    ledger = Ledger(economics, since_ms, until_ms)
    for d in decisions:
        ledger.add_decision(d)
    for f in feedback:
        ledger.add_feedback(f)
    ledger.settle()
    return ledger
