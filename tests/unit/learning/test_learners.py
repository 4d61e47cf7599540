"""Conformance suite every registered learner must pass, plus the registry itself.

Parametrised over the registry, so a newly registered learner is held to the same contract:
serving relies on `export_linear` being the learner's exact logit, the worker on pickling,
cloning and determinism.
"""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from engine.learning import learners
from engine.learning.features import hash_index
from engine.learning.learners import LEARNERS, Learner, make_learner, register_learner
from engine.learning.spec import ModelSpec

NAMES = sorted(LEARNERS)
POOL = [f"c.f{i}=v{j}" for i in range(8) for j in range(5)] + [f"x.n{i}" for i in range(6)]
UNSEEN = [f"t.id=never_{i}" for i in range(10)]
BITS = 20


def fresh(name: str) -> Learner:
    return LEARNERS[name]({})


def random_stream(seed: int, n: int) -> list[tuple[dict[str, float], bool, float]]:
    """Sparse examples whose label depends on a hidden linear rule, with assorted weights."""
    rng = random.Random(seed)
    truth = {name: rng.uniform(-2, 2) for name in POOL}
    out = []
    for _ in range(n):
        x = {name: (1.0 if "=" in name else rng.uniform(-1, 1)) for name in rng.sample(POOL, rng.randint(1, 12))}
        logit = sum(truth[k] * v for k, v in x.items())
        y = rng.random() < 1 / (1 + math.exp(-logit))
        out.append((x, y, rng.choice([1.0, 1.0, 0.5, 2.0])))
    return out


def probes(seed: int, n: int = 200) -> list[dict[str, float]]:
    rng = random.Random(seed)
    names = POOL + UNSEEN
    return [{k: rng.uniform(-3, 3) for k in rng.sample(names, rng.randint(0, 15))} for _ in range(n)]


def train(learner: Learner, stream: list[tuple[dict[str, float], bool, float]]) -> Learner:
    for x, y, w in stream:
        learner.learn_one(x, y, w)
    return learner


def test_registry_holds_both_learners() -> None:
    assert {"logistic_regression", "bagged_logistic"} <= set(LEARNERS)


def test_probe_names_do_not_collide() -> None:
    """The export check below is exact only without collisions; make sure the names have none."""
    names = POOL + UNSEEN
    assert len({hash_index(n, BITS) for n in names}) == len(names)


@pytest.mark.parametrize("name", NAMES)
def test_satisfies_the_protocol(name: str) -> None:
    learner = fresh(name)
    assert isinstance(learner, Learner)
    assert learner.name == name
    assert learner.n_learned == 0
    assert isinstance(learner.hyperparameters, dict)


@pytest.mark.parametrize("name", NAMES)
def test_export_linear_is_the_learners_logit(name: str) -> None:
    learner = train(fresh(name), random_stream(1, 800))
    weights, bias = learner.export_linear(BITS)
    assert weights.shape == (2**BITS,) and weights.dtype == np.float64
    assert np.count_nonzero(weights) > 0
    for x in probes(2):
        logit = bias + sum(weights[hash_index(k, BITS)] * v for k, v in x.items())
        assert logit == pytest.approx(learner.predict_logit_one(x), abs=1e-9)
        assert 1 / (1 + math.exp(-logit)) == pytest.approx(learner.predict_proba_one(x), abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip_predicts_and_learns_identically(name: str) -> None:
    learner = train(fresh(name), random_stream(3, 300))
    copy = pickle.loads(pickle.dumps(learner))
    assert [copy.predict_proba_one(x) for x in probes(4)] == [learner.predict_proba_one(x) for x in probes(4)]
    assert copy.n_learned == learner.n_learned
    more = random_stream(5, 100)
    train(learner, more)
    train(copy, more)
    assert [copy.predict_proba_one(x) for x in probes(4)] == [learner.predict_proba_one(x) for x in probes(4)]


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_fresh_and_independent(name: str) -> None:
    original = train(fresh(name), random_stream(6, 300))
    clone = original.clone()
    assert type(clone) is type(original)
    assert clone.hyperparameters == original.hyperparameters
    assert clone.n_learned == 0
    before = [clone.predict_proba_one(x) for x in probes(7)]
    assert all(abs(p - 0.5) < 0.05 for p in before)
    train(original, random_stream(8, 300))
    assert [clone.predict_proba_one(x) for x in probes(7)] == before


@pytest.mark.parametrize("name", NAMES)
def test_training_is_deterministic(name: str) -> None:
    stream = random_stream(9, 500)
    a, b = train(fresh(name), stream), train(fresh(name), stream)
    assert [a.predict_proba_one(x) for x in probes(10)] == [b.predict_proba_one(x) for x in probes(10)]
    wa, ba = a.export_linear(16)
    wb, bb = b.export_linear(16)
    assert ba == bb and np.array_equal(wa, wb)


@pytest.mark.parametrize("name", NAMES)
def test_unseen_and_missing_features_give_finite_probabilities(name: str) -> None:
    learner = train(fresh(name), random_stream(11, 200))
    exported = learner.export_linear(12)
    for x in ({}, {"never.seen": 3.0}, {name: 1.0 for name in UNSEEN}, {POOL[0]: 1.0, "never.seen": -2.0}):
        p = learner.predict_proba_one(x)
        assert math.isfinite(p) and 0.0 < p < 1.0
    # Predicting must not grow the model with the names it was asked about.
    weights, bias = learner.export_linear(12)
    assert bias == exported[1] and np.array_equal(weights, exported[0])


@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits_stay_strictly_inside_zero_one(name: str) -> None:
    learner = fresh(name)
    for _ in range(50):
        learner.learn_one({"a": 1.0}, True)
        learner.learn_one({"b": 1.0}, False)
    assert 0.0 < learner.predict_proba_one({"b": 1e6}) < learner.predict_proba_one({"a": 1e6}) < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_learning_separates_a_simple_stream(name: str) -> None:
    rng = random.Random(12)
    learner = fresh(name)
    positives, negatives = [], []
    for i in range(2_000):
        tier = rng.choice(["gold", "silver", "bronze"])
        x = {f"c.tier={tier}": 1.0, f"x.device={rng.choice(['ios', 'android'])}": 1.0, "c.age": rng.uniform(0, 1)}
        y = tier == "gold"
        if i >= 1_500:
            (positives if y else negatives).append(learner.predict_proba_one(x))
        learner.learn_one(x, y)
    assert learner.n_learned == 2_000
    assert np.mean(positives) > np.mean(negatives) + 0.2


@pytest.mark.parametrize("name", NAMES)
def test_example_weights(name: str) -> None:
    x = {"c.tier=gold": 1.0}
    zero = fresh(name)
    zero.learn_one(x, True, 0.0)
    assert zero.n_learned == 0 and zero.predict_proba_one(x) == fresh(name).predict_proba_one(x)
    light, heavy = fresh(name), fresh(name)
    for _ in range(20):
        light.learn_one(x, True, 0.5)
        heavy.learn_one(x, True, 2.0)
    assert heavy.predict_proba_one(x) > light.predict_proba_one(x) > 0.5
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="weight"):
            fresh(name).learn_one(x, True, bad)


def test_make_learner_follows_the_spec() -> None:
    spec = ModelSpec.model_validate(
        {"id": "m", "learner": "bagged_logistic", "hyperparameters": {"n_models": 3, "lr": 0.1, "seed": 4}}
    )
    learner = make_learner(spec)
    assert learner.name == "bagged_logistic"
    assert learner.hyperparameters == {"lr": 0.1, "l2": 0.0, "intercept_lr": 0.01, "n_models": 3, "seed": 4}
    with pytest.raises(ValueError, match="unknown learner"):
        make_learner(spec.model_copy(update={"learner": "nope"}))


def test_register_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learners, "LEARNERS", dict(LEARNERS))
    register_learner("lr_fast", lambda hp: learners.LogisticLearner.from_hyperparameters({"lr": 0.5, **hp}))
    assert learners.LEARNERS["lr_fast"]({}).hyperparameters["lr"] == 0.5
    with pytest.raises(ValueError, match="already registered"):
        register_learner("lr_fast", learners.LogisticLearner.from_hyperparameters)
    register_learner("lr_fast", learners.LogisticLearner.from_hyperparameters, replace=True)
    assert learners.LEARNERS["lr_fast"]({}).hyperparameters["lr"] == 0.05
