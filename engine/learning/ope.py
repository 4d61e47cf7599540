"""Offline policy evaluation: what another policy would have earned, estimated from decision logs.

A candidate policy is judged before it meets a customer by reweighting the logged rewards: each
row counts ``w = π(a|x) / μ(a|x)`` times, where ``μ`` is the logging policy's (recorded)
probability of the shown action and ``π`` the candidate's. The estimators trade bias for
variance differently, so :func:`evaluate` reports several side by side with bootstrap intervals
and the effective sample size, which together say how much the log can actually tell.

Rows are grouped into decisions by ``decision_id`` (a row without one is a decision of its own);
values are *per decision*. With one row per decision this is the usual per-round value; for
slates it is the expected sum of rewards of the slate, which is unbiased only when rewards add up
across items (see models/EVALUATION.md). The bootstrap resamples whole decisions, because the
rows of one slate are not independent.

With ``x_d`` the context of decision ``d``, ``E_d`` its eligible actions, ``D`` the number of
decisions, ``w_i`` the (optionally clipped) weight of row ``i`` and ``k_d = Σ_{a∈E_d} π(a|x_d)``:

- IPS:   ``V = (1/D) Σ_d Σ_{i∈d} w_i r_i``
- SNIPS: ``V = Σ_d Σ_{i∈d} w_i r_i / Σ_d n_d`` with ``n_d = Σ_{i∈d} w_i / k_d`` (``n_d = 1`` when
  ``k_d = 0``); ``E[n_d] = 1``, so with one row per decision and ``k_d = 1`` this is the textbook
  ``Σ w r / Σ w``. Undefined (NaN) when ``Σ_i w_i = 0``: no logged row is one the target would
  choose, so the ratio is 0/0 however the ``k_d = 0`` decisions pad the denominator.
- DR:    ``V = (1/D) Σ_d [ Σ_{a∈E_d} π(a|x_d) q(x_d, a) + Σ_{i∈d} w_i (r_i − q(x_d, a_i)) ]``
- ESS:   ``(Σ_i w_i)² / Σ_i w_i²`` over rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.errors import InvalidInput
from engine.learning.banditlog import LoggedRound

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "MeanRewardModel",
    "RewardModel",
    "ScoreFn",
    "Target",
    "dr",
    "effective_sample_size",
    "evaluate",
    "fit_reward_model",
    "fixed_action",
    "from_scores",
    "importance_weights",
    "ips",
    "snips",
]

Target = Callable[[Mapping[str, Any], tuple[str, ...]], Mapping[str, float]]
"""``target(context, eligible_actions) -> {action: probability}``; absent actions get 0."""

RewardModel = Callable[[Mapping[str, Any], str], float]
"""``q(context, action) -> expected reward``, used by doubly robust as a baseline."""

ScoreFn = Callable[[Mapping[str, Any], str], float]

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")

# Upper bound on bootstrap index cells held at once, so n_boot x decisions never exhausts memory.
_BOOT_CELLS = 4_000_000
# Targets computed in floating point may overshoot 1 by rounding; beyond this it is a bug.
_PROB_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Estimate:
    """One estimator's verdict, with what is needed to judge whether to believe it.

    ``ess`` far below ``n`` or a large ``clipped_share`` means few rows carry the estimate; the
    interval then deserves more trust than the point value. ``ess == 0`` means no row does: the
    target never chooses a logged action, and no estimate is evidence about it.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    ess: float
    n: int
    clipped_share: float
    n_decisions: int
    clip: float | None = None


# ---------------------------------------------------------------------------------------------
# Reward model


def _cell_key(context: Mapping[str, Any], by: tuple[str, ...]) -> tuple[Hashable, ...]:
    # Context values may be lists or objects; JSON text makes them usable as dict keys.
    out: list[Hashable] = []
    for k in by:
        v = context.get(k)
        if isinstance(v, str | int | float | bool) or v is None:
            out.append(v)
        else:
            out.append(json.dumps(v, sort_keys=True, default=str))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MeanRewardModel:
    """Per-action mean reward, optionally per context cell, each shrunk toward its parent.

    Deliberately simple: doubly robust stays unbiased whatever ``q`` is, and even a crude ``q``
    removes much of the reward's variance from the importance-weighted term. Shrinkage keeps
    rarely shown actions (and rare cells) from getting extreme means out of a handful of rows.
    """

    by: tuple[str, ...]
    prior: float
    global_mean: float
    action_means: dict[str, float]
    cell_means: dict[tuple[str, tuple[Hashable, ...]], float]

    def __call__(self, context: Mapping[str, Any], action: str) -> float:
        if self.by:
            cell = self.cell_means.get((action, _cell_key(context, self.by)))
            if cell is not None:
                return cell
        return self.action_means.get(action, self.global_mean)


def fit_reward_model(rounds: Iterable[LoggedRound], *, by: Sequence[str] = (), prior: float = 1.0) -> MeanRewardModel:
    """Fit :class:`MeanRewardModel`; ``prior`` is the pseudo-count pulling each mean toward its parent."""
    if prior < 0 or not math.isfinite(prior):
        raise InvalidInput(f"prior must be a finite number >= 0, got {prior!r}", field="prior")
    by_t = tuple(by)
    total = 0.0
    count = 0
    per_action: dict[str, list[float]] = {}
    per_cell: dict[tuple[str, tuple[Hashable, ...]], list[float]] = {}
    for r in rounds:
        total += r.reward
        count += 1
        acc = per_action.setdefault(r.action, [0.0, 0.0])
        acc[0] += r.reward
        acc[1] += 1.0
        if by_t:
            cacc = per_cell.setdefault((r.action, _cell_key(r.context, by_t)), [0.0, 0.0])
            cacc[0] += r.reward
            cacc[1] += 1.0
    global_mean = total / count if count else 0.0
    action_means = {a: (s + prior * global_mean) / (c + prior) for a, (s, c) in per_action.items()}
    cell_means = {key: (s + prior * action_means[key[0]]) / (c + prior) for key, (s, c) in per_cell.items()}
    return MeanRewardModel(by=by_t, prior=prior, global_mean=global_mean, action_means=action_means, cell_means=cell_means)


# ---------------------------------------------------------------------------------------------
# Target policy builders


def fixed_action(action_id: str) -> Target:
    """Always show ``action_id``; where it is not eligible the policy shows nothing (earns 0)."""

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        return {action_id: 1.0} if action_id in actions else {}

    return target


def from_scores(
    score_fn: ScoreFn,
    policy: Literal["greedy", "epsilon_greedy", "softmax"] = "greedy",
    *,
    epsilon: float = 0.1,
    temperature: float = 1.0,
) -> Target:
    """Turn a scorer into a stochastic policy over the eligible actions.

    Greedy splits its mass evenly among tied best actions, so the result does not depend on the
    order in which actions happen to be listed.
    """
    if policy not in ("greedy", "epsilon_greedy", "softmax"):
        raise InvalidInput(f"policy must be greedy, epsilon_greedy or softmax, got {policy!r}", field="policy")
    if not (0.0 <= epsilon <= 1.0):
        raise InvalidInput(f"epsilon must be in [0, 1], got {epsilon!r}", field="epsilon")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise InvalidInput(f"temperature must be a finite number > 0, got {temperature!r}", field="temperature")

    def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
        # Plain floats, not numpy: action sets are small and this runs once per logged decision.
        if not actions:
            return {}
        scores = [float(score_fn(context, a)) for a in actions]
        if not all(math.isfinite(s) for s in scores):
            raise InvalidInput(f"score_fn returned a non-finite score for {list(actions)!r}", field="score_fn")
        top = max(scores)
        if policy == "softmax":
            z = [math.exp((s - top) / temperature) for s in scores]
            total = sum(z)
            return {a: v / total for a, v in zip(actions, z, strict=True)}
        n_best = sum(1 for s in scores if s == top)
        floor = epsilon / len(actions) if policy == "epsilon_greedy" else 0.0
        share = (1.0 - epsilon) / n_best if policy == "epsilon_greedy" else 1.0 / n_best
        return {a: (share if s == top else 0.0) + floor for a, s in zip(actions, scores, strict=True)}

    return target


# ---------------------------------------------------------------------------------------------
# Preparation: one pass over the log, one target call per decision


@dataclass(slots=True)
class _Log:
    reward: np.ndarray  # (n,)
    propensity: np.ndarray  # (n,)
    target_p: np.ndarray  # (n,) target probability of the logged action
    decision: np.ndarray  # (n,) decision index of each row
    mass: np.ndarray  # (D,) k_d: target mass over the eligible actions
    rounds: list[LoggedRound]
    first_row: list[int]  # (D,) row whose context/eligible set stands for the decision
    context_keys: list[str]  # (D,) canonical text of the decision's context, for memoising
    eligible: list[tuple[str, ...]]
    probs: list[dict[str, float]]

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_decisions(self) -> int:
        return len(self.first_row)


def _checked_probs(raw: Mapping[str, float], eligible: tuple[str, ...], row: LoggedRound) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"target must return a mapping of action to probability, got {type(raw).__name__}", field="target")
    out: dict[str, float] = {}
    for a in eligible:
        p = raw.get(a, 0.0)
        if not isinstance(p, int | float | np.floating) or not (-_PROB_TOL <= p <= 1.0 + _PROB_TOL):
            where = f" (decision {row.decision_id})" if row.decision_id else ""
            raise InvalidInput(f"target probability of {a!r} must be in [0, 1], got {p!r}{where}", field="target")
        p = min(max(float(p), 0.0), 1.0)
        if p > 0.0:
            out[a] = p
    return out


def _context_key(context: Mapping[str, Any]) -> str:
    return json.dumps(context, sort_keys=True, default=repr)


def _prepare(rounds: Iterable[LoggedRound], target: Target) -> _Log:
    """Group rows into decisions and ask the target once per distinct (context, eligible set).

    A target is a function of its arguments, so decisions with identical contexts share one
    call; on segment-level contexts that turns a per-row Python call into a table lookup.
    """
    rows = list(rounds)
    if not rows:
        raise InvalidInput("no logged rounds to evaluate", field="rounds")
    universe: tuple[str, ...] | None = None
    if any(not r.actions for r in rows):
        seen = {r.action for r in rows}
        for r in rows:
            seen.update(r.actions)
        universe = tuple(sorted(seen))
    index: dict[Hashable, int] = {}
    memo: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}
    first_row: list[int] = []
    context_keys: list[str] = []
    eligible: list[tuple[str, ...]] = []
    probs: list[dict[str, float]] = []
    mass: list[float] = []
    decision = np.empty(len(rows), dtype=np.intp)
    target_p = np.empty(len(rows), dtype=float)
    for i, r in enumerate(rows):
        key: Hashable = ("id", r.decision_id) if r.decision_id is not None else ("row", i)
        d = index.get(key)
        if d is None:
            d = len(first_row)
            index[key] = d
            elig = r.actions or universe or ()
            memo_key = (_context_key(r.context), elig)
            p = memo.get(memo_key)
            if p is None:
                p = _checked_probs(target(r.context, elig), elig, r)
                memo[memo_key] = p
            first_row.append(i)
            context_keys.append(memo_key[0])
            eligible.append(elig)
            probs.append(p)
            mass.append(sum(p.values()))
        decision[i] = d
        target_p[i] = probs[d].get(r.action, 0.0)
    return _Log(
        reward=np.fromiter((r.reward for r in rows), dtype=float, count=len(rows)),
        propensity=np.fromiter((r.propensity for r in rows), dtype=float, count=len(rows)),
        target_p=target_p,
        decision=decision,
        mass=np.asarray(mass, dtype=float),
        rounds=rows,
        first_row=first_row,
        context_keys=context_keys,
        eligible=eligible,
        probs=probs,
    )


def importance_weights(rounds: Iterable[LoggedRound], target: Target, *, clip: float | None = None) -> np.ndarray:
    """Per-row weights ``min(π/μ, clip)``, for diagnostics such as plotting their tail."""
    log = _prepare(rounds, target)
    w = log.target_p / log.propensity
    return np.minimum(w, clip) if clip is not None else w


def effective_sample_size(weights: np.ndarray | Sequence[float]) -> float:
    """``(Σw)² / Σw²``: how many equally weighted rows the weighted log is worth."""
    w = np.asarray(weights, dtype=float)
    sq = float(np.dot(w, w))
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Estimation


def _check_args(estimators: Sequence[str], clip: float | None, n_boot: int, alpha: float) -> None:
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise InvalidInput(f"estimators must be among {', '.join(ESTIMATORS)}, got {list(estimators)!r}", field="estimators")
    if clip is not None and not (clip > 0 and math.isfinite(clip)):
        raise InvalidInput(f"clip must be a finite number > 0 or None, got {clip!r}", field="clip")
    if not isinstance(n_boot, int) or n_boot < 0:
        raise InvalidInput(f"n_boot must be an integer >= 0, got {n_boot!r}", field="n_boot")
    if not (0.0 < alpha < 1.0):
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha!r}", field="alpha")


def _direct_terms(log: _Log, q: RewardModel) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_a π(a|x_d) q(x_d, a)`` per decision and ``q(x_d, a_i)`` per row.

    ``q`` is an arbitrary Python callable, so its values are memoised per (context, action).
    """
    cache: dict[tuple[str, str], float] = {}

    def q_at(d: int, action: str) -> float:
        key = (log.context_keys[d], action)
        v = cache.get(key)
        if v is None:
            v = float(q(log.rounds[log.first_row[d]].context, action))
            if not math.isfinite(v):
                raise InvalidInput(f"reward model returned {v!r} for action {action!r}", field="reward_model")
            cache[key] = v
        return v

    dm = np.fromiter(
        (sum(p * q_at(d, a) for a, p in log.probs[d].items()) for d in range(log.n_decisions)),
        dtype=float,
        count=log.n_decisions,
    )
    q_row = np.fromiter(
        (q_at(d, r.action) for r, d in zip(log.rounds, log.decision.tolist(), strict=True)), dtype=float, count=log.n
    )
    return dm, q_row


def evaluate(
    rounds: Iterable[LoggedRound],
    target: Target,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    clip: float | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
    reward_model: RewardModel | None = None,
) -> list[Estimate]:
    """Estimate the target policy's value with each requested estimator.

    All estimators share one pass over the log and the same bootstrap resamples, so their
    intervals are comparable (their differences are not resampling noise). ``n_boot=0`` skips
    the bootstrap and reports NaN bounds. The default DR reward model is
    ``fit_reward_model(rounds)``, fitted on the same log; the bootstrap treats it as fixed.
    """
    estimators = tuple(estimators)
    _check_args(estimators, clip, n_boot, alpha)
    log = _prepare(rounds, target)
    n, n_dec = log.n, log.n_decisions

    w = log.target_p / log.propensity
    clipped_share = float(np.mean(w > clip)) if clip is not None else 0.0
    wc = np.minimum(w, clip) if clip is not None else w
    ess = effective_sample_size(wc)

    per_dec: dict[str, np.ndarray] = {}
    num = np.bincount(log.decision, weights=wc * log.reward, minlength=n_dec)
    if "ips" in estimators or "snips" in estimators:
        per_dec["num"] = num
    if "snips" in estimators:
        wsum = np.bincount(log.decision, weights=wc, minlength=n_dec)
        positive = log.mass > 0
        per_dec["wsum"] = wsum
        per_dec["den"] = np.where(positive, wsum / np.where(positive, log.mass, 1.0), 1.0)
    if "dr" in estimators:
        q = reward_model if reward_model is not None else fit_reward_model(log.rounds)
        dm, q_row = _direct_terms(log, q)
        per_dec["dr"] = dm + np.bincount(log.decision, weights=wc * (log.reward - q_row), minlength=n_dec)

    def values(idx: np.ndarray | None) -> dict[str, np.ndarray]:
        """Estimator values for resamples ``idx`` (B, D), or the point estimate when ``idx`` is None."""
        take = (lambda a: a[None, :]) if idx is None else (lambda a: a[idx])
        out: dict[str, np.ndarray] = {}
        if "ips" in estimators:
            out["ips"] = take(per_dec["num"]).mean(axis=1)
        if "snips" in estimators:
            # Weight on some row implies target mass on its decision, hence den > 0; without any,
            # the k_d = 0 padding alone would turn 0/0 into a confident 0.
            den = take(per_dec["den"]).sum(axis=1)
            weighted = take(per_dec["wsum"]).sum(axis=1) > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                out["snips"] = np.where(weighted, take(per_dec["num"]).sum(axis=1) / np.where(weighted, den, 1.0), np.nan)
        if "dr" in estimators:
            out["dr"] = take(per_dec["dr"]).mean(axis=1)
        return out

    point = values(None)
    bounds: dict[str, tuple[float, float]] = {e: (math.nan, math.nan) for e in estimators}
    if n_boot > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        chunk = max(1, _BOOT_CELLS // n_dec)
        draws: dict[str, list[np.ndarray]] = {e: [] for e in estimators}
        done = 0
        while done < n_boot:
            b = min(chunk, n_boot - done)
            idx = rng.integers(0, n_dec, size=(b, n_dec))
            for e, v in values(idx).items():
                draws[e].append(v)
            done += b
        for e in estimators:
            boot = np.concatenate(draws[e])
            boot = boot[np.isfinite(boot)]
            if boot.size:
                lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
                bounds[e] = (float(lo), float(hi))

    return [
        Estimate(
            estimator=e,
            value=float(point[e][0]),
            ci_low=bounds[e][0],
            ci_high=bounds[e][1],
            ess=ess,
            n=n,
            clipped_share=clipped_share,
            n_decisions=n_dec,
            clip=clip,
        )
        for e in estimators
    ]


def ips(
    rounds: Iterable[LoggedRound],
    target: Target,
    *,
    clip: float | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> Estimate:
    """Inverse propensity scoring: unbiased (unclipped) but noisy when weights are large."""
    return evaluate(rounds, target, estimators=("ips",), clip=clip, n_boot=n_boot, alpha=alpha, seed=seed)[0]


def snips(
    rounds: Iterable[LoggedRound],
    target: Target,
    *,
    clip: float | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> Estimate:
    """Self-normalised IPS: slightly biased, but bounded by the reward range and far less noisy.

    NaN when every row's weight is 0 (the target never chooses a logged action): the log then
    holds nothing to normalise by, and IPS's 0 with an ESS of 0 says the same thing less loudly.
    """
    return evaluate(rounds, target, estimators=("snips",), clip=clip, n_boot=n_boot, alpha=alpha, seed=seed)[0]


def dr(
    rounds: Iterable[LoggedRound],
    target: Target,
    *,
    reward_model: RewardModel | None = None,
    clip: float | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> Estimate:
    """Doubly robust: unbiased if either propensities or the reward model are right; low variance when q is decent."""
    return evaluate(
        rounds, target, estimators=("dr",), clip=clip, n_boot=n_boot, alpha=alpha, seed=seed, reward_model=reward_model
    )[0]
