"""Explanations of a decision: for every candidate, why it was shown or not, in words and as data.

Only built for requests that ask to `explain`; the pipeline skips all of this otherwise.

* eligibility: the sub-expressions of the condition that were false and the values they read;
* cap, suppression, policy: which cap or contact policy held the candidate back;
* chosen, arbitration (outranked): its score as the product of its components, P (propensity)
  × C (context weight) × V (value, including any expected tier gain) × L (lever), and for a
  shown candidate its rank and the probability that the policy shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.decision.suitability import GroupBudget
from engine.domain import Verdict
from engine.rules.ruleset import CompiledTreatment
from engine.rules.vocabulary import EvalContext


def ineligible(t: CompiledTreatment, ctx: EvalContext) -> Verdict:
    """Why `t`'s eligibility condition (which is false in `ctx`) is false."""
    assert t.eligibility is not None
    explanation = t.eligibility.explain(ctx)
    source = " ".join(t.eligibility.source.split())
    if [f.expression for f in explanation.failed] == [source]:
        reason = f"not eligible: {explanation.reason}"
    else:
        reason = f"not eligible, `{source}` is false: {explanation.reason}"
    return Verdict(t.id, "eligibility", reason, detail=explanation.as_dict())


def capped(t: CompiledTreatment, reason: str) -> Verdict:
    return Verdict(t.id, "cap", reason)


def suppressed(t: CompiledTreatment, policy_id: str, until: int) -> Verdict:
    return Verdict(
        t.id,
        "suppression",
        f"contact policy `{policy_id}` suppresses group `{t.group}`",
        detail={"policy": policy_id, "group": t.group, "until": until},
    )


class Scored:
    """The scored candidates of one decision, and the slate the policy picked from them."""

    def __init__(
        self,
        suitable: Sequence[CompiledTreatment],
        weights: Sequence[float],
        gains: Sequence[float] | None,
        propensity: Sequence[float],
        priority: Sequence[float],
        ctx: EvalContext,
    ) -> None:
        self.suitable = suitable
        self.weights = weights
        self.gains = gains
        self.propensity = propensity
        self.priority = priority
        self.ctx = ctx

    def components(self, i: int) -> dict[str, float]:
        t = self.suitable[i]
        return {
            "P": float(self.propensity[i]),
            "C": float(self.weights[i]),
            "V": t.value + self.gain(i),
            "L": t.lever,
            "priority": float(self.priority[i]),
        }

    def gain(self, i: int) -> float:
        return self.gains[i] if self.gains is not None else 0.0

    def detail(self, i: int) -> dict[str, Any]:
        return _value_detail(self.suitable[i], self.gain(i), self.ctx)

    def formula(self, i: int, parts: dict[str, float]) -> str:
        return _formula(parts, self.suitable[i].value, self.gain(i))

    def verdicts(
        self,
        chosen: Sequence[int],
        selection_probability: Sequence[float],
        budgets: dict[str, GroupBudget],
        max_per_group: int,
    ) -> list[Verdict]:
        """The shown candidates, best rank first, then every other in candidate order."""
        out = []
        for rank, (i, p) in enumerate(zip(chosen, selection_probability, strict=True), start=1):
            parts = {**self.components(i), "rank": rank, "selection_probability": float(p)}
            reason = f"chosen at rank {rank}: {self.formula(i, parts)}; selection probability {p:.4g}"
            out.append(Verdict(self.suitable[i].id, "chosen", reason, detail=self.detail(i), components=parts))
        taken: dict[str, int] = {}
        for i in chosen:
            taken[self.suitable[i].group] = taken.get(self.suitable[i].group, 0) + 1
        lowest = min((self.priority[i] for i in chosen), default=None)
        shown = set(chosen)
        for i, t in enumerate(self.suitable):
            if i in shown:
                continue
            parts = self.components(i)
            detail = self.detail(i)
            budget = budgets.get(t.group)
            in_group = taken.get(t.group, 0)
            if budget is not None and in_group >= budget.remaining:
                reason = f"contact policy `{budget.policy_id}`: no `{t.group}` budget left"
                detail = {**detail, "policy": budget.policy_id, "group": t.group, "remaining": budget.remaining}
                out.append(Verdict(t.id, "policy", f"{reason}; {self.formula(i, parts)}", detail=detail, components=parts))
                continue
            if in_group >= max_per_group:
                why = f"outranked: {in_group} `{t.group}` treatment(s) already shown (at most {max_per_group} per group)"
            elif lowest is not None:
                why = f"outranked (lowest shown score {lowest:.4g})"
            else:
                why = "outranked"
            out.append(Verdict(t.id, "arbitration", f"{why}; {self.formula(i, parts)}", detail=detail, components=parts))
        return out


def fallback_chosen(t: CompiledTreatment, rank: int, weight: float, priority: float, ctx: EvalContext) -> Verdict:
    """A fallback shown because nothing else survived: its prior stands for the propensity."""
    parts = {
        "P": t.prior_mean,
        "C": weight,
        "V": t.value,
        "L": t.lever,
        "priority": priority,
        "rank": rank,
        "selection_probability": 1.0,
    }
    reason = f"chosen at rank {rank} as a fallback (no other candidate survived): {_formula(parts, t.value, 0.0)}"
    return Verdict(t.id, "chosen", reason, detail=_value_detail(t, 0.0, ctx), components=parts)


def _value_detail(t: CompiledTreatment, gain: float, ctx: EvalContext) -> dict[str, Any]:
    """What V and C are made of: the treatment's value and tier gain, and which weights applied."""
    detail: dict[str, Any] = {"value": t.value, "tier_gain": gain}
    if t.context_weights:
        detail["context_weights"] = [{"when": c.source, "weight": w, "held": c(ctx)} for c, w in t.context_weights]
    return detail


def _formula(parts: dict[str, float], value: float, gain: float) -> str:
    """`score 10 = P 0.1 × C 1 × V 100 × L 1`, V broken down when a tier gain adds to it."""
    v = f"{parts['V']:.4g}" if not gain else f"{parts['V']:.4g} ({value:.4g} + {gain:.4g} expected tier gain)"
    return f"score {parts['priority']:.4g} = P {parts['P']:.4g} × C {parts['C']:.4g} × V {v} × L {parts['L']:.4g}"
