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
