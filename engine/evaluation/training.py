"""Train a candidate model's learner on part of a log, so it can be evaluated on the rest.

A model spec that never served (a disabled alternative, a new learner or feature set) has no
published weights: the learner worker only trains enabled models, and only on decisions their
own model scored. Evaluating such a spec as it would serve today measures its priors, not its
learner. Here the spec's own learner (:func:`engine.learning.learners.make_learner`) learns from
logged rounds the way the worker learns from decision records: the features come from the
fields logged in the round's ``inputs`` (what the logging model read), the treatment's id,
group and kind from its logged candidate entry, and the label from the round's reward.

Why a held-out split
--------------------
A model scored on the very rounds it learned from is flattered: it has partly memorised their
outcomes, so its estimated value is biased upwards, and the more flexible the learner the more
so. The log is therefore split *chronologically* by decision: the learner trains on the
earliest ``train_share`` of decisions, in log order (online learners are order-dependent), and
only the later decisions are evaluated. Time order rather than a random split because that is
how the model would be used: trained on the past, serving the future; a random split would let
it learn from rounds interleaved with (and correlated with, through the same customers and the
same campaigns) the ones it is judged on. Cross-fitting (k folds, each scored by a model trained
on the others) would evaluate every round, but each of its k models would have learned from
rounds later than the ones it scores, and its value would be that of an average of k models
rather than the one that would ship. The price of the split is a smaller evaluation sample,
hence wider intervals than an evaluation of published weights on the whole log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInput
from engine.learning.banditlog import LoggedRound
from engine.learning.features import Featurizer
from engine.learning.learners import make_learner
from engine.learning.serving import ModelRegistry, ServedModel, pack_weights
from engine.learning.spec import ModelSpec

__all__ = ["TRAIN_SHARE", "TrainingSplit", "split_chronologically", "train_on_rounds"]

TRAIN_SHARE = 0.5
"""Half to learn, half to judge: the learner needs enough to learn from, the estimate enough
decisions for a usable interval, and neither matters more by default."""


@dataclass(frozen=True, slots=True)
class TrainingSplit:
    """Which part of the log trained a candidate model and which part evaluated it."""

    train_rows: int
    train_decisions: int
    eval_rows: int
    eval_decisions: int
    train_until_ts: int | None
    """Latest ``ts`` among the training decisions (None when the log has no times)."""
    eval_from_ts: int | None
    """Earliest ``ts`` among the evaluated decisions."""

    def describe(self, model_id: str) -> str:
        window = ""
        if self.train_until_ts is not None and self.eval_from_ts is not None:
            window = f" (trained up to ts {self.train_until_ts}, evaluated from ts {self.eval_from_ts})"
        return (
            f"model {model_id!r} trained on the first {self.train_decisions} decisions ({self.train_rows} rows) "
            f"and evaluated on the later {self.eval_decisions} ({self.eval_rows} rows){window}"
        )


def _decisions(rounds: Sequence[LoggedRound]) -> list[list[LoggedRound]]:
    """Rows grouped by decision, in the order each decision first appears."""
    groups: dict[Any, list[LoggedRound]] = {}
    for i, r in enumerate(rounds):
        groups.setdefault(r.decision_id if r.decision_id is not None else ("row", i), []).append(r)
    return list(groups.values())


def split_chronologically(
    rounds: Sequence[LoggedRound], train_share: float = TRAIN_SHARE
) -> tuple[list[LoggedRound], list[LoggedRound]] | None:
    """(training rows, evaluation rows), whole decisions on either side; None when either would be empty.

    Decisions are ordered by ``ts`` when every row has one (ties keep log order), else by log
    order, which for an exported or streamed log is the order they were made in. The rows of a
    slate stay together: splitting a decision would let the model learn half of what it is
    judged on.
    """
    if not 0.0 < train_share < 1.0:
        raise InvalidInput(f"train_share must be in (0, 1), got {train_share!r}", field="train_share")
    decisions = _decisions(rounds)
    if all(r.ts is not None for r in rounds):
        decisions.sort(key=lambda d: min(int(r.ts) for r in d if r.ts is not None))
    n_train = int(len(decisions) * train_share)
    if n_train < 1 or n_train >= len(decisions):
        return None
    return [r for d in decisions[:n_train] for r in d], [r for d in decisions[n_train:] for r in d]


def _treatment_key(r: LoggedRound) -> tuple[str, str, str]:
    candidates = r.context.get("candidates")
    if isinstance(candidates, list):
        for c in candidates:
            if isinstance(c, Mapping) and c.get("id") == r.action:
                return (r.action, str(c.get("group") or ""), str(c.get("kind") or ""))
    return (r.action, "", "")


def _fields(inputs: Any, namespace: str) -> Mapping[str, Any] | None:
    if not isinstance(inputs, Mapping):
        return None
    found = inputs.get(namespace)
    return found if isinstance(found, Mapping) else None


def train_on_rounds(spec: ModelSpec, rounds: Sequence[LoggedRound]) -> ServedModel:
    """The spec's learner trained on ``rounds``, one example per row in order, as serving would load it.

    Labels follow the learner worker: a row with a positive reward is a positive example
    weighted by that reward (the strongest outcome's weight, when rounds were joined with this
    spec's reward); any other row is a negative with the spec's ``negative_weight``. Evidence,
    successes and failures per treatment are tallied as the worker tallies them, so prior
    blending and Thompson sampling see what they would see after the same training.
    """
    learner = make_learner(spec)
    featurizer = Featurizer(spec)
    evidence: dict[str, float] = {}
    successes: dict[str, float] = {}
    failures: dict[str, float] = {}
    for r in rounds:
        label = r.reward > 0.0
        weight = r.reward if label else spec.reward.negative_weight
        inputs = r.context.get("inputs")
        x = featurizer.featurize(_fields(inputs, "customer"), _fields(inputs, "context"), _treatment_key(r))
        learner.learn_one(x, label, weight)
        evidence[r.action] = evidence.get(r.action, 0.0) + weight
        tally = successes if label else failures
        tally[r.action] = tally.get(r.action, 0.0) + weight
    registry = ModelRegistry([spec])
    weights, bias = learner.export_linear(spec.hash_bits)
    meta = {"fingerprint": spec.fingerprint, "bias": bias, "evidence": evidence, "successes": successes, "failures": failures}
    if not registry.install(spec.id, 1, pack_weights(weights), meta):
        raise AssertionError(f"weights trained for model {spec.id!r} did not fit its own spec")
    served = registry.get(spec.id)
    assert served is not None
    return served
