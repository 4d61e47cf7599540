"""Scoring: from hashed sparse features and priors to a propensity and a priority per candidate.

The hot loop lives in compiled kernels (``engine.scoring.kernels``); callers build the arrays
once per decision so the kernel never touches Python objects.
"""

from __future__ import annotations

from engine.scoring.kernels import score_candidates, score_candidates_py, top_k, top_k_py, warm_up

__all__ = ["score_candidates", "score_candidates_py", "top_k", "top_k_py", "warm_up"]
