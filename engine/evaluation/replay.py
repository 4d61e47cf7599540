"""Offline evaluation over the engine's own logs: what another policy would have earned here.

The decision stream already records, per decision, every suitable candidate (with its logged
propensity, business multiplier and prior), the arbitration limits and group budgets, and each
shown treatment's selection probability; the feedback stream records what customers did. Joined,
they are bandit feedback (one :class:`LoggedRound` per shown treatment), and because each row's
context keeps the whole choice set, a candidate policy can be replayed on the very same choice:
its marginal inclusion probability per candidate comes from the same slate machinery that
serves (:func:`engine.decision.exploration.slate_marginals`) with the logged limits and budgets.
The estimators themselves live in :mod:`engine.learning.ope`; see models/EVALUATION.md for how
to read them, and for the additivity assumption behind slate values.

Rewards follow the model spec's :class:`Reward`, like the learner's labels: a shown treatment
earns the weight of its strongest positive outcome, 0 without one. The learner's non-response
window is not applied: a positive that arrived late still counts here.

What a replay cannot see
------------------------
Only what the log kept can be re-evaluated. In particular:

* candidates are the ones that passed the logging rule set's eligibility, caps and suppressions;
  a policy can only be credited for treatments that were candidates;
* :func:`model_policy` re-scores from the logged ``inputs``, i.e. the fields the *logging* model
  read; fields only the candidate model reads are absent from the log and are treated as missing;
* :func:`ruleset_policy` cannot re-evaluate the other rule set's eligibility conditions or
  context weights (they read customer state that was not logged): it keeps the logged
  candidates that exist in the other rule set and are offered on the logged channel and
  placement, and ranks them by that rule set's ``value × lever × prior mean``. Treatments the
  other rule set adds, changed conditions, caps and arbitration limits are invisible to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.decision.exploration import ExplorationPolicy, slate_marginals
from engine.decision.pipeline import policy_for, score, scoring_inputs
from engine.domain import CustomerState, DecisionRequest
from engine.errors import InvalidInput
from engine.learning.banditlog import LoggedRound, read_log, write_log
from engine.learning.ope import Estimate, Target, evaluate, fixed_action
from engine.learning.serving import ServedModel
from engine.learning.spec import Reward
from engine.rules.ruleset import CompiledTreatment, RuleSet

__all__ = [
    "JoinCounts",
    "LogSummary",
    "evaluate_logs",
    "exploration_policy",
    "fixed_action",
    "join_logs",
    "model_policy",
    "read_rounds",
    "rounds_from_logs",
    "ruleset_policy",
    "summary",
    "write_rounds",
]

SKIP_REASONS: tuple[str, ...] = ("duplicate", "degraded", "fallback", "no_candidates", "not_a_candidate", "zero_propensity")
"""Why a logged decision can give no rows: degraded and fallback answers had no policy choice, a
shown treatment missing from the candidates or with zero probability cannot be reweighted."""


@dataclass(frozen=True, slots=True)
class JoinCounts:
    """What the join used and left out, so a report can say how much of the log it rests on."""

    decisions: int
    decisions_used: int
    rows: int
    feedback: int
    feedback_joined: int
    feedback_unmatched: int
    """Feedback whose decision is not in the log read (outside the window, or trimmed)."""
    feedback_not_shown: int
    """Feedback naming a treatment the decision did not show."""
    feedback_skipped: int
    """Feedback answering a decision that was skipped."""
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JoinResult:
    rounds: list[LoggedRound]
    counts: JoinCounts


def join_logs(decisions: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]], reward: Reward) -> JoinResult:
    """Rows for every usable decision, with the counts of what was skipped and why."""
    best: dict[tuple[str, str], float] = {}
    answered: dict[str, list[tuple[str, str, float | None]]] = {}
    n_feedback = 0
    for f in feedback:
        n_feedback += 1
        answered.setdefault(str(f.get("decision_id")), []).append(
            (str(f.get("treatment_id")), str(f.get("outcome")), f.get("value"))
        )
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    rounds: list[LoggedRound] = []
    seen: set[str] = set()
    n_decisions = used = joined = not_shown = on_skipped = 0
    for d in decisions:
        n_decisions += 1
        decision_id = str(d.get("decision_id"))
        shown = [t for t in d.get("treatments") or [] if isinstance(t, Mapping)]
        candidates = list(d.get("candidates") or [])
        candidate_ids = tuple(str(c["id"]) for c in candidates)
        reason = None
        if decision_id in seen:
            reason = "duplicate"
        elif d.get("degraded"):
            reason = "degraded"
        elif d.get("fallback"):
            reason = "fallback"
        elif not candidates or not d.get("limits"):
            reason = "no_candidates"
        elif any(t.get("id") not in candidate_ids for t in shown):
            reason = "not_a_candidate"
        elif any(not float(t.get("selection_probability") or 0.0) > 0.0 for t in shown):
            reason = "zero_propensity"
        seen.add(decision_id)
        replies = answered.pop(decision_id, [])
        if reason is not None:
            skipped[reason] += 1
            on_skipped += len(replies)
            continue
        shown_ids = {t["id"] for t in shown}
        for treatment_id, outcome, value in replies:
            if treatment_id not in shown_ids:
                not_shown += 1
                continue
            joined += 1
            key = (decision_id, treatment_id)
            best[key] = max(best.get(key, 0.0), reward.outcome_weight(outcome, value))
        context = {
            "inputs": d.get("inputs") or {},
            "candidates": candidates,
            "limits": d.get("limits"),
            "placement": d.get("placement"),
            "channel": d.get("channel"),
            "customer_id": d.get("customer_id"),
        }
        used += 1
        ts = d.get("ts")
        for t in shown:
            rounds.append(
                LoggedRound(
                    context=context,
                    action=str(t["id"]),
                    reward=best.get((decision_id, str(t["id"])), 0.0),
                    propensity=min(float(t["selection_probability"]), 1.0),
                    actions=candidate_ids,
                    decision_id=decision_id,
                    ts=int(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
                )
            )
    unmatched = sum(len(v) for v in answered.values())
    counts = JoinCounts(n_decisions, used, len(rounds), n_feedback, joined, unmatched, not_shown, on_skipped, skipped)
    return JoinResult(rounds, counts)


def rounds_from_logs(
    decisions: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]], reward: Reward
) -> list[LoggedRound]:
    """One row per shown treatment of every usable decision; :func:`join_logs` also says what was skipped."""
    return join_logs(decisions, feedback, reward).rounds


# ---------------------------------------------------------------------------------------------
# Target policies: marginal inclusion probabilities over the logged candidates


CONTEXT_DOC = "models/EVALUATION.md, section 'Replay context'"
"""Where the replay context is specified; every refusal of a context points there, because a
hand-made export is the usual cause and the fix is to add what the section lists."""


def _missing(what: str) -> InvalidInput:
    return InvalidInput(
        f"this policy replays the logged slate, but the round's context {what}; "
        f"see {CONTEXT_DOC} (or build rounds with rounds_from_logs / `nba evaluate --export`)",
        field="context",
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _logged(context: Mapping[str, Any], needs: tuple[str, ...] = ()) -> tuple[list[Mapping[str, Any]], Mapping[str, Any]]:
    """The logged candidates and limits, checked for what this policy reads (``needs``: numeric
    candidate fields), so a hand-made context fails with the field's name rather than a KeyError."""
    candidates, limits = context.get("candidates"), context.get("limits")
    if not isinstance(candidates, list):
        raise _missing("has no `candidates` list")
    if not isinstance(limits, Mapping):
        raise _missing("has no `limits` object")
    if not _is_int(limits.get("limit")):
        raise _missing("has no integer `limits.limit`")
    for key, value in limits.items():
        optional = key == "max_per_group" and value is None
        if (key == "max_per_group" or key.startswith("budget:")) and not optional and not _is_int(value):
            raise _missing(f"has a non-integer `limits.{key}` ({value!r})")
    for i, c in enumerate(candidates):
        if not isinstance(c, Mapping):
            raise _missing(f"has a non-object `candidates[{i}]`")
        for key in ("id", "group"):
            if not isinstance(c.get(key), str):
                raise _missing(f"has no string `candidates[{i}].{key}`")
        for key in needs:
            if not _is_number(c.get(key)):
                raise _missing(f"has no number `candidates[{i}].{key}`")
        prior = c.get("prior")
        if prior is not None and not (isinstance(prior, list) and len(prior) == 2 and all(_is_number(p) for p in prior)):
            raise _missing(f"has a `candidates[{i}].prior` that is not [alpha, beta] ({prior!r})")
    return candidates, limits


def _marginals(
    limits: Mapping[str, Any],
    ids: Sequence[str],
    priorities: np.ndarray,
    groups: Sequence[str],
    policy: ExplorationPolicy,
    *,
    alpha: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    multiplier: np.ndarray | None = None,
) -> dict[str, float]:
    if not ids:
        return {}
    budgets = {k.split(":", 1)[1]: int(v) for k, v in limits.items() if k.startswith("budget:")}
    per_group = limits.get("max_per_group")
    probs, _ = slate_marginals(
        priorities,
        list(groups),
        limit=int(limits["limit"]),
        max_per_group=None if per_group is None else int(per_group),
        budgets=budgets,
        policy=policy,
        alpha=alpha,
        beta=beta,
        multiplier=multiplier,
    )
    return {i: float(p) for i, p in zip(ids, probs.tolist(), strict=True) if p > 0.0}


def _as_float_array(values: Iterable[Any]) -> np.ndarray:
    return np.fromiter((float(v) for v in values), dtype=np.float64)


def exploration_policy(policy: ExplorationPolicy) -> Target:
    """The logged scores (``propensity × multiplier``) under another exploration setting.

    Thompson is refused: it samples from each treatment's posterior, and the log keeps only the
    prior, not the model's success and failure counts; use :func:`model_policy` for it.
    """
    if policy.kind == "thompson":
        raise InvalidInput("thompson cannot be replayed from logged scores; evaluate it with a model policy", field="policy")

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        candidates, limits = _logged(context, ("propensity", "multiplier"))
        priorities = _as_float_array(float(c["propensity"]) * float(c["multiplier"]) for c in candidates)
        return _marginals(limits, [c["id"] for c in candidates], priorities, [c["group"] for c in candidates], policy)

    return target


def _as_treatment(c: Mapping[str, Any]) -> CompiledTreatment:
    """A logged candidate as the scorer sees it: its multiplier folded into ``value``."""
    prior = c.get("prior") or [1.0, 1.0]
    return CompiledTreatment(
        id=str(c["id"]),
        kind=str(c.get("kind", "")),
        group=str(c["group"]),
        channels=frozenset(),
        placements=frozenset(),
        value=float(c["multiplier"]),
        lever=1.0,
        prior_alpha=float(prior[0]),
        prior_beta=float(prior[1]),
        cap_per_day=None,
        cap_per_week=None,
        cap_total=None,
        eligibility=None,
        context_weights=(),
        content={},
    )


def model_policy(served: ServedModel, policy: ExplorationPolicy | None = None) -> Target:
    """Re-score the logged candidates with another model's weights, then choose with ``policy``.

    Scoring is the serving pipeline's own (:func:`engine.decision.pipeline.score`: features,
    kernel, prior blending by evidence), so the replay cannot drift from what would serve.
    ``policy=None`` uses the model spec's exploration for the logged placement, holdout included.
    """

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        candidates, limits = _logged(context, ("multiplier",))
        if not candidates:
            return {}
        treatments = [_as_treatment(c) for c in candidates]
        inputs = context.get("inputs") or {}
        customer_id = str(context.get("customer_id") or "")
        placement = context.get("placement")
        state = CustomerState(customer_id=customer_id, profile=dict(inputs.get("customer") or {}))
        request = DecisionRequest(
            customer_id=customer_id,
            channel=str(context.get("channel") or ""),
            placement=placement,
            context=dict(inputs.get("context") or {}),
        )
        s = score(scoring_inputs(treatments, [1.0] * len(treatments), served, state, request))
        chosen = policy if policy is not None else policy_for(served.spec, placement, customer_id)
        return _marginals(
            limits,
            [t.id for t in treatments],
            s.priority,
            [t.group for t in treatments],
            chosen,
            alpha=s.alpha,
            beta=s.beta,
            multiplier=s.multiplier,
        )

    return target


def ruleset_policy(rules: RuleSet, policy: ExplorationPolicy) -> Target:
    """Another rule set's ranking of the logged candidates it still offers here.

    Priority is that rule set's ``value × lever × prior mean``, groups are its groups. Its
    eligibility conditions and context weights are *not* applied (they read state the log does
    not keep), and only logged candidates can be shown; see the module docstring.
    """

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        candidates, limits = _logged(context)
        offered = {t.id: t for t in rules.candidates(str(context.get("channel") or ""), context.get("placement"))}
        kept = [offered[c["id"]] for c in candidates if c["id"] in offered]
        if not kept:
            return {}
        return _marginals(
            limits,
            [t.id for t in kept],
            _as_float_array(t.value * t.lever * t.prior_mean for t in kept),
            [t.group for t in kept],
            policy,
            alpha=_as_float_array(t.prior_alpha for t in kept),
            beta=_as_float_array(t.prior_beta for t in kept),
            multiplier=_as_float_array(t.value * t.lever for t in kept),
        )

    return target


# ---------------------------------------------------------------------------------------------
# Estimation and the logging policy's own value


@dataclass(frozen=True, slots=True)
class LogSummary:
    """The logging policy's own record, the baseline every estimate is compared with.

    ``value`` is the mean summed reward per decision, the same unit as the estimates.
    """

    rows: int
    decisions: int
    value: float
    reward_per_row: float
    min_propensity: float
    actions: int


def summary(rounds: Sequence[LoggedRound]) -> LogSummary:
    if not rounds:
        return LogSummary(0, 0, float("nan"), float("nan"), float("nan"), 0)
    decisions = {r.decision_id if r.decision_id is not None else ("row", i) for i, r in enumerate(rounds)}
    total = sum(r.reward for r in rounds)
    actions = {r.action for r in rounds}
    for r in rounds:
        actions.update(r.actions)
    return LogSummary(
        rows=len(rounds),
        decisions=len(decisions),
        value=total / len(decisions),
        reward_per_row=total / len(rounds),
        min_propensity=min(r.propensity for r in rounds),
        actions=len(actions),
    )


def evaluate_logs(rounds: Iterable[LoggedRound], target: Target, **kw: Any) -> list[Estimate]:
    """:func:`engine.learning.ope.evaluate` (IPS, SNIPS, DR with bootstrap intervals)."""
    return evaluate(rounds, target, **kw)


def read_rounds(path: str | Path) -> list[LoggedRound]:
    """Rounds from a JSON-lines or CSV file, chosen by suffix."""
    return read_log(path)


def write_rounds(rounds: Iterable[LoggedRound], path: str | Path) -> int:
    """Export rounds (JSON lines or CSV by suffix) so an evaluation can be rerun without Redis."""
    return write_log(rounds, path)
