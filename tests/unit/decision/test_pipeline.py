"""The pure decision: eligibility, caps, contact policies, scoring and arbitration."""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest

from engine.clock import MS_PER_DAY
from engine.decision.pipeline import decide
from engine.domain import CustomerState, DecisionRequest, Verdict
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet

NOW = 1_795_428_000_000

RULES = """
fields:
  customer:
    tier: string
  context:
    device: string
arbitration:
  limit: 3
  max_per_group: 2
  placements:
    banner: {limit: 1}
  fallback: [newsletter]
contact_policies:
  - type: frequency_cap
    id: sales_cap
    group: sales
    max_per_day: 3
  - type: suppression
    id: cooldown
    after_event: complaint
    groups: [sales]
    days: 7
treatments:
  - id: big_sale
    kind: offer
    channels: [web]
    group: sales
    value: 100
    prior: {alpha: 1, beta: 9}
    caps: {per_day: 1}
  - id: small_sale
    kind: offer
    channels: [web]
    group: sales
    value: 50
    prior: {alpha: 1, beta: 9}
  - id: gold_only
    kind: offer
    channels: [web]
    group: loyalty
    value: 10
    prior: {alpha: 1, beta: 1}
    eligibility: customer.tier == 'gold'
  - id: mobile_boost
    kind: message
    channels: [web]
    group: service
    value: 1
    prior: {alpha: 1, beta: 1}
    context_weights:
      - when: context.device == 'ios'
        weight: 100
  - id: newsletter
    kind: message
    channels: [web, email]
    group: engagement
    value: 1
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yaml").write_text(textwrap.dedent(RULES))
    return load_ruleset(directory)


def ids(plan: object) -> list[str]:
    return [t.id for t in plan.treatments]  # type: ignore[attr-defined]


def web(explain: bool = False, **context: object) -> DecisionRequest:
    return DecisionRequest("c1", "web", context=dict(context), explain=explain)


def test_priority_is_propensity_times_weight_times_value_times_lever(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1"), web(), rules, NOW)
    big = next(t for t in plan.treatments if t.id == "big_sale")
    assert big.propensity == pytest.approx(0.1)
    assert big.score == pytest.approx(0.1 * 1 * 100 * 1)
    assert ids(plan) == ["big_sale", "small_sale", "mobile_boost"]


def test_context_weight_reorders(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1"), web(device="ios"), rules, NOW)
    assert ids(plan)[0] == "mobile_boost"
    assert plan.treatments[0].score == pytest.approx(0.5 * 100)


def test_ineligible_treatment_is_dropped_with_its_condition(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1", profile={"tier": "silver"}), web(explain=True), rules, NOW)
    assert "gold_only" not in ids(plan)
    verdict = next(v for v in plan.verdicts if v.treatment_id == "gold_only")
    assert verdict.stage == "eligibility" and "customer.tier == 'gold'" in verdict.reason
    gold = decide(CustomerState("c1", profile={"tier": "gold"}), web(), rules, NOW)
    assert "gold_only" in ids(gold)


def test_treatment_cap_per_day_blocks_after_it_is_reached(rules: RuleSet) -> None:
    state = CustomerState("c1", caps_day={"t:big_sale": 1, "g:sales": 1})
    plan = decide(state, web(explain=True), rules, NOW)
    assert "big_sale" not in ids(plan)
    assert any(v.treatment_id == "big_sale" and v.stage == "cap" for v in plan.verdicts)


def test_group_policy_budget_limits_one_decision(rules: RuleSet) -> None:
    # Two sales shown today, the policy allows three: only one more, though the group limit is two.
    state = CustomerState("c1", caps_day={"g:sales": 2})
    plan = decide(state, DecisionRequest("c1", "web", explain=True), rules, NOW)
    assert [t.id for t in plan.treatments if t.group == "sales"] == ["big_sale"]
    assert any(v.treatment_id == "small_sale" and "sales_cap" in v.reason for v in plan.verdicts)


def test_complaint_suppresses_sales_for_seven_days(rules: RuleSet) -> None:
    complained = {"complaint": {"ts": NOW - 6 * MS_PER_DAY}}
    plan = decide(CustomerState("c1", last=complained), web(explain=True), rules, NOW)
    assert not [t for t in plan.treatments if t.group == "sales"]
    assert any(v.stage == "suppression" and "cooldown" in v.reason for v in plan.verdicts)
    later = {"complaint": {"ts": NOW - 8 * MS_PER_DAY}}
    assert "big_sale" in ids(decide(CustomerState("c1", last=later), web(), rules, NOW))


def test_reasons_are_worded_only_when_asked_for(rules: RuleSet) -> None:
    state = CustomerState("c1", profile={"tier": "silver"}, caps_day={"t:big_sale": 1})
    assert decide(state, web(), rules, NOW).verdicts == ()
    stages = {v.treatment_id: v.stage for v in decide(state, web(explain=True), rules, NOW).verdicts}
    assert stages["gold_only"] == "eligibility" and stages["big_sale"] == "cap"


def test_limit_and_max_per_group(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1", profile={"tier": "gold"}), web(), rules, NOW)
    assert len(plan.treatments) == 3
    assert sum(t.group == "sales" for t in plan.treatments) <= 2
    one = decide(CustomerState("c1"), DecisionRequest("c1", "web", placement="banner"), rules, NOW)
    assert ids(one) == ["big_sale"]
    requested = decide(CustomerState("c1"), DecisionRequest("c1", "web", limit=2), rules, NOW)
    assert len(requested.treatments) == 2


def test_fallback_when_nothing_survives(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1"), DecisionRequest("c1", "email"), rules, NOW)
    assert ids(plan) == ["newsletter"] and plan.fallback
    none = decide(CustomerState("c1"), DecisionRequest("c1", "sms"), rules, NOW)
    assert ids(none) == [] and not none.fallback


def test_counters_cover_each_chosen_treatment_and_group(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1"), web(), rules, NOW)
    assert sorted(plan.counter_fields) == sorted(
        ["t:big_sale", "g:sales", "t:small_sale", "g:sales", "t:mobile_boost", "g:service"]
    )


GROWTH_RULES = """
equity:
  tiers:
    - {name: bronze, min_equity: 0}
    - {name: silver, min_equity: 35}
    - {name: gold, min_equity: 55}
  money_per_point: 20
treatments:
  - id: rich_offer
    kind: offer
    channels: [web]
    group: sales
    value: 100
    prior: {alpha: 1, beta: 1}
  - id: grow_to_gold
    kind: offer
    channels: [web]
    group: loyalty
    value: 10
    prior: {alpha: 1, beta: 1}
    target_tier: gold
    tier_uplift: 0.5
  - id: silver_only
    kind: message
    channels: [web]
    group: info
    value: 1
    eligibility: value.tier == 'silver' and value.equity < 55
"""


def facts_for(purchases: list[tuple[float, int]]) -> dict[str, float]:
    """Value facts after purchases of (amount, days ago), as the store would hold them."""
    from engine.equity.config import EquityConfig
    from engine.equity.facts import increments, merge

    stored: dict[str, float] = {}
    for amount, days in purchases:
        stored = merge(stored, increments("purchase", {"amount": amount}, NOW - days * MS_PER_DAY, EquityConfig.default()))
    return stored


def test_expected_tier_gain_lets_a_cheaper_offer_that_grows_the_customer_win(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("growth")
    (directory / "rules.yaml").write_text(textwrap.dedent(GROWTH_RULES))
    rules = load_ruleset(directory)
    silver = CustomerState("c1", facts=facts_for([(200.0, 90), (200.0, 30), (200.0, 3)]))
    plan = decide(silver, web(), rules, NOW)
    assert plan.value is not None and plan.value.tier == "silver"
    expected_gain = 0.5 * (55 - plan.value.equity) * 20  # uplift x points to gold x money per point
    grow = next(t for t in plan.treatments if t.id == "grow_to_gold")
    assert grow.score == pytest.approx(0.5 * (10 + expected_gain), rel=1e-5)
    assert ids(plan)[0] == "grow_to_gold", "its equity gain outweighs the richer offer's margin"
    assert "silver_only" in ids(plan), "conditions read the customer's tier as value.tier"

    gold = CustomerState("c1", facts=facts_for([(900.0, d) for d in (200, 120, 60, 30, 10, 3)]))
    plan = decide(gold, web(), rules, NOW)
    assert plan.value is not None and plan.value.tier == "gold"
    assert ids(plan)[0] == "rich_offer", "no gain once the customer is in the target tier"
    assert next(t for t in plan.treatments if t.id == "grow_to_gold").score == pytest.approx(0.5 * 10)
    assert "silver_only" not in ids(plan)


def test_a_target_tier_the_equity_section_lacks_is_refused_with_its_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    from engine.errors import RuleSetError

    directory = tmp_path_factory.mktemp("badtier")
    (directory / "rules.yaml").write_text(textwrap.dedent(GROWTH_RULES).replace("target_tier: gold", "target_tier: diamond"))
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(directory)
    text = str(caught.value)
    assert "unknown tier `diamond`" in text and "rules.yaml:21" in text and "bronze, silver, gold" in text


# --- explanations ---------------------------------------------------------------------------------


def verdicts_by_id(plan: object) -> dict[str, Verdict]:
    found = {v.treatment_id: v for v in plan.verdicts}  # type: ignore[attr-defined]
    assert len(found) == len(plan.verdicts), "one verdict per candidate"  # type: ignore[attr-defined]
    return found


def product(components: dict[str, float]) -> float:
    return components["P"] * components["C"] * components["V"] * components["L"]


def test_every_candidate_gets_a_verdict_and_the_chosen_ones_their_rank(rules: RuleSet) -> None:
    state = CustomerState("c1", profile={"tier": "silver"}, caps_day={"t:big_sale": 1})
    plan = decide(state, web(explain=True), rules, NOW)
    by_id = verdicts_by_id(plan)
    assert {t: v.stage for t, v in by_id.items()} == {
        "gold_only": "eligibility",
        "big_sale": "cap",
        "small_sale": "chosen",
        "mobile_boost": "chosen",
    }
    for rank, shown in enumerate(plan.treatments, start=1):
        parts = by_id[shown.id].components
        assert parts is not None and parts["rank"] == rank
        assert parts["selection_probability"] == pytest.approx(shown.selection_probability)
        assert parts["priority"] == pytest.approx(shown.score, rel=1e-6)
        assert f"chosen at rank {rank}" in by_id[shown.id].reason


def test_score_components_multiply_to_the_priority_for_chosen_and_outranked(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1", profile={"tier": "gold"}), web(explain=True, device="ios"), rules, NOW)
    by_id = verdicts_by_id(plan)
    assert by_id["gold_only"].stage == "arbitration" and "outranked" in by_id["gold_only"].reason
    scored = [v for v in plan.verdicts if v.stage in ("chosen", "arbitration")]
    assert {v.stage for v in scored} == {"chosen", "arbitration"}
    for v in scored:
        assert v.components is not None
        assert product(v.components) == pytest.approx(v.components["priority"], rel=1e-6)
    boost = by_id["mobile_boost"]
    assert boost.components is not None and boost.components["C"] == 100
    assert boost.detail == {
        "value": 1.0,
        "tier_gain": 0.0,
        "context_weights": [{"when": "context.device == 'ios'", "weight": 100.0, "held": True}],
    }
    big = by_id["big_sale"].components
    assert big is not None and (big["P"], big["V"], big["L"]) == (pytest.approx(0.1), 100, 1)


def test_an_ineligible_candidate_names_the_failed_expression_and_its_value(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1", profile={"tier": "silver"}), web(explain=True), rules, NOW)
    verdict = verdicts_by_id(plan)["gold_only"]
    assert verdict.reason == "not eligible: customer.tier == 'gold' was false (customer.tier = 'silver')"
    assert verdict.detail == {
        "condition": "customer.tier == 'gold'",
        "failed": [{"expression": "customer.tier == 'gold'", "was": False, "values": {"customer.tier": "silver"}}],
    }
    missing = verdicts_by_id(decide(CustomerState("c1"), web(explain=True), rules, NOW))["gold_only"]
    assert missing.reason.endswith("(customer.tier is missing)")


def test_a_suppressed_or_budget_blocked_candidate_names_its_policy(rules: RuleSet) -> None:
    complained = CustomerState("c1", last={"complaint": {"ts": NOW - MS_PER_DAY}})
    suppressed = verdicts_by_id(decide(complained, web(explain=True), rules, NOW))["big_sale"]
    assert suppressed.stage == "suppression" and suppressed.detail is not None
    assert (suppressed.detail["policy"], suppressed.detail["group"]) == ("cooldown", "sales")
    blocked = verdicts_by_id(decide(CustomerState("c1", caps_day={"g:sales": 2}), web(explain=True), rules, NOW))["small_sale"]
    assert blocked.stage == "policy" and blocked.detail is not None and blocked.detail["policy"] == "sales_cap"
    assert blocked.components is not None and product(blocked.components) == pytest.approx(blocked.components["priority"])


def test_a_fallback_is_explained_as_chosen(rules: RuleSet) -> None:
    plan = decide(CustomerState("c1"), DecisionRequest("c1", "email", explain=True), rules, NOW)
    verdict = verdicts_by_id(plan)["newsletter"]
    assert verdict.stage == "chosen" and "fallback" in verdict.reason
    assert verdict.components is not None and verdict.components["rank"] == 1
    assert product(verdict.components) == pytest.approx(plan.treatments[0].score, rel=1e-6)


def test_explaining_leaves_the_decision_unchanged(rules: RuleSet) -> None:
    state = CustomerState("c1", profile={"tier": "gold"}, caps_day={"g:sales": 2})
    plain = decide(state, web(device="ios"), rules, NOW, rng=np.random.default_rng(3))
    explained = decide(state, web(explain=True, device="ios"), rules, NOW, rng=np.random.default_rng(3))
    assert plain.verdicts == () and explained.verdicts
    assert dataclasses.replace(explained, verdicts=()) == plain


def test_value_component_includes_the_expected_tier_gain(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("growth-explained")
    (directory / "rules.yaml").write_text(textwrap.dedent(GROWTH_RULES))
    rules = load_ruleset(directory)
    silver = CustomerState("c1", facts=facts_for([(200.0, 90), (200.0, 30), (200.0, 3)]))
    plan = decide(silver, web(explain=True), rules, NOW)
    assert plan.value is not None
    expected_gain = 0.5 * (55 - plan.value.equity) * 20
    grow = verdicts_by_id(plan)["grow_to_gold"]
    assert grow.components is not None and grow.detail is not None
    assert grow.components["V"] == pytest.approx(10 + expected_gain, rel=1e-6)
    assert grow.detail["tier_gain"] == pytest.approx(expected_gain, rel=1e-6) and grow.detail["value"] == 10
    assert product(grow.components) == pytest.approx(grow.components["priority"], rel=1e-6)
    assert "expected tier gain" in grow.reason
    rich = verdicts_by_id(plan)["rich_offer"].components
    assert rich is not None and rich["V"] == 100, "no gain for a treatment that aims at no tier"
