"""Offline evaluation over decision logs: the join, the replayed target policies, the CLI entry point."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.table import Table

from engine.decision.exploration import ExplorationPolicy, select_slate, slate_marginals
from engine.errors import InvalidInput
from engine.evaluation.replay import (
    evaluate_logs,
    exploration_policy,
    fixed_action,
    join_logs,
    model_policy,
    read_rounds,
    rounds_from_logs,
    ruleset_policy,
    summary,
    write_rounds,
)
from engine.evaluation.report import render, run_evaluation
from engine.learning.banditlog import LoggedRound
from engine.learning.features import Featurizer
from engine.learning.serving import ModelRegistry, pack_weights
from engine.learning.spec import Features, ModelSpec, Reward
from engine.rules.loader import load_ruleset
from engine.scoring.kernels import score_candidates
from tests.conftest import EXAMPLE_MODELS, EXAMPLE_RULES, T0

REWARD = Reward(positive={"click": 0.2, "accept": 1.0, "purchase": 1.0}, value_weight=1.0, value_cap=500)


def cand(tid: str, group: str, propensity: float, multiplier: float, prior: tuple[float, float] = (1, 9)) -> dict[str, Any]:
    return {"id": tid, "group": group, "kind": "offer", "multiplier": multiplier, "propensity": propensity, "prior": list(prior)}


CANDS = [cand("a", "g1", 0.30, 10.0), cand("b", "g1", 0.20, 12.0), cand("c", "g2", 0.10, 50.0), cand("d", "g3", 0.05, 4.0)]
LIMITS = {"limit": 2, "max_per_group": 1}


def record(
    did: str,
    shown: list[tuple[str, float]],
    *,
    candidates: list[dict[str, Any]] | None = None,
    limits: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A StoredDecision as the stream carries it (orjson of the dataclass)."""
    return {
        "decision_id": did,
        "customer_id": "c-" + did,
        "channel": "web",
        "placement": "home",
        "ts": T0,
        "rules_version": "v1",
        "treatments": [{"id": t, "kind": "offer", "group": "g", "selection_probability": p} for t, p in shown],
        "degraded": False,
        "fallback": False,
        "policy": "epsilon_greedy",
        "model": None,
        "inputs": {"customer": {"tier": "gold"}, "context": {"device": "ios"}},
        "candidates": CANDS if candidates is None else candidates,
        "limits": LIMITS if limits is None else limits,
        **extra,
    }


def fb(did: str, tid: str, outcome: str, value: float | None = None, i: int = 0) -> dict[str, Any]:
    return {
        "feedback_id": f"f-{did}-{tid}-{outcome}-{i}",
        "decision_id": did,
        "treatment_id": tid,
        "customer_id": "c-" + did,
        "outcome": outcome,
        "value": value,
        "ts": T0 + 1000,
    }


# ---------------------------------------------------------------------------------------------
# The join


def test_join_gives_one_row_per_shown_treatment_labelled_with_its_strongest_outcome() -> None:
    decisions = [record("d1", [("c", 0.9), ("a", 0.6)]), record("d2", [("c", 0.9), ("b", 0.3)])]
    feedback = [
        fb("d1", "c", "impression"),
        fb("d1", "c", "click"),
        fb("d1", "c", "purchase", 250.0),  # 1 + 1.0 * 250/500
        fb("d1", "a", "reject"),
        fb("d2", "b", "click"),
        fb("d2", "b", "click", i=1),
    ]
    rounds = rounds_from_logs(decisions, feedback, REWARD)
    got = {(r.decision_id, r.action): (r.reward, r.propensity) for r in rounds}
    assert got == {("d1", "c"): (1.5, 0.9), ("d1", "a"): (0.0, 0.6), ("d2", "c"): (0.0, 0.9), ("d2", "b"): (0.2, 0.3)}
    first = rounds[0]
    assert first.actions == ("a", "b", "c", "d")
    assert first.ts == T0
    assert set(first.context) == {"inputs", "candidates", "limits", "placement", "channel", "customer_id"}
    assert first.context["inputs"] == {"customer": {"tier": "gold"}, "context": {"device": "ios"}}
    assert first.context["limits"] == LIMITS and first.context["candidates"] == CANDS
    assert (first.context["channel"], first.context["placement"], first.context["customer_id"]) == ("web", "home", "c-d1")


def test_join_skips_what_cannot_be_reweighted_and_counts_it() -> None:
    decisions = [
        record("ok", [("a", 0.5)]),
        record("ok", [("a", 0.5)]),
        record("fb", [("a", 1.0)], fallback=True, policy="fallback"),
        record("deg", [("a", 1.0)], degraded=True),
        record("none", [], candidates=[]),
        record("stranger", [("zz", 0.5)]),
        record("zero", [("a", 0.0)]),
    ]
    feedback = [fb("ok", "a", "accept"), fb("ok", "b", "accept"), fb("fb", "a", "accept"), fb("gone", "a", "accept")]
    joined = join_logs(decisions, feedback, REWARD)
    assert [(r.decision_id, r.action, r.reward) for r in joined.rounds] == [("ok", "a", 1.0)]
    c = joined.counts
    assert (c.decisions, c.decisions_used, c.rows) == (7, 1, 1)
    assert c.skipped == {
        "duplicate": 1,
        "degraded": 1,
        "fallback": 1,
        "no_candidates": 1,
        "not_a_candidate": 1,
        "zero_propensity": 1,
    }
    assert (c.feedback, c.feedback_joined, c.feedback_not_shown, c.feedback_skipped, c.feedback_unmatched) == (4, 1, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# Target policies


def _expected(priorities: np.ndarray, groups: list[str], policy: ExplorationPolicy, **kw: Any) -> np.ndarray:
    probs, _ = slate_marginals(priorities, groups, policy=policy, **kw)
    return probs


def _context(candidates: list[dict[str, Any]] = CANDS, limits: dict[str, int] = LIMITS) -> dict[str, Any]:
    rounds = rounds_from_logs([record("x", [(candidates[0]["id"], 0.5)], candidates=candidates, limits=limits)], [], REWARD)
    return dict(rounds[0].context)


@pytest.mark.parametrize(
    "policy",
    [
        ExplorationPolicy.greedy(),
        ExplorationPolicy.epsilon_greedy(0.2),
        ExplorationPolicy.softmax(0.5),
        ExplorationPolicy.random(),
    ],
    ids=lambda p: p.kind,
)
def test_exploration_target_is_the_slate_marginals_of_the_logged_scores(policy: ExplorationPolicy) -> None:
    ctx = _context()
    probs = exploration_policy(policy)(ctx, ("a", "b", "c", "d"))
    priorities = np.array([c["propensity"] * c["multiplier"] for c in CANDS])
    expected = _expected(priorities, ["g1", "g1", "g2", "g3"], policy, limit=2, max_per_group=1)
    assert [probs.get(t, 0.0) for t in "abcd"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert sum(probs.values()) == pytest.approx(2.0)


def test_logged_budgets_shrink_the_replayed_slate() -> None:
    ctx = _context(limits={"limit": 3, "max_per_group": 2, "budget:g1": 0, "budget:g3": 0})
    probs = exploration_policy(ExplorationPolicy.epsilon_greedy(0.3))(ctx, ("a", "b", "c", "d"))
    assert probs == pytest.approx({"c": 1.0})  # g1 and g3 have no budget left: one slot can be filled


def test_thompson_cannot_be_replayed_from_logged_scores() -> None:
    with pytest.raises(InvalidInput, match="thompson"):
        exploration_policy(ExplorationPolicy.thompson())


def test_slate_policies_need_the_logged_choice_set() -> None:
    target = exploration_policy(ExplorationPolicy.greedy())
    with pytest.raises(InvalidInput, match="candidates") as err:
        target({"tier": "gold"}, ("a", "b"))
    assert "models/EVALUATION.md" in err.value.message


def _served(spec: ModelSpec, seed: int = 3) -> Any:
    registry = ModelRegistry([spec])
    weights = np.random.default_rng(seed).normal(0.0, 1.0, spec.dimension)
    meta = {"fingerprint": spec.fingerprint, "bias": -1.0, "evidence": {"a": 200.0, "b": 10.0, "c": 50.0}}
    assert registry.install(spec.id, 1, pack_weights(weights), meta)
    served = registry.get(spec.id)
    assert served is not None and served.weights is not None
    return served


@pytest.mark.parametrize("policy", [ExplorationPolicy.greedy(), ExplorationPolicy.softmax(0.3)], ids=lambda p: p.kind)
def test_model_target_rescores_the_logged_inputs_with_the_other_weights(policy: ExplorationPolicy) -> None:
    spec = ModelSpec(
        id="other",
        learner="logistic_regression",
        hash_bits=8,
        features=Features(customer=["tier"], context=["device"], interactions=[["treatment.id", "customer.tier"]]),
        evidence_threshold=20.0,
    )
    served = _served(spec)
    ctx = _context()
    probs = model_policy(served, policy)(ctx, ("a", "b", "c", "d"))

    featurizer = Featurizer(spec)
    idx, val = featurizer.encode(
        featurizer.shared({"tier": "gold"}, {"device": "ios"}), [(c["id"], c["group"], "offer") for c in CANDS]
    )
    n = len(CANDS)
    _, priority = score_candidates(
        idx,
        val,
        served.weights,
        -1.0,
        np.full(n, 0.1),  # prior mean of Beta(1, 9)
        np.full(n, 20.0),
        np.array([200.0, 10.0, 50.0, 0.0]),
        np.ones(n),
        np.array([c["multiplier"] for c in CANDS]),
        np.ones(n),
    )
    expected = _expected(priority, ["g1", "g1", "g2", "g3"], policy, limit=2, max_per_group=1)
    assert [probs.get(t, 0.0) for t in "abcd"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert sum(probs.values()) == pytest.approx(2.0)
    # The re-scored ranking really differs from the logged one for some weights; d has no evidence: prior only.
    assert priority[3] == pytest.approx(0.1 * 4.0)


def test_model_target_without_a_policy_explores_as_its_spec_says() -> None:
    spec = ModelSpec.model_validate(
        {
            "id": "m",
            "learner": "logistic_regression",
            "hash_bits": 8,
            "features": {"customer": ["tier"]},
            "exploration": {
                "default": {"policy": "greedy"},
                "placements": {"home": {"policy": "epsilon_greedy", "epsilon": 0.5}},
            },
        }
    )
    served = _served(spec)
    ctx = _context()
    implicit = model_policy(served)(ctx, ("a", "b", "c", "d"))
    explicit = model_policy(served, ExplorationPolicy.epsilon_greedy(0.5))(ctx, ("a", "b", "c", "d"))
    assert implicit == pytest.approx(explicit)
    assert len(implicit) == 4  # epsilon gives every candidate some mass


def test_ruleset_target_keeps_offered_candidates_ranked_by_value_lever_prior() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    offered = rules.candidates("web", None)
    kept = offered[:3]
    logged = [cand(t.id, t.group, 0.5, 1.0) for t in kept] + [cand("retired_offer", "sales", 0.9, 1000.0)]
    ctx = _context(candidates=logged, limits={"limit": 2, "max_per_group": 1})
    ctx["placement"] = None
    ids = tuple(c["id"] for c in logged)
    probs = ruleset_policy(rules, ExplorationPolicy.epsilon_greedy(0.1))(ctx, ids)
    assert "retired_offer" not in probs
    priorities = np.array([t.value * t.lever * t.prior_mean for t in kept])
    expected = _expected(priorities, [t.group for t in kept], ExplorationPolicy.epsilon_greedy(0.1), limit=2, max_per_group=1)
    assert [probs.get(t.id, 0.0) for t in kept] == pytest.approx(expected.tolist(), abs=1e-12)
    assert sum(probs.values()) == pytest.approx(expected.sum())
    # A channel the other rule set does not offer anything on leaves an empty slate.
    ctx["channel"] = "nowhere"
    assert ruleset_policy(rules, ExplorationPolicy.greedy())(ctx, ids) == {}


# ---------------------------------------------------------------------------------------------
# Estimates


def test_fixed_action_ips_by_hand() -> None:
    # d1 shows a (p 0.5) and earns 1; d2 shows b and c, a was a candidate but not shown;
    # d3 shows a (p 0.25) with no response; d4 shows a (p 0.8) and earns the click's 0.2.
    decisions = [
        record("d1", [("a", 0.5)]),
        record("d2", [("b", 0.4), ("c", 0.9)]),
        record("d3", [("a", 0.25)]),
        record("d4", [("a", 0.8)]),
    ]
    feedback = [fb("d1", "a", "accept"), fb("d2", "b", "accept"), fb("d4", "a", "click")]
    rounds = rounds_from_logs(decisions, feedback, REWARD)
    est = {e.estimator: e for e in evaluate_logs(rounds, fixed_action("a"), n_boot=0)}
    # IPS = (1/4) [1/0.5 * 1 + 0 + 1/0.25 * 0 + 1/0.8 * 0.2] = (2 + 0.25) / 4
    assert est["ips"].value == pytest.approx(2.25 / 4)
    assert est["ips"].n_decisions == 4 and est["ips"].n == 5
    s = summary(rounds)
    assert (s.rows, s.decisions, s.actions) == (5, 4, 4)
    assert s.value == pytest.approx((1 + 1 + 0.2) / 4)
    assert s.min_propensity == 0.25


def _simulated_log(n: int, policy: ExplorationPolicy, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decisions chosen by the real slate machinery, with responses drawn from fixed rates."""
    rng = np.random.default_rng(seed)
    rates = {"a": 0.3, "b": 0.1, "c": 0.05, "d": 0.4}
    decisions, feedback = [], []
    priorities = np.array([c["propensity"] * c["multiplier"] for c in CANDS])
    groups = [c["group"] for c in CANDS]
    for i in range(n):
        sel = select_slate(priorities, groups, limit=2, max_per_group=1, policy=policy, rng=rng)
        shown = [(CANDS[j]["id"], p) for j, p in zip(sel.chosen, sel.selection_probability, strict=True)]
        did = f"d{i}"
        decisions.append(record(did, shown))
        feedback.extend(fb(did, t, "accept") for t, _ in shown if rng.random() < rates[t])
    return decisions, feedback


def test_replaying_the_logging_policy_weighs_every_row_one() -> None:
    decisions, feedback = _simulated_log(300, ExplorationPolicy.epsilon_greedy(0.3))
    rounds = rounds_from_logs(decisions, feedback, REWARD)
    estimates = evaluate_logs(rounds, exploration_policy(ExplorationPolicy.epsilon_greedy(0.3)), n_boot=0)
    logged = summary(rounds).value
    ips, snips, dr = estimates
    assert ips.value == pytest.approx(logged) and snips.value == pytest.approx(logged)
    # DR swaps the shown rows' baseline for its expectation under the policy: equal only on average.
    assert dr.value == pytest.approx(logged, abs=0.01)
    assert ips.ess == pytest.approx(ips.n)


def test_rounds_survive_export_in_both_formats(tmp_path: Path) -> None:
    decisions, feedback = _simulated_log(20, ExplorationPolicy.softmax(1.0))
    rounds = rounds_from_logs(decisions, feedback, REWARD)
    for name in ("log.jsonl", "log.csv"):
        path = tmp_path / name
        assert write_rounds(rounds, path) == len(rounds)
        assert read_rounds(path) == rounds


# ---------------------------------------------------------------------------------------------
# run_evaluation


async def _run(source: Path, policy: str, **kw: Any) -> Any:
    return await run_evaluation(source=source, policy=policy, **{"n_boot": 50, "seed": 1, **kw})


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    decisions, feedback = _simulated_log(200, ExplorationPolicy.epsilon_greedy(0.3))
    path = tmp_path / "rounds.jsonl"
    write_rounds(rounds_from_logs(decisions, feedback, REWARD), path)
    return path


@pytest.mark.anyio
async def test_run_evaluation_on_a_file(log_file: Path, tmp_path: Path) -> None:
    same = await _run(log_file, "epsilon:0.3", n_boot=0)
    assert [e.estimator for e in same.estimates] == ["ips", "snips", "dr"]
    assert same.estimates[0].value == pytest.approx(same.logging.value)
    assert same.source == str(log_file) and same.counts is None

    export = tmp_path / "again.csv"
    greedy = await _run(log_file, "greedy", clip=20.0, export=export)
    assert greedy.exported == greedy.logging.rows == len(read_rounds(export))
    ips = greedy.estimates[0]
    assert ips.clip == 20.0 and ips.ci_low <= ips.value <= ips.ci_high
    assert ips.value != pytest.approx(greedy.logging.value)

    fixed = await _run(log_file, "fixed:d", n_boot=0)
    rounds = read_rounds(log_file)
    by_hand = sum(r.reward / r.propensity for r in rounds if r.action == "d") / summary(rounds).decisions
    assert fixed.estimates[0].value == pytest.approx(by_hand)

    table = render(greedy)
    assert isinstance(table, Table) and table.row_count == 4
    assert "logging policy" in table.columns[0]._cells


@pytest.mark.anyio
async def test_run_evaluation_time_window_on_a_file(log_file: Path) -> None:
    with pytest.raises(InvalidInput, match="no usable logged rounds"):
        await _run(log_file, "greedy", since_ms=T0 + 1)
    report = await _run(log_file, "greedy", since_ms=T0, until_ms=T0, n_boot=0)
    assert report.logging.decisions == 200


@pytest.mark.anyio
async def test_run_evaluation_of_a_model_and_a_rule_set(log_file: Path) -> None:
    # No published weights to read (no Redis): the spec's learner trains on the earlier half of the
    # 200 decisions and is evaluated on the later half, beside the logging policy's value there.
    model = await _run(log_file, "model:response", models_dir=EXAMPLE_MODELS, rules_dir=EXAMPLE_RULES, n_boot=0)
    assert model.training is not None
    assert (model.training.train_decisions, model.training.eval_decisions) == (100, 100)
    assert model.logging.decisions == 100 and all(e.n_decisions == 100 for e in model.estimates)
    assert not any("priors only" in n for n in model.notes)
    assert all(math.isfinite(e.value) for e in model.estimates)
    bare = await _run(log_file, "model", models_dir=EXAMPLE_MODELS, model_id="response", n_boot=0)
    assert bare.estimates == model.estimates
    # Without training it is judged as it would serve without weights: on its priors, on every decision.
    priors = await _run(log_file, "model:response", models_dir=EXAMPLE_MODELS, n_boot=0, train="never")
    assert priors.training is None and priors.logging.decisions == 200
    assert any("priors only" in n for n in priors.notes)
    assert priors.estimates != model.estimates
    # The logged candidates a..d are not treatments of the example rules: nothing can be shown.
    rules = await _run(log_file, f"rules:{EXAMPLE_RULES}", n_boot=0)
    assert rules.estimates[0].value == 0.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "kw"),
    [
        ("best", {}),
        ("epsilon:lots", {}),
        ("epsilon:1.5", {}),
        ("softmax:0", {}),
        ("softmax:nan", {}),
        ("fixed:", {}),
        ("model", {}),
        ("model:nope", {"models_dir": EXAMPLE_MODELS}),
        ("rules:/no/such/dir", {}),
        ("thompson", {}),
    ],
)
async def test_run_evaluation_refuses_bad_policies_naming_them(log_file: Path, policy: str, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as err:
        await _run(log_file, policy, **kw)
    assert repr(policy.split(":", 1)[-1] or policy) in err.value.message or policy in err.value.message


@pytest.mark.anyio
async def test_run_evaluation_needs_somewhere_to_read_from() -> None:
    with pytest.raises(InvalidInput, match="nothing to read"):
        await run_evaluation(
            source=None,
            redis_client=None,
            policy="greedy",
            rules_dir=None,
            models_dir=None,
            model_id=None,
            clip=None,
            n_boot=0,
            seed=0,
            export=None,
            since_ms=None,
            until_ms=None,
        )


def test_logged_round_context_is_plain_json() -> None:
    rounds = rounds_from_logs([record("d1", [("a", 0.5)])], [], REWARD)
    assert isinstance(rounds[0], LoggedRound) and rounds[0].reward == 0.0
