"""Arbitration: from scored, suitable candidates to the short list a channel shows.

Highest priority first, at most k per group (so one screen is not three sales offers), within
the contact-policy budget of each group, up to the placement's limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.decision.suitability import GroupBudget
from engine.domain import Verdict
from engine.rules.ruleset import CompiledTreatment, Limits


@dataclass(frozen=True, slots=True)
class Scored:
    treatment: CompiledTreatment
    propensity: float
    context_weight: float
    score: float


def rank(candidates: list[Scored]) -> list[Scored]:
    """Descending score; ties go to the treatment listed first in the rules (stable, deterministic)."""
    return sorted(candidates, key=lambda s: -s.score)


def arbitrate(ranked: list[Scored], limits: Limits, budgets: Mapping[str, GroupBudget]) -> tuple[list[Scored], list[Verdict]]:
    chosen: list[Scored] = []
    dropped: list[Verdict] = []
    per_group: dict[str, int] = {}
    for s in ranked:
        group = s.treatment.group
        taken = per_group.get(group, 0)
        budget = budgets.get(group)
        if len(chosen) >= limits.limit:
            dropped.append(
                Verdict(s.treatment.id, "arbitration", f"outranked: limit of {limits.limit} reached (score {s.score:.4g})")
            )
        elif taken >= limits.max_per_group:
            dropped.append(
                Verdict(
                    s.treatment.id,
                    "arbitration",
                    f"outranked: at most {limits.max_per_group} of group `{group}` (score {s.score:.4g})",
                )
            )
        elif budget is not None and taken >= budget.remaining:
            dropped.append(Verdict(s.treatment.id, "policy", f"contact policy `{budget.policy_id}`: no `{group}` budget left"))
        else:
            chosen.append(s)
            per_group[group] = taken + 1
    return chosen, dropped
