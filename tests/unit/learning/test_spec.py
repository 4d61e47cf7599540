"""Model specs: the examples load; mistakes are refused with every problem at its file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.errors import RuleSetError
from engine.learning.learners import BaggedLogisticLearner, LogisticLearner, make_learner
from engine.learning.spec import ModelSpec, active_model, load_model_specs
from engine.rules.loader import load_ruleset
from tests.conftest import EXAMPLE_RULES

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_MODELS = ROOT / "models"
CUSTOMER = {"tier": "string", "age": "number", "segment": "string", "email_opt_in": "bool"}
CONTEXT = {"device": "string", "party_size": "number"}

MINIMAL = """
id: response
learner: logistic_regression
features:
  customer: [tier]
  treatment: [id]
  interactions:
    - [treatment.id, customer.tier]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(directory: Path) -> list[ModelSpec]:
    return load_model_specs(directory, customer_fields=CUSTOMER, context_fields=CONTEXT)


def refused(directory: Path) -> RuleSetError:
    with pytest.raises(RuleSetError) as info:
        load(directory)
    return info.value


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_example_specs_load_against_the_example_rule_fields() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    ns = rules.vocabulary.namespaces
    specs = load_model_specs(EXAMPLE_MODELS, customer_fields=ns["customer"], context_fields=ns["context"])
    by_id = {s.id: s for s in specs}
    assert set(by_id) == {"response", "response_bagged"}
    assert active_model(specs, None) is by_id["response"]
    assert active_model(specs, "agent_prompt") is by_id["response"]
    assert isinstance(make_learner(by_id["response"]), LogisticLearner)
    bagged = make_learner(by_id["response_bagged"])
    assert isinstance(bagged, BaggedLogisticLearner)
    assert bagged.hyperparameters["n_models"] == 5
    assert by_id["response"].exploration.for_placement("agent_prompt").policy == "greedy"
    assert by_id["response"].exploration.for_placement("somewhere_else").policy == "epsilon_greedy"


def test_minimal_spec_gets_documented_defaults(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL)
    (spec,) = load(tmp_path)
    assert spec.hash_bits == 18 and spec.dimension == 2**18
    assert spec.enabled and spec.placements == []
    assert spec.holdout_share == 0.0
    assert spec.reward.positive == {"accept": 1.0, "purchase": 1.0}


def test_unknown_key_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL.replace("  customer: [tier]", "  customr: [tier]"))
    err = refused(tmp_path)
    assert len(err.problems) == 1
    problem = err.problems[0]
    assert "unknown key `customr`" in problem.message
    assert problem.pos is not None
    assert (problem.pos.file, problem.pos.line, problem.pos.column) == (str(path), line_of(path, "customr"), 3)
    assert f"{path}:{line_of(path, 'customr')}:3" in str(err)


def test_unknown_learner_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL.replace("logistic_regression", "logistic_regresion"))
    (problem,) = refused(tmp_path).problems
    assert "unknown learner `logistic_regresion`" in problem.message
    assert problem.hint == "did you mean `logistic_regression`?"
    assert problem.pos is not None and problem.pos.line == line_of(path, "learner:")


def test_unknown_feature_names_are_refused_with_hints(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        """
        id: response
        learner: logistic_regression
        features:
          customer: [teir]
          context: [devise]
          treatment: [id, colour]
          interactions:
            - [treatment.id, customer.segmnt]
        """,
    )
    problems = refused(tmp_path).problems
    by_message = {p.message.split(" (")[0]: p for p in problems}
    assert by_message["unknown customer field `teir`"].hint == "did you mean `tier`?"
    assert by_message["unknown customer field `teir`"].pos.line == line_of(path, "teir")  # type: ignore[union-attr]
    assert by_message["unknown context field `devise`"].hint == "did you mean `device`?"
    assert by_message["unknown customer field `segmnt`"].pos.line == line_of(path, "segmnt")  # type: ignore[union-attr]
    # `colour` fails the schema (treatment fields are a closed set) and is reported too.
    assert any("treatment" in p.message and p.pos and p.pos.line == line_of(path, "colour") for p in problems)


def test_undeclared_field_without_close_match_hints_at_the_rule_set(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL.replace("[tier]", "[shoe_size]"))
    (problem,) = refused(tmp_path).problems
    assert problem.hint == "declare it under `fields.customer` in the rule set"


def test_feature_names_are_not_checked_without_declared_fields(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL.replace("[tier]", "[shoe_size]"))
    (spec,) = load_model_specs(tmp_path)
    assert spec.features.customer == ["shoe_size"]


def test_number_fields_need_a_numeric_transform(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL.replace("[tier]", "[tier, age]"))
    (problem,) = refused(tmp_path).problems
    assert "`customer.age` is a number field and needs a numeric transform" in problem.message
    assert problem.pos is not None and problem.pos.line == line_of(path, "age")
    write(tmp_path, "m.yaml", MINIMAL.replace("[tier]", "[tier, age]") + "  numeric:\n    customer.age: {scale: 100}\n")
    (spec,) = load(tmp_path)
    assert spec.features.numeric["customer.age"].apply(37) == pytest.approx(0.37)


def test_numeric_transform_must_be_for_a_used_non_treatment_field(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL + "  numeric:\n    customer.agee: {scale: 100}\n    treatment.id: {scale: 2}\n")
    messages = [p.message for p in refused(tmp_path).problems]
    assert any("which no feature uses" in m and "customer.agee" in m for m in messages)
    assert any("treatment fields cannot be numeric" in m for m in messages)
    path = write(tmp_path, "m.yaml", MINIMAL + "  numeric:\n    customer.tier: {scale: 0}\n")
    (problem,) = refused(tmp_path).problems
    assert "greater than 0" in problem.message
    assert problem.pos is not None and problem.pos.line == line_of(path, "scale: 0")


def test_interactions_are_validated(tmp_path: Path) -> None:
    interactions = textwrap.dedent(
        """
        id: response
        learner: logistic_regression
        features:
          customer: [tier]
          interactions:
        """
    )
    write(
        tmp_path,
        "m.yaml",
        interactions
        + "    - [treatment.id, treatment.id]\n"
        + "    - [customer.tier, treatment.id]\n"
        + "    - [treatment.id, customer.tier]\n"
        + "    - [treatment.id, treatment.colour]\n",
    )
    problems = refused(tmp_path).problems
    messages = [p.message for p in problems]
    assert any("same field twice" in m for m in messages)
    assert any("duplicate interaction (same fields as interaction 1)" in m for m in messages)
    assert any(p.hint == "treatment features are id, group, kind" for p in problems)
    write(tmp_path, "m.yaml", interactions + "    - [customer.tier]\n    - [tier, treatment.id]\n")
    messages = [p.message for p in refused(tmp_path).problems]
    assert any("at least 2 items" in m for m in messages)
    assert any("should match pattern" in m for m in messages)


@pytest.mark.parametrize(
    ("exploration", "expected"),
    [
        ("{policy: epsilon_greedy, epsilon: 1.5}", "less than or equal to 1"),
        ("{policy: epsilon_greedy}", "missing required key `epsilon`"),
        ("{policy: softmax, temperature: 0}", "greater than 0"),
        ("{policy: greedy, epsilon: 0.1}", "unknown key `epsilon`"),
        ("{policy: thompson, temperature: 1}", "unknown key `temperature`"),
        ("{policy: ucb}", "does not match any of the expected tags"),
    ],
)
def test_exploration_policy_parameters_are_validated(tmp_path: Path, exploration: str, expected: str) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL + f"exploration:\n  placements:\n    web_home: {exploration}\n")
    (problem,) = refused(tmp_path).problems
    assert expected in problem.message
    assert problem.pos is not None and problem.pos.line == line_of(path, "web_home")


def test_exploration_per_placement_overrides_the_default(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        MINIMAL
        + "exploration:\n  default: {policy: softmax, temperature: 0.5}\n  placements:\n    agent_prompt: {policy: greedy}\n",
    )
    (spec,) = load(tmp_path)
    assert spec.exploration.for_placement("agent_prompt").policy == "greedy"
    default = spec.exploration.for_placement(None)
    assert default.policy == "softmax" and default.temperature == 0.5  # type: ignore[union-attr]


def test_hyperparameters_are_validated_by_the_learner_at_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL + "hyperparameters:\n  lr: -1\n  learning_rate: 0.1\n")
    problems = refused(tmp_path).problems
    assert {p.pos.line for p in problems if p.pos} == {line_of(path, "lr: -1"), line_of(path, "learning_rate")}
    assert all(p.message.startswith("learner `logistic_regression`: ") for p in problems)
    assert any("unknown key `learning_rate`" in p.message for p in problems)


def test_bagged_learner_has_its_own_hyperparameters(tmp_path: Path) -> None:
    text = MINIMAL.replace("logistic_regression", "bagged_logistic") + "hyperparameters:\n  n_models: 1\n"
    write(tmp_path, "m.yaml", text)
    (problem,) = refused(tmp_path).problems
    assert "n_models" in problem.message


def test_only_one_enabled_default_and_one_model_per_placement(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    b = write(tmp_path, "b.yaml", MINIMAL.replace("id: response", "id: other"))
    problems = refused(tmp_path).problems
    assert len(problems) == 1 and "two enabled default models" in problems[0].message
    assert problems[0].pos is not None and problems[0].pos.file == str(b)

    write(tmp_path, "b.yaml", MINIMAL.replace("id: response", "id: other") + "placements: [agent_prompt]\n")
    c = write(tmp_path, "c.yaml", MINIMAL.replace("id: response", "id: third") + "placements: [web_home, agent_prompt]\n")
    (problem,) = refused(tmp_path).problems
    assert "placement `agent_prompt` is already served" in problem.message
    assert problem.pos is not None and problem.pos.file == str(c)

    write(tmp_path, "c.yaml", MINIMAL.replace("id: response", "id: third") + "enabled: false\nplacements: [agent_prompt]\n")
    specs = load(tmp_path)
    assert active_model(specs, "agent_prompt").id == "other"  # type: ignore[union-attr]
    assert active_model(specs, "web_home").id == "response"  # type: ignore[union-attr]
    assert active_model(specs, None).id == "response"  # type: ignore[union-attr]
    assert active_model([s for s in specs if s.id != "response"], "web_home") is None


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "b.yaml", MINIMAL + "enabled: false\n")
    (problem,) = refused(tmp_path).problems
    assert "duplicate model id `response`" in problem.message


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL.replace("[tier]", "[teir]"))
    write(tmp_path, "b.yaml", "id: b\nlearner: [unclosed\n")
    write(tmp_path, "c.yaml", "- just\n- a list\n")
    problems = refused(tmp_path).problems
    files = {Path(p.pos.file).name for p in problems if p.pos}
    assert files == {"a.yaml", "b.yaml", "c.yaml"}
    assert any("YAML syntax error" in p.message for p in problems)


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="models directory not found"):
        load_model_specs(tmp_path / "missing")
    assert load_model_specs(tmp_path) == []


def test_reward_labels_an_impression_from_its_outcomes(tmp_path: Path) -> None:
    text = MINIMAL + "reward:\n  positive: {accept: 1.0, click: 0.25, purchase: 0.8}\n  value_weight: 1.0\n  value_cap: 200\n"
    write(tmp_path, "m.yaml", text)
    reward = load(tmp_path)[0].reward
    assert reward.label([]) == (False, 1.0)
    assert reward.label([("impression", None), ("reject", None)]) == (False, 1.0)
    assert reward.label([("click", None)]) == (True, 0.25)
    assert reward.label([("click", None), ("accept", None)]) == (True, 1.0)
    assert reward.label([("purchase", 100.0)]) == (True, pytest.approx(0.8 * 1.5))
    assert reward.label([("purchase", 10_000.0)]) == (True, pytest.approx(0.8 * 2.0))
    assert reward.label([("purchase", -5.0)]) == (True, pytest.approx(0.8))


def test_reward_needs_a_positive_outcome_and_known_outcomes(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL + "reward:\n  positive: {accept: 0}\n")
    assert "no outcome counts as positive" in refused(tmp_path).problems[0].message
    write(tmp_path, "m.yaml", MINIMAL + "reward:\n  positive: {impression: 1.0}\n")
    assert "positive.impression" in refused(tmp_path).problems[0].message
    write(tmp_path, "m.yaml", MINIMAL + "reward:\n  positive: {accept: 1.5}\n")
    assert "less than or equal to 1" in refused(tmp_path).problems[0].message


def test_holdout_share_is_bounded(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL + "holdout_share: 0.6\n")
    assert "less than or equal to 0.5" in refused(tmp_path).problems[0].message
    write(tmp_path, "m.yaml", MINIMAL + "holdout_share: 0.1\n")
    (spec,) = load(tmp_path)
    assert spec.holdout_share == 0.1


def test_a_placement_holdout_share_overrides_the_model_share(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        MINIMAL
        + "exploration:\n  placements:\n"
        + "    agent_prompt: {policy: greedy, holdout_share: 0}\n"
        + "    web_home: {policy: softmax, temperature: 2, holdout_share: 0.2}\n"
        + "    event_tickets: {policy: thompson}\n"
        + "holdout_share: 0.05\n",
    )
    (spec,) = load(tmp_path)
    agent, share = spec.exploration_for("agent_prompt")
    assert agent.policy == "greedy" and share == 0.0
    web, share = spec.exploration_for("web_home")
    assert web.policy == "softmax" and share == 0.2
    # Placements that do not set a share, listed or not, keep the model's.
    assert spec.exploration_for("event_tickets")[1] == 0.05
    assert spec.exploration_for("somewhere_else")[1] == 0.05
    assert spec.exploration_for(None) == (spec.exploration.default, 0.05)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{policy: greedy, holdout_share: 0.6}", "less than or equal to 0.5"),
        ("{policy: epsilon_greedy, epsilon: 0.1, holdout_share: -0.1}", "greater than or equal to 0"),
        ("{policy: thompson, holdout_share: lots}", "valid number"),
    ],
)
def test_a_placement_holdout_share_out_of_range_is_refused_at_its_line(tmp_path: Path, entry: str, expected: str) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL + f"exploration:\n  placements:\n    agent_prompt: {entry}\n")
    (problem,) = refused(tmp_path).problems
    assert "exploration.placements.agent_prompt.holdout_share" in problem.message
    assert expected in problem.message
    assert problem.pos is not None and problem.pos.line == line_of(path, "agent_prompt")


def test_the_default_policy_takes_no_holdout_share_of_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MINIMAL + "exploration:\n  default: {policy: greedy, holdout_share: 0.1}\n")
    (problem,) = refused(tmp_path).problems
    assert "`holdout_share` is not allowed on `default`" in problem.message
    assert problem.pos is not None and problem.pos.line == line_of(path, "default:")


def test_the_shipped_specs_keep_agent_prompt_out_of_the_holdout() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    ns = rules.vocabulary.namespaces
    for spec in load_model_specs(EXAMPLE_MODELS, customer_fields=ns["customer"], context_fields=ns["context"]):
        assert spec.holdout_share > 0, spec.id
        assert spec.exploration_for("agent_prompt")[1] == 0.0, spec.id
        assert spec.exploration_for("web_home")[1] == spec.holdout_share, spec.id


def test_evidence_weight_is_even_with_the_prior_at_the_threshold(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL + "evidence_threshold: 40\n")
    (spec,) = load(tmp_path)
    assert spec.evidence_weight(0) == 0.0
    assert spec.evidence_weight(40) == 0.5
    assert spec.evidence_weight(360) == 0.9


def test_fingerprint_follows_featurization_not_exploration(tmp_path: Path) -> None:
    write(tmp_path, "m.yaml", MINIMAL)
    base = load(tmp_path)[0].fingerprint
    write(tmp_path, "m.yaml", MINIMAL + "exploration:\n  default: {policy: greedy}\nholdout_share: 0.2\n")
    assert load(tmp_path)[0].fingerprint == base
    write(tmp_path, "m.yaml", MINIMAL + "hash_bits: 20\n")
    assert load(tmp_path)[0].fingerprint != base
    write(tmp_path, "m.yaml", MINIMAL.replace("[tier]", "[tier, segment]"))
    assert load(tmp_path)[0].fingerprint != base
