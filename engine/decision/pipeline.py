"""The decision itself, as a pure function: state + request + rules + model + time + rng -> plan.

No I/O here: the service reads state before and applies the plan's writes after. That keeps
the hot path testable without Redis and lets simulation and offline evaluation reuse it.

Steps: candidates for the channel and placement; eligibility (marketer conditions); suitability
(caps, contact policies, suppressions); scoring of every suitable candidate (propensity from the
response model blended with the treatment's Beta prior, priority = propensity × context weight ×
value × lever); then the exploration policy fills the slate within the arbitration limits, and
reports each shown treatment's selection probability. Scoring and filling the slate are one
compiled call (engine.decision.exploration.select_scored).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.decision import verdicts as explained
from engine.decision.exploration import ExplorationPolicy, in_holdout, select_scored
from engine.decision.suitability import cap_reason, group_budgets
from engine.domain import HOLDOUT_EXEMPT, ChosenTreatment, CustomerState, DecisionRequest, Verdict
from engine.equity.value import CustomerValue, ValueModel
from engine.learning.serving import ServedModel
from engine.learning.spec import EpsilonGreedy, Greedy, ModelSpec, Softmax, Thompson
from engine.rules.functions import lookback_counter
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.vocabulary import EvalContext
from engine.scoring.kernels import score_candidates
from engine.state.keys import group_cap_field, treatment_cap_field

_NO_WEIGHTS = np.zeros(1, np.float64)
_NO_STATS = (0.0, 0.0, 0.0)
_NO_MODEL_STATS: dict[str, tuple[float, float, float]] = {}
_NO_FEATURES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _no_features(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty (n, 0) index and value matrices for scoring on priors alone, made once per n: they
    hold no elements, so sharing them is safe, and building them cost more than the scoring."""
    found = _NO_FEATURES.get(n)
    if found is None:
        found = _NO_FEATURES[n] = (np.full((n, 0), -1, np.int32), np.zeros((n, 0), np.float32))
    return found


def _zeros(n: int) -> list[float]:
    return [0.0] * n


def tier_gains(suitable: Sequence[CompiledTreatment], value: CustomerValue, values: ValueModel) -> list[float] | None:
    """Each candidate's expected equity gain, or None when none of them aims at a tier."""
    if not any(t.target_rank >= 0 for t in suitable):
        return None
    ranks = np.array([t.target_rank for t in suitable], dtype=np.int64)
    uplift = np.array([t.tier_uplift for t in suitable], dtype=np.float64)
    return values.tier_gains(value.equity, ranks, uplift).tolist()


@dataclass(slots=True)
class DecisionPlan:
    treatments: tuple[ChosenTreatment, ...]
    verdicts: tuple[Verdict, ...]
    counter_fields: tuple[str, ...]
    fallback: bool
    policy: str = "greedy"
    model: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    candidates: tuple[dict[str, Any], ...] = ()
    limits: dict[str, int] | None = None
    value: CustomerValue | None = None


def history_for_conditions(
    recent: list[dict[str, Any]],
    counters: Mapping[str, Sequence[int]],
    lookbacks: Mapping[str, float | None],
    now_ms: int,
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """What `count` and `exists` read: the shared history, less the types whose look-back counter
    (engine.rules.functions.lookback_counter) is read instead, and those counters' times.

    A type's counter is read when, within its window (`lookbacks`: the longest any rule looks
    back), it holds at least as many events as the shared history: a counter that has run for its
    window holds every event of its type there, the shared history at most as many, so the choice
    is exact then, backfilled events or not. One that has not (new rules, events from before it)
    may hold fewer, and the shared history, the better count then, stays."""
    if not lookbacks or not counters:
        return recent, {}
    taken: dict[str, list[int]] = {}
    for event_type, window in lookbacks.items():
        stamps = counters.get(lookback_counter(event_type))
        if not stamps:
            continue
        since = now_ms - window if window is not None else None
        held = list(stamps) if since is None else [ts for ts in stamps if ts >= since]
        shared = 0
        for e in recent:
            if e.get("type") == event_type and (since is None or _ts_of(e) >= since):
                shared += 1
        if len(held) >= shared:
            taken[event_type] = held
    if not taken:
        return recent, {}
    return [e for e in recent if e.get("type") not in taken], taken


def _ts_of(entry: Mapping[str, Any]) -> float:
    ts = entry.get("ts")
    return ts if isinstance(ts, int | float) else float("-inf")


def eval_context(
    state: CustomerState,
    request: DecisionRequest,
    now_ms: int,
    value: CustomerValue | None = None,
    lookbacks: Mapping[str, float | None] | None = None,
) -> EvalContext:
    """`lookbacks`: the rule set's (RuleSet.lookbacks), for its look-back counters to be read."""
    recent, lookback = history_for_conditions(state.recent, state.counters, lookbacks or {}, now_ms)
    return EvalContext(
        data={
            "customer": state.profile,
            "context": request.context,
            "cart": state.cart_summary(),
            "value": value.condition_fields() if value is not None else {},
            "event": request.event or {},
        },
        now_ms=now_ms,
        last=state.last,
        recent=recent,
        flags=state.flags,
        counters=state.counters,
        topics=state.topics,
        lookback=lookback,
    )


def context_weight(t: CompiledTreatment, ctx: EvalContext) -> float:
    weight = 1.0
    for condition, w in t.context_weights:
        if condition(ctx):
            weight *= w
    return weight


_HOLDOUT = ExplorationPolicy.holdout()


@functools.lru_cache(maxsize=256)
def runtime_policy(config: EpsilonGreedy | Softmax | Thompson | Greedy) -> ExplorationPolicy:
    """The runtime policy of a spec's configured one, built once per distinct configuration
    (configs are frozen, so equal ones share an entry), not once per decision."""
    if isinstance(config, EpsilonGreedy):
        return ExplorationPolicy.epsilon_greedy(config.epsilon)
    if isinstance(config, Softmax):
        return ExplorationPolicy.softmax(config.temperature)
    if isinstance(config, Thompson):
        return ExplorationPolicy.thompson()
    return ExplorationPolicy.greedy()


def policy_for(spec: ModelSpec | None, placement: str | None, customer_id: str) -> ExplorationPolicy:
    """Holdout customers get a uniformly random slate; others the placement's policy.

    The holdout share is the placement's where its exploration entry sets one (0 keeps a placement
    such as the agent's single prompt out of the holdout), so the policy returned, and logged with
    the decision, is the one that chose at this placement.
    """
    return assigned_policy(spec, placement, customer_id)[0]


def assigned_policy(spec: ModelSpec | None, placement: str | None, customer_id: str) -> tuple[ExplorationPolicy, bool]:
    """`policy_for`, and whether the customer is one of the model's holdout whom this placement's
    own, smaller share serves as everyone else is served there (`exempt`).

    An exempt decision is logged as such (`HOLDOUT_EXEMPT` in the decision's model entry): its
    policy alone would make the customer look treated, and the ROI report would then take the
    holdout's members who happen to use such a placement (the callers, for the agent's prompt)
    out of the holdout.
    """
    if spec is None:
        return ExplorationPolicy.greedy(), False
    config, share = spec.exploration_for(placement)
    if in_holdout(customer_id, share, spec.id):
        return _HOLDOUT, False
    exempt = share < spec.holdout_share and in_holdout(customer_id, spec.holdout_share, spec.id)
    return runtime_policy(config), exempt


@dataclass(slots=True)
class Scores:
    propensity: np.ndarray
    priority: np.ndarray
    multiplier: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


@dataclass(slots=True)
class ScoringInputs:
    """What scoring reads, as the kernels take it: the model's feature matrices, weights and bias,
    and `per_candidate` rows of prior mean, prior strength, model evidence, multiplier, and the
    Beta posterior's alpha and beta."""

    idx: np.ndarray
    val: np.ndarray
    weights: np.ndarray
    bias: float
    per_candidate: np.ndarray


def scoring_inputs(
    treatments: Sequence[CompiledTreatment],
    weights: Sequence[float],
    model: ServedModel | None,
    state: CustomerState,
    request: DecisionRequest,
    gains: Sequence[float] | None = None,
) -> ScoringInputs:
    """Without published weights the propensity is the prior.

    `gains` are the candidates' expected equity gains in money (engine.equity.tiers), added to
    their value: a lower-margin offer that grows a valuable customer can outrank a richer one.
    """
    learned = model is not None and model.weights is not None
    stats = model.stats if learned else _NO_MODEL_STATS  # type: ignore[union-attr]
    strength = float(model.spec.evidence_threshold) if learned else 1.0  # type: ignore[union-attr]
    # Per-candidate numbers are worked out in plain Python and become an array in one call: at a
    # handful of candidates, each NumPy operation costs more than the arithmetic it does.
    prior_mean: list[float] = []
    evidence: list[float] = []
    multiplier: list[float] = []
    alpha: list[float] = []
    beta: list[float] = []
    for t, w, g in zip(treatments, weights, gains if gains is not None else _zeros(len(treatments)), strict=True):
        e, successes, failures = stats.get(t.id, _NO_STATS)
        a, b = t.prior_alpha, t.prior_beta
        prior_mean.append(a / (a + b))
        evidence.append(e)
        multiplier.append(w * (t.value + g) * t.lever)
        alpha.append(a + successes)
        beta.append(b + failures)
    n = len(prior_mean)
    rows = np.array((prior_mean, [strength] * n, evidence, multiplier, alpha, beta), dtype=np.float64)
    rows = rows.reshape(6, n)  # C-contiguous, as the kernels want
    if learned:
        assert model is not None and model.weights is not None
        idx, val = model.featurizer.encode_decision(state.profile, request.context, treatments)
        return ScoringInputs(idx, val, model.weights, model.bias, rows)
    idx, val = _no_features(n)
    return ScoringInputs(idx, val, _NO_WEIGHTS, 0.0, rows)


def score(s: ScoringInputs) -> Scores:
    """Every candidate's scores in one kernel call, for callers that choose their own way (offline
    evaluation, simulations); a decision scores and chooses in one call (`select_scored`)."""
    rows = s.per_candidate
    ones = np.ones(rows.shape[1])
    propensity, priority = score_candidates(s.idx, s.val, s.weights, s.bias, rows[0], rows[1], rows[2], ones, rows[3], ones)
    return Scores(propensity, priority, rows[3], rows[4], rows[5])


def _chosen(t: CompiledTreatment, propensity: float, priority: float, selection: float) -> ChosenTreatment:
    # The content is the rule set's own dict, shared rather than copied per decision; nothing
    # downstream mutates it (answers are serialised, not edited).
    return ChosenTreatment(t.id, t.kind, t.group, round(priority, 6), round(propensity, 6), t.content, round(selection, 6))


def decide(
    state: CustomerState,
    request: DecisionRequest,
    rules: RuleSet,
    now_ms: int,
    *,
    model: ServedModel | None = None,
    rng: np.random.Generator | None = None,
    fallback_only: bool = False,
    values: ValueModel | None = None,
    policy: ExplorationPolicy | None = None,
    show_nothing: bool = False,
) -> DecisionPlan:
    """Choose treatments. `fallback_only` is for when state could not be read: conditions such
    as "has never purchased" would be true of an empty state, so only fallbacks are safe.
    `values` is the rule set's value model with the fitted lifetime model, if any. `policy`
    overrides the model's exploration policy (an experiment's random holdout); `show_nothing`
    is the no-treatment holdout: the customer's value is still worked out and logged."""
    values = values if values is not None else rules.value_model
    value = values.evaluate(state.facts, now_ms)
    ctx = eval_context(state, request, now_ms, value, rules.lookbacks)
    suppressed = rules.active_suppressions(state.last, now_ms)
    explain = request.explain
    verdicts: list[Verdict] = []
    suitable: list[CompiledTreatment] = []
    weights: list[float] = []
    for t in () if fallback_only or show_nothing else rules.candidates(request.channel, request.placement):
        # Reasons are only worded when asked for: most requests do not explain, and wording
        # a reason for every dropped candidate was a measurable share of a decision.
        if t.eligibility is not None and not t.eligibility(ctx):
            if explain:
                verdicts.append(explained.ineligible(t, ctx))
            continue
        reason = cap_reason(t, state.caps_day, state.caps_week, state.caps_total)
        if reason is not None:
            if explain:
                verdicts.append(explained.capped(t, reason))
            continue
        if t.group in suppressed:
            if explain:
                verdicts.append(explained.suppressed(t, *suppressed[t.group]))
            continue
        suitable.append(t)
        weights.append(context_weight(t, ctx) if t.context_weights else 1.0)

    limits = rules.limits(request.placement, request.limit)
    budgets = group_budgets(rules, state.caps_day, state.caps_week)
    exempt = False
    if policy is None:
        policy, exempt = assigned_policy(model.spec if model else None, request.placement, request.customer_id)
    chosen: list[ChosenTreatment] = []
    candidates: tuple[dict[str, Any], ...] = ()
    if suitable:
        gains = tier_gains(suitable, value, values)
        s = scoring_inputs(suitable, weights, model, state, request, gains)
        selection, scores = select_scored(
            s.idx,
            s.val,
            s.weights,
            s.bias,
            s.per_candidate,
            [t.group for t in suitable],
            limit=limits.limit,
            max_per_group=limits.max_per_group,
            budgets={g: b.remaining for g, b in budgets.items()},
            policy=policy,
            rng=rng if rng is not None else np.random.default_rng(),
        )
        propensities, priorities = scores[0].tolist(), scores[1].tolist()
        for i, p in zip(selection.chosen, selection.selection_probability, strict=True):
            chosen.append(_chosen(suitable[i], propensities[i], priorities[i], p))
        if explain:
            scored = explained.Scored(suitable, weights, gains, propensities, priorities, ctx)
            verdicts.extend(scored.verdicts(selection.chosen, selection.selection_probability, budgets, limits.max_per_group))
        multipliers = s.per_candidate[3].tolist()
        candidates = tuple(
            {
                "id": t.id,
                "group": t.group,
                "kind": t.kind,
                "multiplier": multipliers[i],
                "propensity": propensities[i],
                "prior": [t.prior_alpha, t.prior_beta],
            }
            for i, t in enumerate(suitable)
        )
    fallback = False
    if not chosen and not show_nothing:
        for t in rules.fallback:
            if t.available(request.channel, request.placement) and len(chosen) < limits.limit:
                prior = t.prior_mean
                weight = context_weight(t, ctx)
                priority = prior * weight * t.value * t.lever
                chosen.append(_chosen(t, prior, priority, 1.0))
                if explain:
                    verdicts.append(explained.fallback_chosen(t, len(chosen), weight, priority, ctx))
        fallback = bool(chosen)

    counters: list[str] = []
    for c in chosen:
        counters.append(treatment_cap_field(c.id))
        counters.append(group_cap_field(c.group))
    return DecisionPlan(
        tuple(chosen),
        tuple(verdicts),
        tuple(counters),
        fallback,
        policy=policy.kind if not fallback else "fallback",
        model=({**model.label, **HOLDOUT_EXEMPT} if exempt else model.label) if model else None,
        inputs=model.inputs(state.profile, request.context) if model else None,
        candidates=candidates,
        value=value,
        limits={
            "limit": limits.limit,
            "max_per_group": limits.max_per_group,
            **{f"budget:{g}": b.remaining for g, b in budgets.items()},
        },
    )
