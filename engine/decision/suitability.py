"""Suitability: may this customer be shown this treatment now, given caps and contact policies?

Eligibility asks "is the offer relevant?"; suitability asks "would showing it be too much?".
Both read only the state fetched for the decision, so this module is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.state.keys import group_cap_field, treatment_cap_field


def cap_reason(
    t: CompiledTreatment, caps_day: Mapping[str, int], caps_week: Mapping[str, int], caps_total: Mapping[str, int] | None = None
) -> str | None:
    """Why the treatment's own frequency cap blocks it, or None."""
    field = treatment_cap_field(t.id)
    if t.cap_total is not None and (caps_total or {}).get(field, 0) >= t.cap_total:
        return f"shown {(caps_total or {}).get(field, 0)} time(s) ever (cap {t.cap_total} in total)"
    if t.cap_per_day is not None and caps_day.get(field, 0) >= t.cap_per_day:
        return f"shown {caps_day.get(field, 0)} time(s) today (cap {t.cap_per_day} per day)"
    if t.cap_per_week is not None and caps_week.get(field, 0) >= t.cap_per_week:
        return f"shown {caps_week.get(field, 0)} time(s) this week (cap {t.cap_per_week} per week)"
    return None


@dataclass(slots=True)
class GroupBudget:
    """How many more treatments of a group may be shown, and which policy sets that bound."""

    remaining: int
    policy_id: str


def group_budgets(rules: RuleSet, caps_day: Mapping[str, int], caps_week: Mapping[str, int]) -> dict[str, GroupBudget]:
    budgets: dict[str, GroupBudget] = {}
    for policy in rules.frequency_policies:
        field = group_cap_field(policy.group)
        for limit, used in ((policy.max_per_day, caps_day.get(field, 0)), (policy.max_per_week, caps_week.get(field, 0))):
            if limit is None:
                continue
            remaining = max(limit - used, 0)
            current = budgets.get(policy.group)
            if current is None or remaining < current.remaining:
                budgets[policy.group] = GroupBudget(remaining, policy.id)
    return budgets
