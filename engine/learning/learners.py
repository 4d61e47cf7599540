"""Online response learners that can be exported as one linear logit over hashed features.

Serving never calls a learner per candidate: it reads a dense weight vector and a bias that
`export_linear` produces and computes `bias + Σ w[hash(name)]·value` in a compiled kernel. So
every learner here must be exactly linear in its features on the logit scale; that is why the
alternative to plain logistic regression is a bag of logistic regressions that averages
*logits* (still linear) rather than probabilities (not linear), and why naive Bayes, which is
only linear for 0/1 features, is not offered.

Example weights are honoured through river's sample weight `w`, which scales the gradient of
that step (weight 2 moves the model like one step at twice the learning rate). Weight 0 skips
the example entirely.

Per-treatment evidence is not tracked here: a learner only sees feature dicts. The learner
worker counts evidence per treatment id (sum of example weights) and stores it beside the
exported weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from pydantic import Field
from river import linear_model, optim

from engine.learning.features import hash_index
from engine.validation import Strict

if TYPE_CHECKING:
    from engine.learning.spec import ModelSpec

LOGIT_BOUND = 30.0
"""Logits are clipped to ±30 before the sigmoid so probabilities stay strictly inside (0, 1)."""


def sigmoid(logit: float) -> float:
    """Probability from a logit, clipped like river's so it is never exactly 0 or 1."""
    z = max(-LOGIT_BOUND, min(LOGIT_BOUND, logit))
    return 1.0 / (1.0 + math.exp(-z))


@runtime_checkable
class Learner(Protocol):
    """What the worker trains and serving exports; every implementation must be picklable."""

    name: str
    n_learned: int

    def learn_one(self, x: Mapping[str, float], y: bool, weight: float = 1.0) -> None: ...

    def predict_logit_one(self, x: Mapping[str, float]) -> float: ...

    def predict_proba_one(self, x: Mapping[str, float]) -> float: ...

    def export_linear(self, bits: int) -> tuple[np.ndarray, float]: ...

    def clone(self) -> Learner: ...

    @property
    def hyperparameters(self) -> dict[str, Any]: ...


LearnerFactory = Callable[[Mapping[str, Any]], Learner]
"""Builds a fresh learner from a spec's `hyperparameters`; raises pydantic.ValidationError on bad ones."""


class LogisticParams(Strict):
    lr: float = Field(default=0.05, gt=0, le=10, description="SGD learning rate of the weights.")
    l2: float = Field(default=0.0, ge=0, le=1, description="L2 penalty, applied to the weights present in each step.")
    intercept_lr: float = Field(default=0.01, ge=0, le=10, description="Learning rate of the intercept; 0 freezes it.")


def _river_lr(params: LogisticParams) -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(params.lr), l2=params.l2, intercept_lr=params.intercept_lr)


def _check_weight(weight: float) -> None:
    if not weight >= 0 or math.isinf(weight):
        raise ValueError(f"example weight must be finite and >= 0, got {weight!r}")


def _add_weights(out: np.ndarray, weights: Mapping[str, float], bits: int, scale: float = 1.0) -> None:
    for name, w in weights.items():
        out[hash_index(name, bits)] += w * scale


class LogisticLearner:
    """river's LogisticRegression with plain SGD; the reference learner."""

    name: ClassVar[str] = "logistic_regression"

    def __init__(self, params: LogisticParams | None = None) -> None:
        self.params = params or LogisticParams()
        self.model = _river_lr(self.params)
        self.n_learned = 0

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Mapping[str, Any]) -> Self:
        return cls(LogisticParams.model_validate(dict(hyperparameters)))

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.params.model_dump()

    def learn_one(self, x: Mapping[str, float], y: bool, weight: float = 1.0) -> None:
        _check_weight(weight)
        if weight == 0:
            return
        self.model.learn_one(x, bool(y), w=weight)
        self.n_learned += 1

    def predict_logit_one(self, x: Mapping[str, float]) -> float:
        # river's own predict_proba_one would round |logit| > 30 to exactly 0 or 1.
        return float(self.model._raw_dot_one(x))

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return sigmoid(self.predict_logit_one(x))

    def export_linear(self, bits: int) -> tuple[np.ndarray, float]:
        out = np.zeros(1 << bits, dtype=np.float64)
        _add_weights(out, self.model.weights, bits)
        return out, float(self.model.intercept)

    def clone(self) -> LogisticLearner:
        return type(self)(self.params)


class BaggedLogisticParams(LogisticParams):
    n_models: int = Field(default=5, ge=2, le=32, description="Number of logistic regressions in the bag.")
    seed: int = Field(default=0, ge=0, description="Seed of the Poisson resampling, for reproducible training.")


class BaggedLogisticLearner:
    """Online bagging (Oza & Russell) of logistic regressions; the prediction averages their logits.

    Each member sees each example k ~ Poisson(1) times (as sample weight k), which decorrelates
    their SGD noise; averaging logits keeps the ensemble a single linear model, so it exports to
    the same dense vector as plain logistic regression while being less jumpy on small data.
    """

    name: ClassVar[str] = "bagged_logistic"

    def __init__(self, params: BaggedLogisticParams | None = None) -> None:
        self.params = params or BaggedLogisticParams()
        self.models = [_river_lr(self.params) for _ in range(self.params.n_models)]
        self.rng = random.Random(self.params.seed)
        self.n_learned = 0

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Mapping[str, Any]) -> Self:
        return cls(BaggedLogisticParams.model_validate(dict(hyperparameters)))

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.params.model_dump()

    def _poisson1(self) -> int:
        # Knuth's method; with mean 1 it needs about two uniforms per draw.
        limit, k, p = math.exp(-1.0), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def learn_one(self, x: Mapping[str, float], y: bool, weight: float = 1.0) -> None:
        _check_weight(weight)
        if weight == 0:
            return
        label = bool(y)
        for model in self.models:
            k = self._poisson1()
            if k:
                model.learn_one(x, label, w=weight * k)
        self.n_learned += 1

    def predict_logit_one(self, x: Mapping[str, float]) -> float:
        return float(sum(m._raw_dot_one(x) for m in self.models) / len(self.models))

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return sigmoid(self.predict_logit_one(x))

    def export_linear(self, bits: int) -> tuple[np.ndarray, float]:
        out = np.zeros(1 << bits, dtype=np.float64)
        scale = 1.0 / len(self.models)
        for model in self.models:
            _add_weights(out, model.weights, bits, scale)
        return out, float(sum(m.intercept for m in self.models) / len(self.models))

    def clone(self) -> BaggedLogisticLearner:
        return type(self)(self.params)


LEARNERS: dict[str, LearnerFactory] = {
    LogisticLearner.name: LogisticLearner.from_hyperparameters,
    BaggedLogisticLearner.name: BaggedLogisticLearner.from_hyperparameters,
}


def register_learner(name: str, factory: LearnerFactory, *, replace: bool = False) -> None:
    """Make a learner available to model specs under `name`.

    The factory must build a fresh learner from a hyperparameter mapping and accept an empty one
    (all defaults), which the conformance suite relies on.
    """
    if name in LEARNERS and not replace:
        raise ValueError(f"learner `{name}` is already registered")
    LEARNERS[name] = factory


def make_learner(spec: ModelSpec) -> Learner:
    """A fresh learner as the spec describes it."""
    try:
        factory = LEARNERS[spec.learner]
    except KeyError:
        raise ValueError(f"unknown learner `{spec.learner}` (known: {', '.join(sorted(LEARNERS))})") from None
    return factory(spec.hyperparameters)
