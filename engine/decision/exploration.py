"""Exploration: which scored candidates a channel shows, and how likely each one was to be shown.

Without exploration the engine only ever learns about what it already ranks first. The
policies here trade a little immediate value for data about the rest, and every decision logs,
for each shown treatment, ``selection_probability``: the probability that the policy shows it.
Off-policy evaluation divides by that number, so it must be the probability of the process
that actually ran, not of some simplification of it.

The process
-----------
A slate is filled slot by slot. At each slot the *admissible* candidates are those not yet
chosen whose group still has room: fewer than ``max_per_group`` already chosen from it, and
fewer than its remaining contact-policy budget (absent from ``budgets`` = unlimited). The policy
picks one admissible candidate from its per-slot distribution:

* ``greedy``: the highest priority, ties to the lowest index.
* ``epsilon_greedy(ε)``: the greedy choice with probability 1-ε, otherwise uniform over the
  admissible candidates (so the greedy one gets 1-ε+ε/m).
* ``softmax(T)``: ``p_i ∝ priority_i^(1/T)``, i.e. ``exp(log(priority_i)/T)``. Priorities are
  products of a propensity and business multipliers with no natural scale, and raising them to
  a power is the one tempering that does not change when they are all multiplied by a constant:
  T means the same thing for a €5 and a €500 catalogue. T → 0 tends to greedy, T → ∞ to
  uniform. A priority of 0 gets probability 0, unless every admissible priority is 0, in which
  case the slot is uniform. The exponent is computed in log space relative to the admissible
  maximum, so a small T never underflows to an all-zero slot.
* ``random`` (alias ``holdout``): uniform over the admissible candidates; used for the holdout
  share, whose outcomes measure the engine against no engine.
* ``thompson``: one draw ``θ_i ~ Beta(α_i, β_i)`` per candidate per decision, then the slots are
  filled greedily on ``θ_i × multiplier_i`` (``multiplier`` = context weight × value × lever, the
  non-propensity part of the priority). One draw per slate rather than per slot is standard
  Thompson sampling for rankings: the slate is the best one in a single plausible world.

A slate ends early when no candidate is admissible; its length is then
``min(limit, Σ_g min(room_g, size_g))`` whatever the draws, so the selection probabilities
always sum to the number of slots actually filled.

Selection probability
---------------------
The marginal probability that a candidate appears anywhere in the slate. How it is computed
is reported with it (``SlateSelection.method``):

* ``enumeration`` (exact): a depth-first walk over ordered prefixes with the per-slot
  distribution, pruning zero-probability branches, adding ``P(prefix) × P(pick | prefix)`` at
  every node. It branches on classes of interchangeable candidates rather than on candidates:
  one class per group for uniform, per (group, priority) for softmax, and for greedy and
  epsilon-greedy each group's best ``min(L, room)`` alone plus the rest of the group as one
  class (they can never be the greedy pick within L slots, so they are interchangeable). A
  member's probability is its class's expected count over the class size. The walk runs when
  an upper bound on the complete ordered slates over classes (``k·(k-1)···`` for singletons,
  ``k^L`` once a class has several members) is at most ``path_bound``: by default 5,000 for
  softmax and uniform, which have the cheaper integral below, and 100,000 for epsilon-greedy,
  whose alternative is sampling (measured near that bound with 200 candidates: ~0.5 ms,
  against ~3.5 ms for the sampling). Greedy has one path and is always exact; epsilon-greedy
  with ε = 0 is greedy. So epsilon-greedy at L = 3 is exact at any n with up to 11 groups (23
  with one per group); 200 candidates in 4 groups take ~70 µs.
* ``race_integral`` (exact to ~1e-15, measured against the enumeration): softmax and uniform
  beyond the bound. Picking the next candidate with probability proportional to a rate is an
  exponential race: everyone "arrives" at an independent exponential time and is taken on
  arrival if admissible. The probability that x is taken is then a one-dimensional integral
  over its arrival time of a product of per-group Poisson-binomial terms, evaluated by the
  trapezoid rule in log-time (see ``_race_inclusion``). Priorities of 0 do not race; they fill
  what the positive ones leave, from a state known in advance, with an equal-rate race.
* ``monte_carlo``: epsilon-greedy beyond its bound (many groups), and Thompson always.
  Samples come from a dedicated generator (``default_rng(MC_SEED)`` unless ``mc_rng`` is
  given), so the logged value is a deterministic function of the inputs and independent of the
  draw that chose the slate.
  - Epsilon-greedy: ``mc_samples`` (default 2,000) slates from the process with the candidate
    left out, each weighted by Π_t (1 - q_t), q_t the candidate's probability at slot t on the
    simulated prefix. That weight is exactly the likelihood ratio of a slate without it, so
    1 - mean(weight) is unbiased, always in [0, 1], and far less noisy than counting
    appearances for rarely shown candidates, whose inverse probabilities weigh most in
    evaluation. It is run per shown candidate only, so ``marginals`` is None.
  - Thompson has no closed form, but half of it does: given the other candidates' sampled
    scores, candidate c is in the slate iff its score beats a threshold read off the greedy
    run without it, so P(c in slate | others) is a Beta survival probability. The estimate
    averages that over ``mc_samples`` vectorised draws of everyone (default 1,000, fewer past
    50 candidates to stay within 50,000 Beta draws, at least 200): conditional Monte Carlo,
    never noisier than counting appearances (measured: standard deviations 1.4-4× smaller
    at equal samples), and a shown candidate only gets 0 if no simulated competition would
    have let it in. Cost is dominated by the Beta draws (~50-80 ns each here): ~1 ms for 10
    candidates, ~3 ms for 50. Only the shown candidates are computed, so ``marginals`` is None
    (``slate_marginals`` computes every candidate).

The caller injects a seeded ``numpy.random.Generator`` for the choice itself, so a decision can
be replayed. Greedy never draws from it. Group labels may be ints or strings; ``budgets`` is
keyed by the same labels.

Holdout membership (:func:`in_holdout`) is a stable hash of a salt and the customer id, so a
customer stays in (or out of) the holdout across requests, processes and Python hash seeds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numba import njit

from engine.scoring.kernels import propensity_of

PolicyKind = Literal["greedy", "epsilon_greedy", "softmax", "random", "holdout", "thompson"]
Method = Literal["enumeration", "race_integral", "monte_carlo"]

PATH_BOUND = 5_000
SAMPLING_PATH_BOUND = 100_000
RACE_STEP = 0.25
MC_SAMPLES = 2_000
THOMPSON_SAMPLES = 1_000
THOMPSON_DRAW_BUDGET = 50_000
MC_SEED = 0x5EED_E0A1

_GREEDY = 0
_EPSILON = 1
_SOFTMAX = 2
_UNIFORM = 3
_THOMPSON = 4
_KIND_CODES: dict[str, int] = {
    "greedy": _GREEDY,
    "epsilon_greedy": _EPSILON,
    "softmax": _SOFTMAX,
    "random": _UNIFORM,
    "holdout": _UNIFORM,
    "thompson": _THOMPSON,
}
_UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True)
class ExplorationPolicy:
    """A policy and its one parameter; build it with the class methods, which validate."""

    kind: PolicyKind
    epsilon: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise ValueError(f"unknown exploration policy `{self.kind}`")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not (self.temperature > 0.0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be positive and finite, got {self.temperature}")

    @classmethod
    def greedy(cls) -> ExplorationPolicy:
        return cls("greedy")

    @classmethod
    def epsilon_greedy(cls, epsilon: float) -> ExplorationPolicy:
        return cls("epsilon_greedy", epsilon=epsilon)

    @classmethod
    def softmax(cls, temperature: float) -> ExplorationPolicy:
        return cls("softmax", temperature=temperature)

    @classmethod
    def random(cls) -> ExplorationPolicy:
        return cls("random")

    @classmethod
    def holdout(cls) -> ExplorationPolicy:
        return cls("holdout")

    @classmethod
    def thompson(cls) -> ExplorationPolicy:
        return cls("thompson")

    @property
    def code(self) -> int:
        if self.kind == "epsilon_greedy" and self.epsilon == 0.0:
            return _GREEDY
        return _KIND_CODES[self.kind]


@dataclass(frozen=True, slots=True)
class SlateSelection:
    """The chosen slate, in slot order, and what to log for it.

    ``marginals`` holds the selection probability of every candidate (shown or not), which is
    what an evaluator needs to compare this policy with another on the same decision. It is
    None when only the shown candidates were computed (the race integral and the sampling
    estimates, whose cost grows with the number of candidates asked about).
    """

    chosen: tuple[int, ...]
    selection_probability: tuple[float, ...]
    marginals: np.ndarray | None = field(repr=False)
    method: Method
    policy: PolicyKind

    @property
    def exact(self) -> bool:
        """True unless sampled: the enumeration is exact, the race integral to ~1e-15."""
        return self.method != "monte_carlo"


# ---------------------------------------------------------------------------------------------
# Compiled core. State of a partial slate: `taken[i]` (already chosen) and `used[g]` (chosen so
# far from group g); `cap[g]` is the room a group has (max_per_group and budget combined).


@njit(cache=True, nogil=True)
def _slot_probs(
    kind: int,
    eps: float,
    score: np.ndarray,
    logw: np.ndarray,
    gid: np.ndarray,
    cap: np.ndarray,
    used: np.ndarray,
    taken: np.ndarray,
    probs: np.ndarray,
) -> int:
    """Fill `probs` with the per-slot distribution; return how many candidates are admissible."""
    n = score.shape[0]
    m = 0
    best = -1
    best_score = -math.inf
    top_logw = -math.inf
    for i in range(n):
        if taken[i] or used[gid[i]] >= cap[gid[i]]:
            probs[i] = 0.0
            continue
        probs[i] = 1.0  # admissible mark, rescaled below
        m += 1
        if best < 0 or score[i] > best_score:
            best = i
            best_score = score[i]
        if logw[i] > top_logw:
            top_logw = logw[i]
    if m == 0:
        return 0
    if kind == _GREEDY:
        for i in range(n):
            probs[i] = 0.0
        probs[best] = 1.0
    elif kind == _EPSILON:
        share = eps / m
        for i in range(n):
            if probs[i] > 0.0:
                probs[i] = share
        probs[best] += 1.0 - eps
    elif kind == _SOFTMAX and top_logw > -math.inf:
        total = 0.0
        for i in range(n):
            if probs[i] > 0.0:
                w = math.exp(logw[i] - top_logw)
                probs[i] = w
                total += w
        for i in range(n):
            probs[i] /= total
    else:  # uniform, and softmax when every admissible priority is 0
        share = 1.0 / m
        for i in range(n):
            if probs[i] > 0.0:
                probs[i] = share
    return m


@njit(cache=True, nogil=True)
def _draw(probs: np.ndarray, u: float) -> int:
    """Inverse-CDF draw; rounding that leaves u above the total falls to the last candidate."""
    acc = 0.0
    last = -1
    for i in range(probs.shape[0]):
        p = probs[i]
        if p > 0.0:
            acc += p
            last = i
            if u < acc:
                return i
    return last


@njit(cache=True, nogil=True)
def _sample_slate(
    kind: int,
    eps: float,
    score: np.ndarray,
    logw: np.ndarray,
    gid: np.ndarray,
    cap: np.ndarray,
    limit: int,
    u: np.ndarray,
) -> np.ndarray:
    n = score.shape[0]
    taken = np.zeros(n, np.bool_)
    used = np.zeros(cap.shape[0], np.int64)
    probs = np.empty(n, np.float64)
    out = np.empty(limit, np.int64)
    filled = 0
    for t in range(limit):
        if _slot_probs(kind, eps, score, logw, gid, cap, used, taken, probs) == 0:
            break
        i = _draw(probs, u[t])
        out[filled] = i
        filled += 1
        taken[i] = True
        used[gid[i]] += 1
    return out[:filled]


@njit(cache=True, nogil=True)
def _build_classes(
    code: int, score: np.ndarray, logw: np.ndarray, gid: np.ndarray, cap: np.ndarray, slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Partition candidates into classes of interchangeable ones: (class_of, group, size, score, logw).

    Two candidates are interchangeable when swapping them changes no per-slot probability now or
    later, so the enumeration can branch on a class instead of on each member:
    uniform: one class per group; softmax: one per (group, priority); greedy and epsilon-greedy:
    the best min(slots, room, size) of each group alone, the rest of the group as one class.
    The rest can never be the greedy pick within `slots` slots (fewer than that many of their
    group can be taken before), so they only ever get the uniform share.
    Classes of greedy and epsilon-greedy come out in greedy order (priority, then index).
    """
    n = score.shape[0]
    g_count = cap.shape[0]
    class_of = np.empty(n, np.int64)
    c_group = np.empty(max(n, g_count), np.int64)
    c_size = np.zeros(max(n, g_count), np.int64)
    c_score = np.zeros(max(n, g_count), np.float64)
    c_logw = np.zeros(max(n, g_count), np.float64)
    if code == _UNIFORM:
        for g in range(g_count):
            c_group[g] = g
        for i in range(n):
            class_of[i] = gid[i]
            c_size[gid[i]] += 1
        return class_of, c_group[:g_count], c_size[:g_count], c_score[:g_count], c_logw[:g_count]
    order = np.argsort(-score, kind="mergesort")
    k = 0
    if code == _SOFTMAX:
        order = order[np.argsort(gid[order], kind="mergesort")]
        for r in range(n):
            i = order[r]
            if r == 0 or gid[i] != c_group[k - 1] or score[i] != c_score[k - 1]:
                c_group[k] = gid[i]
                c_score[k] = score[i]
                c_logw[k] = logw[i]
                k += 1
            class_of[i] = k - 1
            c_size[k - 1] += 1
        return class_of, c_group[:k], c_size[:k], c_score[:k], c_logw[:k]
    alone = np.zeros(g_count, np.int64)
    rest = np.full(g_count, -1, np.int64)
    for r in range(n):
        i = order[r]
        g = gid[i]
        if alone[g] < min(slots, cap[g]):
            alone[g] += 1
            c = k
            k += 1
        elif rest[g] < 0:
            c = k
            rest[g] = k
            k += 1
        else:
            c = rest[g]
        if c_size[c] == 0:
            c_group[c] = g
            c_score[c] = score[i]
            c_logw[c] = logw[i]
        class_of[i] = c
        c_size[c] += 1
    return class_of, c_group[:k], c_size[:k], c_score[:k], c_logw[:k]


@njit(cache=True, nogil=True)
def _leaf_bound(c_group: np.ndarray, c_size: np.ndarray, cap: np.ndarray, slots: int, bound: int) -> int:
    """An upper bound on the number of complete ordered slates over classes (stops past `bound`).

    Singletons cannot repeat, so with singletons only it is k·(k-1)···; a class with several
    members can be picked again, so with any of those it is k^slots.
    """
    k = 0
    repeatable = False
    for c in range(c_group.shape[0]):
        if cap[c_group[c]] > 0:
            k += 1
            if c_size[c] > 1:
                repeatable = True
    leaves = 1
    for t in range(slots):
        leaves *= k if repeatable else k - t
        if leaves > bound:
            return leaves
    return leaves


@njit(cache=True, nogil=True)
def _class_probs(
    code: int,
    eps: float,
    c_group: np.ndarray,
    c_size: np.ndarray,
    c_logw: np.ndarray,
    cap: np.ndarray,
    used: np.ndarray,
    c_taken: np.ndarray,
    probs: np.ndarray,
) -> int:
    """Per-slot distribution over classes (the total over a class's admissible members)."""
    k = c_group.shape[0]
    m = 0
    best = -1
    top_logw = -math.inf
    for c in range(k):
        g = c_group[c]
        a = c_size[c] - c_taken[c] if used[g] < cap[g] else 0
        probs[c] = a
        if a > 0:
            m += a
            if best < 0:
                best = c  # classes are in greedy order, so the first admissible one is the greedy pick
            if c_logw[c] > top_logw:
                top_logw = c_logw[c]
    if m == 0:
        return 0
    if code == _GREEDY:
        for c in range(k):
            probs[c] = 0.0
        probs[best] = 1.0
    elif code == _EPSILON:
        share = eps / m
        for c in range(k):
            probs[c] *= share
        probs[best] += 1.0 - eps
    elif code == _SOFTMAX and top_logw > -math.inf:
        total = 0.0
        for c in range(k):
            if probs[c] > 0.0:
                probs[c] *= math.exp(c_logw[c] - top_logw)
                total += probs[c]
        for c in range(k):
            probs[c] /= total
    else:
        for c in range(k):
            probs[c] /= m
    return m


@njit(cache=True, nogil=True)
def _exact_class_marginals(
    code: int,
    eps: float,
    c_group: np.ndarray,
    c_size: np.ndarray,
    c_logw: np.ndarray,
    cap: np.ndarray,
    slots: int,
) -> np.ndarray:
    """Expected number of members of each class in the slate, by depth-first enumeration of
    ordered prefixes (iterative, one row of the stack per slot)."""
    k = c_group.shape[0]
    marg = np.zeros(k, np.float64)
    if slots <= 0 or k == 0:
        return marg
    c_taken = np.zeros(k, np.int64)
    used = np.zeros(cap.shape[0], np.int64)
    probs = np.empty((slots, k), np.float64)
    prefix_p = np.empty(slots, np.float64)
    cursor = np.zeros(slots, np.int64)
    picked = np.full(slots, -1, np.int64)
    if _class_probs(code, eps, c_group, c_size, c_logw, cap, used, c_taken, probs[0]) == 0:
        return marg
    prefix_p[0] = 1.0
    depth = 0
    while depth >= 0:
        row = probs[depth]
        c = cursor[depth]
        while c < k and row[c] <= 0.0:
            c += 1
        if c == k:  # this slot's alternatives are exhausted: undo the pick that led here
            depth -= 1
            if depth >= 0:
                j = picked[depth]
                c_taken[j] -= 1
                used[c_group[j]] -= 1
            continue
        cursor[depth] = c + 1
        q = prefix_p[depth] * row[c]
        marg[c] += q
        if depth + 1 == slots:
            continue
        c_taken[c] += 1
        used[c_group[c]] += 1
        if _class_probs(code, eps, c_group, c_size, c_logw, cap, used, c_taken, probs[depth + 1]) == 0:
            c_taken[c] -= 1
            used[c_group[c]] -= 1
            continue
        picked[depth] = c
        depth += 1
        prefix_p[depth] = q
        cursor[depth] = 0
    return marg


@njit(cache=True, nogil=True)
def _leave_one_out(
    code: int,
    eps: float,
    c_group: np.ndarray,
    c_size: np.ndarray,
    c_logw: np.ndarray,
    cap: np.ndarray,
    slots: int,
    target: int,
    u: np.ndarray,
) -> float:
    """Monte Carlo estimate of P(a given member x of class `target` is in the slate).

    Importance sampling: slates are simulated from the process with x removed (each slot's
    distribution with x's share taken out and renormalised) and weighted by Π_t (1 - q_t), q_t
    being x's probability at that slot on the simulated prefix. That product is exactly the
    ratio of the true probability of an x-free slate to its simulated probability, so its mean
    is P(x never picked), unbiasedly, and it lies in [0, 1], so the estimate does too.
    """
    k = c_group.shape[0]
    samples = u.shape[0]
    c_taken = np.zeros(k, np.int64)
    used = np.zeros(cap.shape[0], np.int64)
    probs = np.empty(k, np.float64)
    g_target = c_group[target]
    missed = 0.0
    for s in range(samples):
        c_taken[:] = 0
        used[:] = 0
        weight = 1.0
        for t in range(slots):
            if _class_probs(code, eps, c_group, c_size, c_logw, cap, used, c_taken, probs) == 0:
                break
            if used[g_target] < cap[g_target]:
                probs[target] -= probs[target] / (c_size[target] - c_taken[target])
            rest = 0.0
            for c in range(k):
                rest += probs[c]
            weight *= min(rest, 1.0)
            if weight <= 0.0:
                break
            c = _draw(probs, u[s, t] * rest)
            c_taken[c] += 1
            used[c_group[c]] += 1
        missed += weight
    return 1.0 - missed / samples


@njit(cache=True, nogil=True)
def _race_inclusion(
    lam: np.ndarray, gid: np.ndarray, cap: np.ndarray, slots: int, targets: np.ndarray, step: float
) -> np.ndarray:
    """P(target in slate) for a slate filled by rate-proportional picks, as an integral over time.

    Each candidate with log-rate λ_j > -inf arrives at an independent exponential time of rate
    e^λ_j and is taken if its group has room and the slate is not full. By memorylessness the
    next admissible arrival is always j with probability rate_j / Σ admissible rates, so this is
    exactly the sequential softmax (or uniform) process. Candidate x is in the slate iff, when it
    arrives, fewer than `slots` were taken and its group still has room; given the time, groups
    are independent and each group's count is Poisson-binomial, so

        P(x in slate) = ∫ f_x(v) · P(Σ_h min(room_h, N_h(v)) < slots, N_gx(v) < room_gx) dv

    over log-time v, with f_x the density of x's log arrival time. The trapezoid rule on that
    doubly-exponentially decaying, analytic integrand converges exponentially in 1/step
    (about e^(-π²/step)): ~1e-13 at step 1/3, where a Monte Carlo estimate would need billions of
    samples. Log-time also keeps rates that differ by hundreds of orders of magnitude exact.
    """
    n = lam.shape[0]
    g_count = cap.shape[0]
    t_count = targets.shape[0]
    out = np.zeros(t_count, np.float64)
    if slots <= 0 or n == 0:
        return out
    racing = np.zeros(n, np.bool_)
    for j in range(n):
        racing[j] = lam[j] > -math.inf and cap[gid[j]] > 0
    # Each target integrates over its own window of log-time: below it, less than e^-37 of its
    # arrival mass; above it, less than e^-54. The windows share one grid, and stretches of the
    # grid no live target needs are skipped, so far-apart rates cost two windows, not the span.
    lo = np.empty(t_count, np.float64)
    hi = np.empty(t_count, np.float64)
    alive = np.zeros(t_count, np.bool_)
    v0 = math.inf
    for t in range(t_count):
        x = targets[t]
        alive[t] = racing[x]
        lo[t] = -lam[x] - 37.0
        hi[t] = -lam[x] + 4.0
        if alive[t]:
            v0 = min(v0, lo[t])
    if v0 == math.inf:
        return out
    order = np.argsort(gid, kind="mergesort")
    start = np.zeros(g_count + 1, np.int64)
    for j in range(n):
        start[gid[j] + 1] += 1
    for g in range(g_count):
        start[g + 1] += start[g]
    p = np.zeros(n, np.float64)
    dist = np.zeros((g_count, slots), np.float64)
    own = np.zeros(slots, np.float64)
    tmp = np.zeros(slots, np.float64)
    r = 0
    while True:
        v = v0 + r * step
        active = False
        next_lo = math.inf
        for t in range(t_count):
            if alive[t]:
                if v > hi[t]:
                    alive[t] = False
                elif v >= lo[t]:
                    active = True
                else:
                    next_lo = min(next_lo, lo[t])
        if not active:
            if next_lo == math.inf:
                break
            r = math.ceil((next_lo - v0) / step)
            continue
        r += 1
        for j in range(n):
            p[j] = -math.expm1(-math.exp(lam[j] + v)) if racing[j] else 0.0
        for g in range(g_count):
            row = dist[g]
            row[:] = 0.0
            row[0] = 1.0
            for s in range(start[g], start[g + 1]):
                pj = p[order[s]]
                if pj > 0.0:
                    for k in range(slots - 1, 0, -1):
                        row[k] = row[k] * (1.0 - pj) + row[k - 1] * pj
                    row[0] *= 1.0 - pj
            if cap[g] < slots:  # min(room, N): the room is all a full group can take
                below = 0.0
                for k in range(cap[g]):
                    below += row[k]
                row[cap[g]] = max(1.0 - below, 0.0)
                for k in range(cap[g] + 1, slots):
                    row[k] = 0.0
        for t in range(t_count):
            x = targets[t]
            if not (alive[t] and lo[t] <= v):
                continue
            gx = gid[x]
            own[:] = 0.0
            own[0] = 1.0
            for s in range(start[gx], start[gx + 1]):
                j = order[s]
                pj = p[j]
                if j != x and pj > 0.0:
                    for k in range(slots - 1, 0, -1):
                        own[k] = own[k] * (1.0 - pj) + own[k - 1] * pj
                    own[0] *= 1.0 - pj
            for k in range(min(cap[gx], slots), slots):
                own[k] = 0.0  # x needs its group not full
            for g in range(g_count):
                if g == gx:
                    continue
                row = dist[g]
                for k in range(slots):
                    acc = 0.0
                    for a in range(k + 1):
                        acc += own[a] * row[k - a]
                    tmp[k] = acc
                own[:] = tmp
            admissible = 0.0
            for k in range(slots):
                admissible += own[k]
            ez = math.exp(lam[x] + v)
            survive = math.exp(-ez)
            out[t] += step * ez * survive * admissible
            if admissible * survive < 1e-18:  # the rest of the integral is at most this
                alive[t] = False
    return out


@njit(cache=True, nogil=True)
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz); converges fast for
    x < (a+1)/(a+b+2), in about sqrt(max(a, b)) terms."""
    tiny = 1e-300
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


@njit(cache=True, nogil=True)
def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


@njit(cache=True, nogil=True)
def _beta_sf(x: float, a: float, b: float, log_beta: float) -> float:
    """P(Θ > x) for Θ ~ Beta(a, b), computed on whichever side keeps it accurate
    (`log_beta` = log B(a, b), passed in because it is constant over many calls)."""
    if x <= 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    log_front = a * math.log(x) + b * math.log1p(-x) - log_beta
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return max(0.0, 1.0 - front * _beta_continued_fraction(a, b, x) / a)
    return min(1.0, front * _beta_continued_fraction(b, a, 1.0 - x) / b)


@njit(cache=True, nogil=True)
def _greedy_picks(
    row: np.ndarray,
    gid: np.ndarray,
    cap: np.ndarray,
    slots: int,
    skip: int,
    taken: np.ndarray,
    used: np.ndarray,
    picks: np.ndarray,
) -> int:
    """The greedy slate on one row of sampled scores, `skip` left out; returns its length."""
    n = row.shape[0]
    taken[:] = False
    used[:] = 0
    filled = 0
    for _ in range(slots):
        best = -1
        best_score = -math.inf
        for i in range(n):
            if i == skip or taken[i] or used[gid[i]] >= cap[gid[i]]:
                continue
            if best < 0 or row[i] > best_score:
                best = i
                best_score = row[i]
        if best < 0:
            break
        picks[filled] = best
        filled += 1
        taken[best] = True
        used[gid[best]] += 1
    return filled


@njit(cache=True, nogil=True)
def _thompson_inclusion(
    scores: np.ndarray,
    gid: np.ndarray,
    cap: np.ndarray,
    slots: int,
    targets: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    multiplier: np.ndarray,
) -> np.ndarray:
    """Conditional Monte Carlo for Thompson: average over sampled scores of the others of
    P(target in slate | the others' scores), with the target's own draw integrated exactly.

    Given the others, the greedy slate takes target c iff its score beats a threshold τ: the
    score of the first pick (of the greedy run without c) after which the slate is full or
    c's group is. Picks above c's score are the same with or without c, which is what makes the
    threshold exact. So the conditional probability is the Beta survival P(θ_c > τ / m_c): a
    Rao-Blackwellisation, never noisier than counting appearances and much less for the
    candidates whose own draw decides. A candidate whose multiplier is 0 scores 0 whatever its
    draw; for it the tie rule (lowest index first) decides, and the term is 0 or 1.
    """
    samples = scores.shape[0]
    n = scores.shape[1]
    t_count = targets.shape[0]
    out = np.zeros(t_count, np.float64)
    taken = np.zeros(n, np.bool_)
    used = np.zeros(cap.shape[0], np.int64)
    full = np.empty(max(slots, 1), np.int64)
    alone = np.empty(max(slots, 1), np.int64)
    log_beta = np.empty(t_count, np.float64)
    for t in range(t_count):
        log_beta[t] = _log_beta(alpha[targets[t]], beta[targets[t]])
    for s in range(samples):
        row = scores[s]
        m_full = _greedy_picks(row, gid, cap, slots, -1, taken, used, full)
        for t in range(t_count):
            c = targets[t]
            g = gid[c]
            if cap[g] <= 0:
                continue
            in_full = False
            for k in range(m_full):
                if full[k] == c:
                    in_full = True
            if in_full:
                m = _greedy_picks(row, gid, cap, slots, c, taken, used, alone)
                picks = alone
            else:
                m = m_full
                picks = full
            block = -1
            in_group = 0
            for k in range(m):
                j = picks[k]
                if gid[j] == g:
                    in_group += 1
                if k + 1 == slots or in_group == cap[g]:
                    block = j
                    break
            if block < 0:
                out[t] += 1.0
                continue
            tau = row[block]
            if multiplier[c] > 0.0:
                out[t] += _beta_sf(tau / multiplier[c], alpha[c], beta[c], log_beta[t])
            elif tau == 0.0 and block > c:
                out[t] += 1.0
    for t in range(t_count):
        out[t] /= samples
    return out


@njit(cache=True, nogil=True)
def _enumerate(
    code: int, eps: float, score: np.ndarray, logw: np.ndarray, gid: np.ndarray, cap: np.ndarray, slots: int, path_bound: int
) -> tuple[np.ndarray, bool]:
    """Every candidate's exact selection probability by enumerating the slates over classes,
    and True; or zeros and False when that would take more than `path_bound` leaves."""
    full = np.zeros(score.shape[0], np.float64)
    class_of, c_group, c_size, _, c_logw = _build_classes(code, score, logw, gid, cap, slots)
    if _leaf_bound(c_group, c_size, cap, slots, path_bound) > path_bound:
        return full, False
    per_class = _exact_class_marginals(code, eps, c_group, c_size, c_logw, cap, slots)
    for i in range(score.shape[0]):
        c = class_of[i]
        full[i] = per_class[c] / c_size[c]
    return full, True


@njit(cache=True, nogil=True)
def _weights(code: int, score: np.ndarray, temperature: float) -> tuple[np.ndarray, bool]:
    """The per-candidate weights the policy draws on (log(priority)/T for softmax, the priority
    itself otherwise), and False if a priority is negative or not finite."""
    n = score.shape[0]
    logw = np.empty(n, np.float64)
    for i in range(n):
        p = score[i]
        if not (p >= 0.0 and p < math.inf):
            return logw, False
        if code == _SOFTMAX:
            logw[i] = math.log(p) / temperature if p > 0.0 else -math.inf
        else:
            logw[i] = p
    return logw, True


@njit(cache=True, nogil=True)
def _draw_and_enumerate(
    code: int,
    eps: float,
    score: np.ndarray,
    temperature: float,
    gid: np.ndarray,
    cap: np.ndarray,
    slots: int,
    u: np.ndarray,
    path_bound: int,
) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """The usual decision in one compiled call: weigh the priorities, draw the slate, then
    `_enumerate` (greedy needs no enumeration: what it draws is shown for certain).

    Returns (chosen, marginals, exact, valid); when `valid` is False a priority was
    negative or not finite and nothing was drawn; when `exact` is False the caller estimates
    the marginals instead (the slate is drawn either way). One call because at a handful of
    candidates each call from Python cost more than its work.
    """
    logw, valid = _weights(code, score, temperature)
    if not valid:
        return np.empty(0, np.int64), np.zeros(score.shape[0], np.float64), False, False
    chosen = _sample_slate(code, eps, score, logw, gid, cap, slots, u)
    if code == _GREEDY:
        full = np.zeros(score.shape[0], np.float64)
        for k in range(chosen.shape[0]):
            full[chosen[k]] = 1.0
        return chosen, full, True, True
    full, exact = _enumerate(code, eps, score, logw, gid, cap, slots, path_bound)
    return chosen, full, exact, True


@njit(cache=True, nogil=True)
def _score_and_draw(
    idx: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    bias: float,
    inputs: np.ndarray,
    code: int,
    eps: float,
    temperature: float,
    gid: np.ndarray,
    cap: np.ndarray,
    slots: int,
    u: np.ndarray,
    path_bound: int,
    out: np.ndarray,
) -> tuple[np.ndarray, bool, bool]:
    """A decision's scoring and `_draw_and_enumerate` in one compiled call.

    `inputs` rows: each candidate's prior mean, prior strength, model evidence and multiplier
    (engine.scoring.kernels has the maths). Fills `out` with the propensities, the priorities
    and the selection probabilities; returns (chosen, exact, valid) as `_draw_and_enumerate`.
    Results are written into the caller's array rather than returned because each array a
    kernel returns costs a conversion on the way out, and at a handful of candidates the calls
    and conversions, not the arithmetic, are what a decision pays for.
    """
    n = inputs.shape[1]
    for i in range(n):
        p = propensity_of(idx, val, weights, bias, i, inputs[0, i], inputs[1, i], inputs[2, i])
        out[0, i] = p
        out[1, i] = p * inputs[3, i]
    chosen, full, exact, valid = _draw_and_enumerate(code, eps, out[1], temperature, gid, cap, slots, u, path_bound)
    out[2, :] = full
    return chosen, exact, valid


# ---------------------------------------------------------------------------------------------
# Python side: validation, group coding, and the choice of exact vs Monte Carlo.


def _layout(
    groups: Sequence[object] | np.ndarray,
    n: int,
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(group code per candidate, room per group, slots filled whatever the draws).

    A group's room is max_per_group and its remaining budget combined; every pick uses one unit
    of some group's room, so the slate fills min(limit, Σ_g min(room_g, size_g)) slots. One pass
    in plain Python: at a handful of candidates that beats any array operation.
    """
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} candidates")
    # tolist() gives labels that match budget keys.
    labels = groups.tolist() if isinstance(groups, np.ndarray) else groups
    codes: dict[object, int] = {}
    sizes: list[int] = []
    gid: list[int] = []
    for label in labels:
        code = codes.get(label)
        if code is None:
            code = codes[label] = len(sizes)
            sizes.append(0)
        sizes[code] += 1
        gid.append(code)
    room = _UNLIMITED if max_per_group is None else max(int(max_per_group), 0)
    if budgets:
        caps = [room if (left := budgets.get(label)) is None else min(room, max(int(left), 0)) for label in codes]
    else:
        caps = [room] * len(sizes)
    fillable = 0
    for size, cap in zip(sizes, caps, strict=True):
        fillable += size if size < cap else cap
    return np.array(gid, dtype=np.int64), np.array(caps, dtype=np.int64), min(max(int(limit), 0), fillable)


def _as_vector(name: str, values: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), got {arr.shape}")
    return arr


_INVALID_PRIORITIES = "priorities must be finite and non-negative"


@dataclass(frozen=True, slots=True)
class _Prepared:
    code: int
    eps: float
    score: np.ndarray
    logw: np.ndarray
    gid: np.ndarray
    cap: np.ndarray
    slots: int


def _priorities(priorities: Sequence[float] | np.ndarray) -> np.ndarray:
    score = np.ascontiguousarray(priorities, dtype=np.float64)
    if score.ndim != 1:
        raise ValueError("priorities must be one-dimensional")
    return score


def _prepare(
    priorities: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None,
    policy: ExplorationPolicy,
) -> _Prepared:
    score = _priorities(priorities)
    gid, cap, slots = _layout(groups, score.shape[0], limit, max_per_group, budgets)
    code = policy.code
    logw, valid = _weights(code, score, policy.temperature)
    if not valid:
        raise ValueError(_INVALID_PRIORITIES)
    return _Prepared(code, float(policy.epsilon), score, logw, gid, cap, slots)


def _bound(code: int, path_bound: int | None) -> int:
    """The enumeration's leaf budget: the caller's, or the default for the policy (racing
    policies fall back to a cheap exact integral, the others to sampling, which costs more)."""
    if path_bound is not None:
        return path_bound
    return PATH_BOUND if code in (_SOFTMAX, _UNIFORM) else SAMPLING_PATH_BOUND


def _race(prep: _Prepared, targets: np.ndarray, step: float) -> np.ndarray:
    """Softmax or uniform selection probabilities of `targets` by the arrival-time integral.

    Zero priorities never race: under softmax they are only reached once every positive one is
    taken or blocked, which leaves a state known in advance (each group holds min(room, its
    positive candidates)); the rest of the slate is then uniform over the zeros, itself a race
    with equal rates.
    """
    out = np.zeros(targets.shape[0], np.float64)
    lam = prep.logw if prep.code == _SOFTMAX else np.zeros_like(prep.score)
    positive = lam[targets] > -math.inf
    if positive.any():
        out[positive] = _race_inclusion(lam, prep.gid, prep.cap, prep.slots, targets[positive], step)
    if not positive.all():
        racing = lam > -math.inf
        taken = np.minimum(np.bincount(prep.gid[racing], minlength=prep.cap.shape[0]), prep.cap)
        left = prep.slots - int(taken.sum())
        if left > 0:
            lam0 = np.where(racing, -math.inf, 0.0)
            out[~positive] = _race_inclusion(lam0, prep.gid, prep.cap - taken, left, targets[~positive], step)
    return out


def thompson_samples(n: int) -> int:
    """Default Thompson sample count: 1,000, fewer past 50 candidates so the Beta draws (the
    bulk of the cost) stay within THOMPSON_DRAW_BUDGET, never fewer than 200."""
    return max(200, min(THOMPSON_SAMPLES, THOMPSON_DRAW_BUDGET // max(n, 1)))


def _positive_samples(samples: int) -> int:
    if samples < 1:
        raise ValueError(f"mc_samples must be at least 1, got {samples}")
    return int(samples)


def _estimate(
    prep: _Prepared,
    targets: np.ndarray | None,
    *,
    alpha: np.ndarray | None,
    beta: np.ndarray | None,
    multiplier: np.ndarray | None,
    mc_samples: int | None,
    mc_rng: np.random.Generator | None,
    path_bound: int | None,
    enumerated: bool = False,
) -> tuple[np.ndarray | None, np.ndarray, Method]:
    """(every candidate's selection probability or None, the targets' ones, how they were computed).

    `targets=None` asks for every candidate. The full vector is None when only the targets were
    computed, which is what keeps the large cases cheap. `enumerated` says the caller already
    found enumeration over its bound, so it is not tried again.
    """
    n = prep.score.shape[0]
    if prep.slots == 0 or prep.code == _GREEDY:
        full = np.zeros(n, np.float64)
        if prep.slots:
            u = np.zeros(prep.slots)
            full[_sample_slate(_GREEDY, 0.0, prep.score, prep.logw, prep.gid, prep.cap, prep.slots, u)] = 1.0
        return full, full if targets is None else full[targets], "enumeration"
    if prep.code == _THOMPSON:
        assert alpha is not None and beta is not None and multiplier is not None
        samples = thompson_samples(n) if mc_samples is None else _positive_samples(mc_samples)
        gen = mc_rng if mc_rng is not None else np.random.default_rng(MC_SEED)
        draws = gen.beta(alpha, beta, size=(samples, n))
        draws *= multiplier
        wanted = np.arange(n) if targets is None else targets
        shown = _thompson_inclusion(draws, prep.gid, prep.cap, prep.slots, wanted, alpha, beta, multiplier)
        return (shown if targets is None else None), shown, "monte_carlo"
    if not enumerated:
        bound = _bound(prep.code, path_bound)
        full, exact = _enumerate(prep.code, prep.eps, prep.score, prep.logw, prep.gid, prep.cap, prep.slots, bound)
        if exact:
            return full, full if targets is None else full[targets], "enumeration"
    racing = prep.code in (_SOFTMAX, _UNIFORM)
    if racing:
        wanted = np.arange(n) if targets is None else targets
        shown = _race(prep, wanted, RACE_STEP)
        return (shown if targets is None else None), shown, "race_integral"
    class_of, c_group, c_size, _, c_logw = _build_classes(prep.code, prep.score, prep.logw, prep.gid, prep.cap, prep.slots)
    samples = MC_SAMPLES if mc_samples is None else _positive_samples(mc_samples)
    gen = mc_rng if mc_rng is not None else np.random.default_rng(MC_SEED)
    u = gen.random((samples, prep.slots))
    wanted_classes = range(c_group.shape[0]) if targets is None else sorted(set(class_of[targets].tolist()))
    per_class = np.zeros(c_group.shape[0], np.float64)
    for c in wanted_classes:
        per_class[c] = _leave_one_out(prep.code, prep.eps, c_group, c_size, c_logw, prep.cap, prep.slots, c, u)
    if targets is None:
        full = per_class[class_of]
        return full, full, "monte_carlo"
    return None, per_class[class_of[targets]], "monte_carlo"


def _thompson_inputs(
    n: int,
    alpha: Sequence[float] | np.ndarray | None,
    beta: Sequence[float] | np.ndarray | None,
    multiplier: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if alpha is None or beta is None or multiplier is None:
        raise ValueError("thompson needs alpha, beta and multiplier")
    a = _as_vector("alpha", alpha, n)
    b = _as_vector("beta", beta, n)
    mult = _as_vector("multiplier", multiplier, n)
    if n and not (a.min() > 0.0 and b.min() > 0.0 and np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Beta parameters must be finite and positive")
    if n and not (mult.min() >= 0.0 and np.isfinite(mult).all()):
        raise ValueError("multipliers must be finite and non-negative")
    return a, b, mult


def slate_marginals(
    priorities: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    *,
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None = None,
    policy: ExplorationPolicy,
    alpha: Sequence[float] | np.ndarray | None = None,
    beta: Sequence[float] | np.ndarray | None = None,
    multiplier: Sequence[float] | np.ndarray | None = None,
    mc_samples: int | None = None,
    mc_rng: np.random.Generator | None = None,
    path_bound: int | None = None,
) -> tuple[np.ndarray, Method]:
    """Selection probability of every candidate, and how it was computed; draws no slate.

    For evaluating a policy that did not run (counterfactual propensities) as well as the one
    that did.
    """
    prep = _prepare(priorities, groups, limit, max_per_group, budgets, policy)
    a = b = mult = None
    if prep.code == _THOMPSON:
        a, b, mult = _thompson_inputs(prep.score.shape[0], alpha, beta, multiplier)
    full, _, method = _estimate(
        prep, None, alpha=a, beta=b, multiplier=mult, mc_samples=mc_samples, mc_rng=mc_rng, path_bound=path_bound
    )
    assert full is not None
    return full, method


def select_slate(
    priorities: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    *,
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None = None,
    policy: ExplorationPolicy,
    rng: np.random.Generator,
    alpha: Sequence[float] | np.ndarray | None = None,
    beta: Sequence[float] | np.ndarray | None = None,
    multiplier: Sequence[float] | np.ndarray | None = None,
    mc_samples: int | None = None,
    mc_rng: np.random.Generator | None = None,
    path_bound: int | None = None,
) -> SlateSelection:
    """Choose a slate with `policy` and return it with each shown candidate's selection probability.

    `priorities` are the candidates' priorities (≥ 0; unused by Thompson, which ranks on
    posterior draws × `multiplier`); `groups` their group labels; `budgets` the remaining
    contact-policy budget per group label (absent = unlimited); `max_per_group=None` means no
    per-group limit. `rng` makes the choice; the Monte Carlo estimate, when one is needed, uses
    `mc_rng` (default: a fresh generator seeded with MC_SEED).
    """
    score = _priorities(priorities)
    layout = _layout(groups, score.shape[0], limit, max_per_group, budgets)
    code = policy.code
    if code == _THOMPSON:
        return _thompson_slate(score, layout, policy, rng, alpha, beta, multiplier, mc_samples, mc_rng)
    gid, cap, slots = layout
    # The hot path: weights, draw and enumeration in one compiled call.
    u = _uniforms(code, slots, rng)
    chosen, full, exact, valid = _draw_and_enumerate(
        code, float(policy.epsilon), score, policy.temperature, gid, cap, slots, u, _bound(code, path_bound)
    )
    return _drawn(score, layout, policy, chosen, full, exact, valid, mc_samples, mc_rng, path_bound)


def select_scored(
    idx: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    bias: float,
    inputs: np.ndarray,
    groups: Sequence[object],
    *,
    limit: int,
    max_per_group: int | None,
    budgets: Mapping[object, int] | None = None,
    policy: ExplorationPolicy,
    rng: np.random.Generator,
    mc_samples: int | None = None,
    mc_rng: np.random.Generator | None = None,
    path_bound: int | None = None,
) -> tuple[SlateSelection, np.ndarray]:
    """Score the candidates and choose a slate from their priorities, as `select_slate` does;
    returns the slate and a float64[3, n] of every candidate's propensity, priority and
    selection probability (zeros where only the shown were computed).

    The serving pipeline's call: scoring and drawing are one compiled call (`_score_and_draw`).
    `idx`, `val`, `weights` and `bias` are the model's, as engine.scoring.kernels takes them;
    `inputs` rows are each candidate's prior mean, prior strength, model evidence, multiplier,
    and the Beta posterior's alpha and beta (read by Thompson only).
    """
    n = inputs.shape[1]
    layout = _layout(groups, n, limit, max_per_group, budgets)
    gid, cap, slots = layout
    code = policy.code
    thompson = code == _THOMPSON
    out = np.empty((3, n), np.float64)
    # Thompson draws from `rng` in Python, so the kernel only scores (greedy over no slots).
    u = _uniforms(code, 0 if thompson else slots, rng)
    chosen, exact, valid = _score_and_draw(
        idx,
        val,
        weights,
        bias,
        inputs,
        _GREEDY if thompson else code,
        float(policy.epsilon),
        policy.temperature,
        gid,
        cap,
        0 if thompson else slots,
        u,
        _bound(code, path_bound),
        out,
    )
    score = out[1]
    if thompson:
        return _thompson_slate(score, layout, policy, rng, inputs[4], inputs[5], inputs[3], mc_samples, mc_rng), out
    return _drawn(score, layout, policy, chosen, out[2], exact, valid, mc_samples, mc_rng, path_bound), out


_Layout = tuple[np.ndarray, np.ndarray, int]


def _uniforms(code: int, slots: int, rng: np.random.Generator) -> np.ndarray:
    """The uniform draws that choose the slots (greedy draws none)."""
    return rng.random(slots) if slots and code != _GREEDY else np.zeros(slots)


def _drawn(
    score: np.ndarray,
    layout: _Layout,
    policy: ExplorationPolicy,
    chosen: np.ndarray,
    full: np.ndarray,
    exact: bool,
    valid: bool,
    mc_samples: int | None,
    mc_rng: np.random.Generator | None,
    path_bound: int | None,
) -> SlateSelection:
    """The selection of a slate drawn by the compiled call, estimating the selection
    probabilities where its enumeration was over the bound."""
    if not valid:
        raise ValueError(_INVALID_PRIORITIES)
    if exact:
        return _selection(chosen, full[chosen], full, "enumeration", policy)
    code = policy.code
    logw, _ = _weights(code, score, policy.temperature)
    prep = _Prepared(code, float(policy.epsilon), score, logw, *layout)
    # The compiled draw already tried enumerating, and found it over the bound.
    full_or_none, shown, method = _estimate(
        prep,
        chosen,
        alpha=None,
        beta=None,
        multiplier=None,
        mc_samples=mc_samples,
        mc_rng=mc_rng,
        path_bound=path_bound,
        enumerated=True,
    )
    return _selection(chosen, shown, full_or_none, method, policy)


def _thompson_slate(
    score: np.ndarray,
    layout: _Layout,
    policy: ExplorationPolicy,
    rng: np.random.Generator,
    alpha: Sequence[float] | np.ndarray | None,
    beta: Sequence[float] | np.ndarray | None,
    multiplier: Sequence[float] | np.ndarray | None,
    mc_samples: int | None,
    mc_rng: np.random.Generator | None,
) -> SlateSelection:
    """One posterior draw per candidate, the slots filled greedily on draw × multiplier, and
    the selection probabilities estimated (see the module docstring)."""
    gid, cap, slots = layout
    logw, valid = _weights(_THOMPSON, score, policy.temperature)
    if not valid:
        raise ValueError(_INVALID_PRIORITIES)
    chosen = np.empty(0, np.int64)
    a = b = mult = None
    if slots:
        a, b, mult = _thompson_inputs(score.shape[0], alpha, beta, multiplier)
        sampled = rng.beta(a, b) * mult
        chosen = _sample_slate(_GREEDY, 0.0, sampled, sampled, gid, cap, slots, np.zeros(slots))
    prep = _Prepared(_THOMPSON, float(policy.epsilon), score, logw, gid, cap, slots)
    full, shown, method = _estimate(
        prep, chosen, alpha=a, beta=b, multiplier=mult, mc_samples=mc_samples, mc_rng=mc_rng, path_bound=None
    )
    return _selection(chosen, shown, full, method, policy)


def _selection(
    chosen: np.ndarray, shown: np.ndarray, marginals: np.ndarray | None, method: Method, policy: ExplorationPolicy
) -> SlateSelection:
    return SlateSelection(
        chosen=tuple(chosen.tolist()),
        selection_probability=tuple(shown.tolist()),
        marginals=marginals,
        method=method,
        policy=policy.kind,
    )


def in_holdout(customer_id: str, share: float, salt: str) -> bool:
    """Whether this customer belongs to the holdout: sticky, and the same in every process.

    blake2b of the salt and the id (NUL-separated, so ("ab", "c") and ("a", "bc") differ), the
    first 8 bytes read as a number in [0, 1). Changing the salt reshuffles everyone, which is
    how a new holdout period starts.
    """
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(f"{salt}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0 < share


def warm_up() -> float:
    """Compile (or load from the cache) every exploration kernel before the service reports ready.

    Returns the seconds spent.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    pri = np.array([0.3, 0.2, 0.1])
    groups = np.array([0, 0, 1])
    policies = (ExplorationPolicy.greedy(), ExplorationPolicy.epsilon_greedy(0.1), ExplorationPolicy.softmax(1.0))
    for policy in policies:
        select_slate(pri, groups, limit=2, max_per_group=1, policy=policy, rng=rng)
        select_slate(pri, groups, limit=2, max_per_group=1, policy=policy, rng=rng, path_bound=0, mc_samples=2)
    ones = np.ones(3)
    # As the pipeline calls the fused kernel: with or without a model, index matrices writable
    # or read-only (the featurizer's cached layouts are read-only).
    idx = np.array([[0, -1], [1, -1], [0, 1]], dtype=np.int32)
    val = np.ones((3, 2), dtype=np.float32)
    inputs = np.vstack((pri, ones, ones, ones, ones, ones))
    for policy in (*policies, ExplorationPolicy.thompson()):
        for writable in (True, False):
            idx.flags.writeable = writable
            select_scored(idx, val, np.zeros(2), 0.0, inputs, ["a", "a", "b"], limit=2, max_per_group=1, policy=policy, rng=rng)
    select_slate(
        pri,
        ["a", "a", "b"],
        limit=2,
        max_per_group=1,
        policy=ExplorationPolicy.thompson(),
        rng=rng,
        alpha=ones,
        beta=ones,
        multiplier=ones,
        mc_samples=2,
    )
    return time.perf_counter() - start
