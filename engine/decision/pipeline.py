"""The decision itself, as a pure function: state + request + rules + time -> plan.

No I/O here: the service reads state before and applies the plan's writes after. That keeps
the hot path testable without Redis and lets simulation and offline evaluation reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.decision.arbitration import Scored, arbitrate, rank
from engine.decision.suitability import cap_reason, group_budgets
from engine.domain import ChosenTreatment, CustomerState, DecisionRequest, Verdict
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.vocabulary import EvalContext
from engine.state.keys import group_cap_field, treatment_cap_field


@dataclass(frozen=True, slots=True)
class DecisionPlan:
    treatments: tuple[ChosenTreatment, ...]
    verdicts: tuple[Verdict, ...]
    counter_fields: tuple[str, ...]
    fallback: bool


def eval_context(state: CustomerState, request: DecisionRequest, now_ms: int) -> EvalContext:
    return EvalContext(
        data={
            "customer": state.profile,
            "context": request.context,
            "cart": state.cart_summary(),
            "event": request.event or {},
        },
        now_ms=now_ms,
        last=state.last,
        recent=state.recent,
    )


def score(t: CompiledTreatment, ctx: EvalContext) -> Scored:
    """priority = propensity x context weight x value x lever (propensity: the prior mean for now)."""
    propensity = t.prior_mean
    weight = 1.0
    for condition, w in t.context_weights:
        if condition(ctx):
            weight *= w
    return Scored(t, propensity, weight, propensity * weight * t.value * t.lever)


def _chosen(s: Scored) -> ChosenTreatment:
    t = s.treatment
    return ChosenTreatment(t.id, t.kind, t.group, round(s.score, 6), round(s.propensity, 6), dict(t.content))


def decide(
    state: CustomerState, request: DecisionRequest, rules: RuleSet, now_ms: int, *, fallback_only: bool = False
) -> DecisionPlan:
    """Choose treatments. `fallback_only` is for when state could not be read: conditions such
    as "has never purchased" would be true of an empty state, so only fallbacks are safe."""
    ctx = eval_context(state, request, now_ms)
    suppressed = rules.active_suppressions(state.last, now_ms)
    verdicts: list[Verdict] = []
    suitable: list[Scored] = []
    for t in () if fallback_only else rules.candidates(request.channel, request.placement):
        if t.eligibility is not None and not t.eligibility(ctx):
            verdicts.append(Verdict(t.id, "eligibility", f"condition is false: {t.eligibility.source}"))
            continue
        reason = cap_reason(t, state.caps_day, state.caps_week)
        if reason is not None:
            verdicts.append(Verdict(t.id, "cap", reason))
            continue
        if t.group in suppressed:
            policy_id, _until = suppressed[t.group]
            verdicts.append(Verdict(t.id, "suppression", f"contact policy `{policy_id}` suppresses group `{t.group}`"))
            continue
        suitable.append(score(t, ctx))

    limits = rules.limits(request.placement, request.limit)
    chosen, dropped = arbitrate(rank(suitable), limits, group_budgets(rules, state.caps_day, state.caps_week))
    verdicts.extend(dropped)
    fallback = False
    if not chosen:
        chosen = [score(t, ctx) for t in rules.fallback if t.available(request.channel, request.placement)][: limits.limit]
        fallback = bool(chosen)

    counters: list[str] = []
    for s in chosen:
        counters.append(treatment_cap_field(s.treatment.id))
        counters.append(group_cap_field(s.treatment.group))
    return DecisionPlan(tuple(_chosen(s) for s in chosen), tuple(verdicts), tuple(counters), fallback)
