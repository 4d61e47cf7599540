"""Compiled scoring kernels and their plain-Python twins.

Per decision, every candidate that survived the rules gets

* a model probability ``p_m = sigmoid(bias + Σ_j weights[idx[i, j]] * val[i, j])`` from one
  linear model over hashed sparse features (the treatment itself is just another hashed
  feature, which is why ``bias`` is a single scalar shared by all candidates);
* a propensity that blends it with the treatment's Beta prior, so a treatment the model has
  barely seen is not judged on noise: ``w = evidence / (evidence + prior_strength)`` with
  ``evidence`` the number of examples the model learned for that treatment and
  ``prior_strength`` the evidence at which model and prior weigh the same (the serving pipeline
  passes the model spec's ``evidence_threshold``), ``propensity = (1 - w) · prior_mean + w · p_m``.
  With no evidence ``w`` is 0 and the propensity is exactly the prior mean; with no prior
  (strength 0) and some evidence it is exactly ``p_m``; with neither it falls back to the prior mean;
* ``priority = propensity × context_weight × value × lever``.

Array contract (anything else makes numba compile another specialisation on the hot path, which
is what :func:`warm_up` exists to avoid): C-contiguous ``idx`` int32[n, k] (negative entries are
padding and skipped; an index ≥ len(weights) is a bug upstream and raises ``IndexError``),
``val`` float32[n, k], ``weights`` float64[D], ``bias`` a float, and float64[n] for
``prior_mean``, ``prior_strength``, ``model_evidence``, ``context_weight``, ``value``, ``lever``.

The ``*_py`` twins run the same arithmetic in the same order with the ``math`` module. They are
the readable specification the tests hold the kernels to, and the baseline the benchmark
compares against.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _sigmoid(z: float) -> float:
    # Two branches so exp never sees a large positive argument: no overflow at |z| = 1000.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def propensity_of(
    idx: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    bias: float,
    i: int,
    prior_mean: float,
    prior_strength: float,
    model_evidence: float,
) -> float:
    """Candidate i's propensity (row i of `idx` and `val`); see the module docstring. Shared by
    :func:`score_candidates` and the decision's fused kernel (engine.decision.exploration), so
    the maths is written once."""
    d = weights.shape[0]
    z = bias
    for j in range(idx.shape[1]):
        f = idx[i, j]
        if f < 0:
            continue
        if f >= d:
            raise IndexError("feature index out of range of the weight vector")
        z += weights[f] * np.float64(val[i, j])
    p_model = _sigmoid(z)
    total = model_evidence + prior_strength
    w = model_evidence / total if model_evidence > 0.0 and total > 0.0 else 0.0
    return (1.0 - w) * prior_mean + w * p_model


@njit(cache=True, nogil=True)
def score_candidates(
    idx: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    bias: float,
    prior_mean: np.ndarray,
    prior_strength: np.ndarray,
    model_evidence: np.ndarray,
    context_weight: np.ndarray,
    value: np.ndarray,
    lever: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (propensity, priority), float64[n] each; see the module docstring for the maths."""
    n = idx.shape[0]
    propensity = np.empty(n, np.float64)
    priority = np.empty(n, np.float64)
    for i in range(n):
        p = propensity_of(idx, val, weights, bias, i, prior_mean[i], prior_strength[i], model_evidence[i])
        propensity[i] = p
        priority[i] = p * context_weight[i] * value[i] * lever[i]
    return propensity, priority


def _sigmoid_py(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def score_candidates_py(
    idx: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    bias: float,
    prior_mean: np.ndarray,
    prior_strength: np.ndarray,
    model_evidence: np.ndarray,
    context_weight: np.ndarray,
    value: np.ndarray,
    lever: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The same computation in plain Python, kept as the reference the kernel must match."""
    n = idx.shape[0]
    rows_idx = idx.tolist()
    rows_val = val.tolist()  # float32 -> Python float is exact, so the sums match the kernel
    w_list = weights.tolist()
    d = len(w_list)
    pm, ps, ev = prior_mean.tolist(), prior_strength.tolist(), model_evidence.tolist()
    cw, vl, lv = context_weight.tolist(), value.tolist(), lever.tolist()
    propensity = [0.0] * n
    priority = [0.0] * n
    for i in range(n):
        z = float(bias)
        for f, x in zip(rows_idx[i], rows_val[i], strict=True):
            if f < 0:
                continue
            if f >= d:
                raise IndexError("feature index out of range of the weight vector")
            z += w_list[f] * x
        p_model = _sigmoid_py(z)
        evidence = ev[i]
        total = evidence + ps[i]
        w = evidence / total if evidence > 0.0 and total > 0.0 else 0.0
        p = (1.0 - w) * pm[i] + w * p_model
        propensity[i] = p
        priority[i] = p * cw[i] * vl[i] * lv[i]
    return np.array(propensity, dtype=np.float64), np.array(priority, dtype=np.float64)


@njit(cache=True, nogil=True)
def top_k(priority: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest priorities, best first, ties to the lowest index.

    An insertion into a k-long buffer: O(n·k), which beats a full sort for the slate sizes we
    use (k ≤ 5) and keeps the tie rule explicit instead of depending on a sort's stability.
    """
    n = priority.shape[0]
    k = min(max(k, 0), n)
    out = np.empty(k, np.int64)
    filled = 0
    for i in range(n):
        p = priority[i]
        if filled == k and (k == 0 or not p > priority[out[k - 1]]):
            continue
        pos = filled if filled < k else k - 1
        while pos > 0 and p > priority[out[pos - 1]]:
            out[pos] = out[pos - 1]
            pos -= 1
        out[pos] = i
        if filled < k:
            filled += 1
    return out


def top_k_py(priority: np.ndarray, k: int) -> np.ndarray:
    """Reference for :func:`top_k`: a stable sort on descending priority."""
    values = priority.tolist()
    order = sorted(range(len(values)), key=lambda i: -values[i])
    return np.array(order[: max(k, 0)], dtype=np.int64)


def warm_up() -> float:
    """Compile (or load from the cache) every kernel specialisation the service uses.

    Called before the service reports ready, so the first real decision does not pay seconds
    of compilation. The dtypes here must be the ones callers pass. Returns the seconds spent.
    """
    start = time.perf_counter()
    idx = np.array([[0, -1]], dtype=np.int32)
    val = np.array([[1.0, 0.0]], dtype=np.float32)
    weights = np.zeros(2, dtype=np.float64)
    one = np.ones(1, dtype=np.float64)
    _, priority = score_candidates(idx, val, weights, 0.0, one * 0.5, one, one, one, one, one)
    idx.flags.writeable = False  # the featurizer's cached layouts hand out read-only index matrices
    score_candidates(idx, val, weights, 0.0, one * 0.5, one, one, one, one, one)
    top_k(priority, 1)
    return time.perf_counter() - start
