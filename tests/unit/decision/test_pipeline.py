"""The pure decision: eligibility, caps, contact policies, scoring and arbitration."""

from __future__ import annotations

import textwrap

import pytest

from engine.clock import MS_PER_DAY
from engine.decision.pipeline import decide
from engine.domain import CustomerState, DecisionRequest
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
