"""The model's holdout with the shipped specs: random treatments where it applies, none on the agent's prompt."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest

from engine.decision.exploration import in_holdout
from engine.decision.pipeline import DecisionPlan, decide
from engine.domain import CustomerState, DecisionRequest
from engine.learning.serving import ModelRegistry, ServedModel
from engine.learning.spec import load_model_specs
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from tests.conftest import EXAMPLE_MODELS, EXAMPLE_RULES, T0

CARLA = {"name": "Carla Rossi", "tier": "bronze", "age": 38, "segment": "family"}
"""A caller with three unanswered questions and old enough for the credit card offer."""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_ruleset(EXAMPLE_RULES)


@pytest.fixture(scope="module")
def registry(rules: RuleSet) -> ModelRegistry:
    """The shipped model specs, checked against the rule set's fields as the engine loads them."""
    vocab = rules.vocabulary.namespaces
    return ModelRegistry(load_model_specs(EXAMPLE_MODELS, customer_fields=vocab["customer"], context_fields=vocab["context"]))


def customers(model: ServedModel, held: bool, n: int) -> list[str]:
    """The first `n` customer ids in (or out of) the model's holdout, by the serving hash."""
    spec = model.spec
    found = (c for c in (f"cust-{i:05d}" for i in itertools.count()) if in_holdout(c, spec.holdout_share, spec.id) == held)
    return list(itertools.islice(found, n))


def plan_for(
    rules: RuleSet, registry: ModelRegistry, customer_id: str, channel: str, placement: str | None, seed: int
) -> DecisionPlan:
    request = DecisionRequest(customer_id, channel, placement=placement)
    model = registry.for_placement(placement)
    state = CustomerState(customer_id, profile=dict(CARLA))
    return decide(state, request, rules, T0, model=model, rng=np.random.default_rng(seed))


def test_holdout_customers_get_the_greedy_prompt_at_agent_prompt_and_random_treatments_elsewhere(
    rules: RuleSet, registry: ModelRegistry
) -> None:
    agent_model, web_model = registry.for_placement("agent_prompt"), registry.for_placement(None)
    assert agent_model is not None and web_model is not None
    assert agent_model.spec.holdout_share > 0, "the shipped model holds customers out"
    (control,) = customers(agent_model, held=False, n=1)
    held = customers(agent_model, held=True, n=3)

    greedy = plan_for(rules, registry, control, "call_center", "agent_prompt", seed=0)
    assert greedy.policy == "greedy" and len(greedy.treatments) == 1
    candidates = {c["id"] for c in greedy.candidates}
    assert {"credit_card_offer", "ask_party_size"} <= candidates, "a random prompt could be a sales offer"
    best = greedy.treatments[0].id

    assert greedy.model is not None and "holdout" not in greedy.model
    for customer_id, seed in itertools.product(held, range(40)):
        plan = plan_for(rules, registry, customer_id, "call_center", "agent_prompt", seed)
        assert plan.policy == "greedy", f"{customer_id} is held out of the model, not out of the agent's prompt"
        assert [(t.id, t.selection_probability) for t in plan.treatments] == [(best, 1.0)]
        # ...and the record says so, for the ROI report to keep the caller in the holdout
        assert plan.model is not None and plan.model["holdout"] == "exempt"
        assert plan.model["id"] == agent_model.spec.id

    assert in_holdout(held[0], web_model.spec.holdout_share, web_model.spec.id)
    sales: collections.Counter[str] = collections.Counter()
    for seed in range(60):
        plan = plan_for(rules, registry, held[0], "web", None, seed)
        assert plan.policy == "holdout"
        assert plan.model is not None and "holdout" not in plan.model  # held out here, not exempted
        (offer,) = [t for t in plan.treatments if t.group == "sales"]
        assert offer.selection_probability == pytest.approx(1 / 2, abs=1e-6)
        sales[offer.id] += 1
    assert set(sales) == {"welcome_coupon", "credit_card_offer"} and min(sales.values()) >= 15, sales
