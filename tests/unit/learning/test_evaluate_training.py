"""Evaluating a model spec that never served: its learner is trained on the earlier log and judged on the rest."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.decision.exploration import ExplorationPolicy, select_slate
from engine.errors import InvalidInput
from engine.evaluation.replay import rounds_from_logs, write_rounds
from engine.evaluation.report import EvaluationReport, render, run_evaluation
from engine.evaluation.training import split_chronologically, train_on_rounds
from engine.learning.banditlog import LoggedRound
from engine.learning.spec import Reward, load_model_specs
from tests.conftest import EXAMPLE_MODELS, T0

# Gold customers take `a`, silver ones take `c`; the logging policy ignores the tier (it ranks
# on fixed scores and explores half the time), so only a model that learns tier x treatment can
# do better than it. The best policy earns 0.6 per decision.
RATES = {"gold": {"a": 0.6, "b": 0.1, "c": 0.1, "d": 0.1}, "silver": {"a": 0.1, "b": 0.1, "c": 0.6, "d": 0.1}}
BEST_VALUE = 0.6
CANDS = [
    {"id": t, "group": f"g{t}", "kind": "offer", "multiplier": 1.0, "propensity": p, "prior": [1, 9]}
    for t, p in zip("abcd", (0.3, 0.2, 0.1, 0.05), strict=True)
]
LIMITS = {"limit": 1, "max_per_group": 1}

CHALLENGER = """
id: challenger
description: A tier-aware alternative that never served.
enabled: false
learner: bagged_logistic
hyperparameters: {n_models: 3, seed: 1, lr: 0.05}
hash_bits: 12
features:
  customer: [tier]
  treatment: [id]
  interactions: [[treatment.id, customer.tier]]
evidence_threshold: 10
exploration: {default: {policy: greedy}}
holdout_share: 0
"""


def _log(n: int, seed: int) -> list[LoggedRound]:
    rng = np.random.default_rng(seed)
    priorities = np.array([c["propensity"] * c["multiplier"] for c in CANDS])
    groups = [c["group"] for c in CANDS]
    decisions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for i in range(n):
        tier = "gold" if rng.random() < 0.5 else "silver"
        sel = select_slate(priorities, groups, limit=1, max_per_group=1, policy=ExplorationPolicy.epsilon_greedy(0.5), rng=rng)
        shown = [(CANDS[j]["id"], p) for j, p in zip(sel.chosen, sel.selection_probability, strict=True)]
        did = f"d{i:05d}"
        decisions.append(
            {
                "decision_id": did,
                "customer_id": f"c{i}",
                "channel": "web",
                "placement": "home",
                "ts": T0 + i * 1000,
                "treatments": [{"id": t, "kind": "offer", "group": "g", "selection_probability": p} for t, p in shown],
                "inputs": {"customer": {"tier": tier}, "context": {}},
                "candidates": CANDS,
                "limits": LIMITS,
            }
        )
        feedback.extend(
            {"decision_id": did, "treatment_id": t, "outcome": "accept"} for t, _ in shown if rng.random() < RATES[tier][t]
        )
    return rounds_from_logs(decisions, feedback, Reward())


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    (path / "challenger.yaml").write_text(CHALLENGER, encoding="utf-8")
    return path


def _write(rounds: list[LoggedRound], path: Path) -> Path:
    write_rounds(rounds, path)
    return path


async def _run(source: Path, policy: str, models_dir: Path, **kw: Any) -> EvaluationReport:
    return await run_evaluation(source=source, policy=policy, models_dir=models_dir, **{"n_boot": 200, **kw})


def _by_name(report: EvaluationReport) -> dict[str, Any]:
    return {e.estimator: e for e in report.estimates}


@pytest.mark.anyio
async def test_a_model_that_never_served_is_trained_on_the_earlier_half_and_judged_on_the_later(
    models_dir: Path, tmp_path: Path
) -> None:
    # Log order is not time order here, so the split must follow the timestamps.
    rounds = _log(2000, seed=3)
    shuffled = [rounds[i] for i in np.random.default_rng(0).permutation(len(rounds))]
    source = _write(shuffled, tmp_path / "log.jsonl")

    trained = await _run(source, "model:challenger", models_dir)
    split = trained.training
    assert split is not None
    assert (split.train_decisions, split.train_rows, split.eval_decisions, split.eval_rows) == (1000, 1000, 1000, 1000)
    assert (split.train_until_ts, split.eval_from_ts) == (T0 + 999 * 1000, T0 + 1000 * 1000)
    # Estimates and the logging baseline both rest on the held-out half only.
    assert trained.logging.decisions == 1000
    assert all(e.n_decisions == 1000 for e in trained.estimates)
    held_out = [r for r in rounds if r.ts is not None and r.ts >= T0 + 1000 * 1000]
    assert trained.logging.value == pytest.approx(sum(r.reward for r in held_out) / 1000)
    assert any("trained on the first 1000 decisions" in n and "later 1000" in n for n in trained.notes)
    assert "trained on the first 1000 decisions" in str(render(trained).caption)

    priors = await _run(source, "model:challenger", models_dir, train="never")
    assert priors.training is None and any("priors only" in n for n in priors.notes)
    assert priors.logging.decisions == 2000

    est, prior_est = _by_name(trained), _by_name(priors)
    for name in ("snips", "dr"):
        # The learned tier x treatment ranking is worth far more than the tier-blind logging policy or the priors.
        assert est[name].ci_low > trained.logging.value + 0.1
        assert est[name].value > prior_est[name].ci_high + 0.1
    assert est["dr"].ci_low <= BEST_VALUE <= est["dr"].ci_high


@pytest.mark.anyio
async def test_the_shipped_alternative_spec_is_trained_rather_than_judged_on_its_priors(tmp_path: Path) -> None:
    # response_bagged is disabled, so it never has published weights. It explores by Thompson
    # sampling, which ranks on each treatment's successes and failures: trained, it leaves the
    # treatments nobody takes (b, d) alone; on priors it samples them as often as the others.
    source = _write(_log(600, seed=4), tmp_path / "log.jsonl")
    trained = await _run(source, "model:response_bagged", EXAMPLE_MODELS)
    priors = await _run(source, "model:response_bagged", EXAMPLE_MODELS, train="never")
    assert trained.training is not None
    assert (trained.training.train_decisions, trained.training.eval_decisions) == (300, 300)
    assert any("trained on the first 300 decisions" in n and "no Redis client" in n for n in trained.notes)
    assert _by_name(trained)["snips"].value > _by_name(priors)["snips"].ci_high


@pytest.mark.anyio
async def test_too_few_decisions_to_hold_any_out_leave_the_priors(models_dir: Path, tmp_path: Path) -> None:
    source = _write(_log(1, seed=5), tmp_path / "one.jsonl")
    report = await _run(source, "model:challenger", models_dir, n_boot=0)
    assert report.training is None
    assert any("too few" in n and "priors only" in n for n in report.notes)
    assert report.logging.decisions == 1
    assert math.isfinite(_by_name(report)["ips"].value)


@pytest.mark.anyio
@pytest.mark.parametrize(("kw", "field"), [({"train": "sometimes"}, "train"), ({"train_share": 1.0}, "train_share")])
async def test_training_options_are_checked_before_the_log_is_read(
    models_dir: Path, tmp_path: Path, kw: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        await _run(tmp_path / "absent.jsonl", "model:challenger", models_dir, **kw)
    assert err.value.field == field


def test_the_split_keeps_decisions_whole_and_follows_time() -> None:
    def row(did: str, ts: int | None, action: str = "a") -> LoggedRound:
        return LoggedRound(context={}, action=action, reward=0.0, propensity=0.5, decision_id=did, ts=ts)

    rounds = [row("late", 30), row("early", 10), row("late", 30, "b"), row("mid", 20), row("early", 10, "b")]
    split = split_chronologically(rounds, 0.5)
    assert split is not None
    train, held_out = split
    assert [(r.decision_id, r.action) for r in train] == [("early", "a"), ("early", "b")]
    assert [(r.decision_id, r.action) for r in held_out] == [("mid", "a"), ("late", "a"), ("late", "b")]
    # Without a time on every row, log order is the order.
    untimed = [row("x", None), row("y", 5), row("z", 1)]
    split = split_chronologically(untimed, 0.34)
    assert split is not None and [r.decision_id for r in split[0]] == ["x"]
    assert split_chronologically([row("only", 1)], 0.5) is None


def test_training_labels_and_tallies_follow_the_learner_worker(models_dir: Path) -> None:
    (spec,) = load_model_specs(models_dir)
    context = {"inputs": {"customer": {"tier": "gold"}}, "candidates": CANDS, "limits": LIMITS}
    rounds = [
        LoggedRound(context=context, action="a", reward=1.0, propensity=0.5, decision_id="d1"),
        LoggedRound(context=context, action="a", reward=0.0, propensity=0.5, decision_id="d2"),
        LoggedRound(context=context, action="b", reward=0.2, propensity=0.5, decision_id="d3"),
    ]
    served = train_on_rounds(spec, rounds)
    assert served.weights is not None and np.count_nonzero(served.weights) > 0
    assert served.successes == {"a": 1.0, "b": 0.2}
    assert served.failures == {"a": spec.reward.negative_weight}
    assert served.evidence == {"a": 1.0 + spec.reward.negative_weight, "b": 0.2}
    assert served.fingerprint == spec.fingerprint
