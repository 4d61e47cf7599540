"""Rule simulation: synthetic customers, shares by treatment, changes against a baseline."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from engine.decision.pipeline import eval_context
from engine.domain import DecisionRequest
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.rules.vectorised import Frame, evaluate_all, vectorise
from engine.simulation.customers import CustomerBatch, batch_from_states, synthetic_customers
from engine.simulation.rules import planned_work, progress_bar, render, simulate, value_columns
from tests.conftest import EXAMPLE_RULES, T0

RULES = """
fields:
  customer:
    tier: string
    age: number
    favourite_colour: string
arbitration:
  limit: 5
  max_per_group: 1
  fallback: [newsletter]
treatments:
  - id: adults_card
    kind: offer
    channels: [web]
    group: cards
    value: 100
    prior: {alpha: 1, beta: 9}
    eligibility: customer.age >= 18
  - id: centenarian_cake
    kind: offer
    channels: [web]
    group: cakes
    value: 10
    eligibility: customer.age >= 200
  - id: lounge
    kind: offer
    channels: [web]
    group: lounges
    value: 30
    eligibility: {lounge}
  - id: big_spender
    kind: offer
    channels: [web]
    group: spenders
    value: 20
    eligibility: last('purchase').amount > 100
  - id: app_only
    kind: message
    channels: [mobile_app]
    group: app
    value: 5
  - id: newsletter
    kind: message
    channels: [web]
    group: engagement
    value: 1
"""


def write_rules(directory: Path, lounge: str) -> RuleSet:
    directory.mkdir()
    (directory / "rules.yaml").write_text(textwrap.dedent(RULES).replace("{lounge}", lounge))
    return load_ruleset(directory)


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    return write_rules(tmp_path / "current", "customer.tier in ['gold', 'platinum']")


@pytest.fixture
def baseline(tmp_path: Path) -> RuleSet:
    return write_rules(tmp_path / "baseline", "customer.tier == 'platinum'")


@pytest.fixture
def batch(rules: RuleSet) -> CustomerBatch:
    return synthetic_customers(1_500, 11, rules, now_ms=T0, facts_pool=300)


def test_shares_are_proportions_and_a_condition_no_one_meets_is_flagged(rules: RuleSet, batch: CustomerBatch) -> None:
    report = simulate(rules, batch, channel="web", now_ms=T0)
    assert report.customers == report.decided == 1_500 and not report.sampled
    by_id = {t.id: t for t in report.treatments}
    for t in report.treatments:
        assert t.current is not None
        for share in (t.current.match_share, t.current.eligible_share, t.current.chosen_share):
            assert 0.0 <= share <= 1.0
        if t.id != "newsletter":  # shown only when nothing else is, without its eligibility checked
            assert t.current.chosen_share <= t.current.eligible_share
    cake = by_id["centenarian_cake"].current
    assert cake is not None and cake.match_share == 0.0 and cake.chosen_share == 0.0
    assert by_id["centenarian_cake"].flag == "never"
    assert by_id["adults_card"].flag is None and 0.9 < by_id["adults_card"].current.eligible_share < 1.0  # type: ignore[union-attr]
    app = by_id["app_only"].current
    assert app is not None and not app.available and app.match_share == 1.0 and app.eligible_share == 0.0
    assert by_id["app_only"].flag is None, "no condition, nothing to flag"


def test_a_broader_condition_raises_eligible_and_chosen_shares_against_the_baseline(
    rules: RuleSet, baseline: RuleSet, batch: CustomerBatch
) -> None:
    report = simulate(rules, batch, baseline=baseline, channel="web", now_ms=T0)
    by_id = {t.id: t for t in report.treatments}
    lounge = by_id["lounge"]
    assert lounge.change == "changed"
    assert lounge.eligible_delta is not None and lounge.eligible_delta > 0.05
    assert lounge.chosen_delta is not None and lounge.chosen_delta > 0.05
    assert lounge.value_delta is not None and lounge.value_delta > 0
    assert by_id["adults_card"].change == "same" and by_id["adults_card"].eligible_delta == 0.0
    # and the other way round: the narrower rule set loses customers
    reverse = {t.id: t for t in simulate(baseline, batch, baseline=rules, channel="web", now_ms=T0).treatments}
    assert reverse["lounge"].eligible_delta == pytest.approx(-lounge.eligible_delta)  # type: ignore[operator]
    assert reverse["lounge"].chosen_delta is not None and reverse["lounge"].chosen_delta < 0


def test_added_and_removed_treatments_count_as_zero_on_the_other_side(
    tmp_path: Path, rules: RuleSet, batch: CustomerBatch
) -> None:
    directory = tmp_path / "small"
    directory.mkdir()
    text = textwrap.dedent(RULES).replace("{lounge}", "customer.age > 0")
    (directory / "rules.yaml").write_text(text.replace("id: centenarian_cake", "id: birthday_cake"))
    other = load_ruleset(directory)
    by_id = {t.id: t for t in simulate(other, batch, baseline=rules, channel="web", now_ms=T0).treatments}
    assert by_id["birthday_cake"].change == "added" and by_id["birthday_cake"].baseline is None
    assert by_id["centenarian_cake"].change == "removed" and by_id["centenarian_cake"].current is None
    assert by_id["centenarian_cake"].eligible_delta == 0.0  # it matched no one before either
    assert by_id["birthday_cake"].eligible_delta == 0.0


def test_a_condition_without_a_vectorised_form_is_reported_and_still_exact(rules: RuleSet, batch: CustomerBatch) -> None:
    report = simulate(rules, batch, channel="web", now_ms=T0)
    assert [t.id for t in report.fallbacks] == ["big_spender"]
    assert report.outcomes.scalar_rows == len(batch)
    request = DecisionRequest("", "web")
    expected = 0
    for row in range(len(batch)):
        state = batch.state(row)
        ctx = eval_context(state, request, T0, rules.value_model.evaluate(state.facts, T0))
        expected += rules.by_id["big_spender"].eligibility(ctx)  # type: ignore[misc]
    big = next(t for t in report.treatments if t.id == "big_spender").current
    assert big is not None and 0 < expected < len(batch)
    assert big.match_share == expected / len(batch)


def test_every_shipped_condition_over_synthetic_customers_agrees_with_the_scalar_evaluator() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    batch = synthetic_customers(2_000, 5, rules, now_ms=T0, facts_pool=400)
    request = DecisionRequest("", "web", context={"companion": "child"})
    report = simulate(rules, batch, channel="web", now_ms=T0, context=request.context, decision_sample=50)
    assert report.outcomes.scalar_rows == 0, "synthetic customers never need the scalar evaluator"
    contexts = [
        eval_context(s, request, T0, rules.value_model.evaluate(s.facts, T0)) for s in (batch.state(i) for i in range(len(batch)))
    ]
    by_id = {t.id: t for t in report.treatments}
    matched = 0
    for t in rules.treatments:
        if t.eligibility is not None:
            count = sum(t.eligibility(ctx) for ctx in contexts)
            assert by_id[t.id].current.match_share == count / len(batch), t.id  # type: ignore[union-attr]
            matched += 0 < count < len(batch)
    assert matched >= 12, "the synthetic customers exercise nearly every condition"


def test_synthetic_columns_are_the_columns_of_their_own_states(rules: RuleSet) -> None:
    shipped = load_ruleset(EXAMPLE_RULES)
    batch = synthetic_customers(600, 2, shipped, now_ms=T0, facts_pool=100)
    rebuilt = batch_from_states([batch.state(i) for i in range(len(batch))])
    assert set(rebuilt.columns) <= set(batch.columns)
    for key, col in rebuilt.columns.items():
        mine = batch.columns[key]
        if col.ndim == 2:
            rows = [sorted(x for x in r.tolist() if x == x) for r in col]
            assert rows == [sorted(x for x in r.tolist() if x == x) for r in mine], key
        elif col.dtype == object or mine.dtype == object:
            assert col.tolist() == mine.tolist(), key
        else:
            np.testing.assert_array_equal(col, mine, err_msg=key)
    for key in set(batch.columns) - set(rebuilt.columns):
        assert np.isnan(batch.columns[key]).all(), key
    np.testing.assert_array_equal(rebuilt.facts, batch.facts)
    assert not rebuilt.inexact.any()


def test_the_same_seed_gives_the_same_customers(rules: RuleSet) -> None:
    a = synthetic_customers(300, 4, rules, now_ms=T0, facts_pool=50)
    b = synthetic_customers(300, 4, rules, now_ms=T0, facts_pool=50)
    c = synthetic_customers(300, 5, rules, now_ms=T0, facts_pool=50)
    assert a.state(17) == b.state(17)
    assert [a.state(i).profile for i in range(300)] != [c.state(i).profile for i in range(300)]


def test_value_columns_are_what_each_customer_s_value_gives_conditions(batch: CustomerBatch) -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    columns = value_columns(rules.value_model, batch.facts, T0)
    for row in range(0, len(batch), 7):
        fields = rules.value_model.evaluate(batch.state(row).facts, T0).condition_fields()
        assert {k: columns[f"value.{k}"][row] for k in fields} == fields


def test_decisions_for_many_customers_run_on_a_sample_and_say_so(rules: RuleSet, batch: CustomerBatch) -> None:
    advanced: list[int] = []
    report = simulate(rules, batch, baseline=rules, channel="web", now_ms=T0, decision_sample=250, progress=advanced.append)
    assert report.decided == 250 and report.sampled
    assert sum(advanced) == planned_work(len(batch), baseline=True, decision_sample=250)
    for t in report.treatments:
        assert t.chosen_delta == 0.0, "the same rules over the same sample decide the same"
    text = _rendered(report)
    assert "a random sample of 1,500" in text


def _rendered(report: object) -> str:
    console = Console(width=200, record=True)
    for part in render(report):  # type: ignore[arg-type]
        console.print(part)
    return console.export_text()


def test_report_renders_and_serialises(rules: RuleSet, baseline: RuleSet, batch: CustomerBatch) -> None:
    report = simulate(rules, batch, baseline=baseline, channel="web", now_ms=T0)
    text = _rendered(report)
    assert "matches no customer" in text and "not offered here" in text and "changed" in text
    assert "big_spender" in text and "customer by customer" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["customers"] == 1_500 and data["baseline_version"] == baseline.version
    lounge = next(t for t in data["treatments"] if t["id"] == "lounge")
    assert lounge["eligible_delta"] > 0 and lounge["current"]["condition"] == "customer.tier in ['gold', 'platinum']"


def test_progress_bar_advances_to_its_total(rules: RuleSet, batch: CustomerBatch) -> None:
    console = Console(width=100, record=True, force_terminal=True)
    total = planned_work(len(batch), baseline=False)
    with progress_bar(total, console=console, transient=False) as advance:
        simulate(rules, batch, channel="web", now_ms=T0, progress=advance)
    assert f"{total}/{total}" in console.export_text()


def test_an_empty_batch_gives_zero_shares(rules: RuleSet) -> None:
    report = simulate(rules, batch_from_states([]), channel="web", now_ms=T0)
    assert report.customers == 0 and all(t.current and t.current.eligible_share == 0.0 for t in report.treatments)
    assert all(t.flag is None for t in report.treatments)


def test_conditions_over_a_batch_can_be_evaluated_directly(rules: RuleSet, batch: CustomerBatch) -> None:
    request = DecisionRequest("", "web")
    frame = Frame(
        len(batch),
        {**batch.columns, **value_columns(rules.value_model, batch.facts, T0)},
        T0,
        lambda row: eval_context(batch.state(row), request, T0, rules.value_model.evaluate(batch.state(row).facts, T0)),
        batch.inexact,
    )
    adults = vectorise(rules.by_id["adults_card"].eligibility, rules.vocabulary)  # type: ignore[arg-type]
    (result,) = evaluate_all([adults], frame)
    ages = batch.columns["customer.age"]
    np.testing.assert_array_equal(result.matches, ages >= 18)


def test_a_simulation_reads_look_back_counters_as_a_decision_does() -> None:
    """A heavy browser whose shared history lost last week's email: the decision reads the
    email's look-back counter, and so must the simulation, in its columns and its scalar rows."""
    from engine.domain import CustomerState
    from engine.rules.functions import lookback_counter

    rules = load_ruleset(EXAMPLE_RULES)
    views = [{"type": "page_view", "ts": T0 - i, "channel": "web", "attributes": {}} for i in range(100)]
    browser = CustomerState("heavy", recent=views, counters={lookback_counter("email_received"): [T0 - 86_400_000]})
    quiet = CustomerState("quiet", recent=views)
    batch = batch_from_states([browser, quiet], rules.lookbacks, T0)
    request = DecisionRequest("", "call_center", "agent_prompt")
    follow_up = rules.by_id["email_follow_up"].eligibility
    assert follow_up is not None
    live = [follow_up(eval_context(s, request, T0, None, rules.lookbacks)) for s in (browser, quiet)]
    assert live == [True, False]
    report = simulate(rules, batch, channel="call_center", placement="agent_prompt", now_ms=T0)
    current = next(t for t in report.treatments if t.id == "email_follow_up").current
    assert current is not None and current.match_share == 0.5
