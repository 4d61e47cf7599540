"""Rule tests (`*_test.yaml`): cases run through the real decision, report why they fail, and
measure what no case covers; malformed case files are refused at their line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.decision.pipeline import eval_context
from engine.domain import CustomerState, DecisionRequest
from engine.rules import casefile
from engine.rules.casefile import Case, epoch_ms, parse_duration
from engine.rules.functions import counter, days_since, flag
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.rules.testing import RuleTestReport, build_state, render, run_rule_tests
from engine.rules.vocabulary import EvalContext
from tests.conftest import EXAMPLE_RULES, T0

RULES = """
fields:
  customer:
    tier: string
    age: number
  context:
    device: string
arbitration:
  limit: 2
  max_per_group: 1
  fallback: [newsletter]
contact_policies:
  - {type: suppression, id: complaint_cooldown, after_event: complaint, groups: [sales], days: 7}
triggers:
  - id: delay_apology
    event: flight_delayed
    when: event.delay_minutes >= 45
    set_flag: {name: delayed_flight, expires_after: {hours: 24}}
  - id: seat_interest
    event: page_view
    when: event.page == 'seats'
    increment: {counter: seat_views, window: {days: 1}}
treatments:
  - id: apology
    kind: offer
    channels: [mobile_app]
    group: service
    value: 100
    eligibility: flag('delayed_flight')
  - id: card_offer
    kind: offer
    channels: [mobile_app]
    group: sales
    value: 50
    eligibility: customer.age >= 21
  - id: recovery
    kind: message
    channels: [mobile_app]
    group: service
    value: 10
    eligibility: days_since('complaint') <= 7
  - id: gold_lounge
    kind: offer
    channels: [mobile_app]
    group: loyalty
    eligibility: customer.tier == 'gold'
  - id: newsletter
    kind: message
    channels: [mobile_app, email]
    group: engagement
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing `needle`, so tests do not count lines by hand."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def shown(report: RuleTestReport) -> str:
    console = Console(record=True, width=200)
    for renderable in render(report):
        console.print(renderable)
    return console.export_text()


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A rules directory with five treatments, one suppression and two triggers; no tests yet."""
    write(tmp_path, "rules.yaml", RULES)
    return tmp_path


@pytest.fixture
def rules(world: Path) -> RuleSet:
    return load_ruleset(world)


def case(**fields: object) -> Case:
    return Case.model_validate({"name": "c", "request": {"channel": "mobile_app"}, "expect": {"fallback": False}, **fields})


def context(state: CustomerState, now_ms: int = T0) -> EvalContext:
    return eval_context(state, DecisionRequest(state.customer_id, "mobile_app"), now_ms)


# -- the shipped rule set --------------------------------------------------------------------------


def test_shipped_rule_tests_pass_and_cover_every_treatment_and_condition() -> None:
    report = run_rule_tests(EXAMPLE_RULES)
    assert report.passed, shown(report)
    assert {Path(f).name for f in report.files} >= {"scenarios_test.yaml"}
    assert len(report.cases) >= 30
    assert report.coverage is not None
    assert report.coverage.uncovered == ()
    assert [c.treatment_id for c in report.coverage.gaps] == []
    assert set(report.coverage.treatments) == set(load_ruleset(EXAMPLE_RULES).by_id)


# -- failures and errors ---------------------------------------------------------------------------


def test_a_failing_expectation_names_the_case_the_treatment_and_the_verdict(world: Path) -> None:
    write(
        world,
        "sales_test.yaml",
        """
        cases:
          - name: a complaint does not stop the card offer
            request: {channel: mobile_app}
            customer:
              profile: {age: 41}
              events: [{type: complaint, ago: 2d}]
            expect:
              chosen: [card_offer, recovery]
          - name: the apology is offered after a long delay
            request: {channel: mobile_app}
            customer:
              events: [{type: flight_delayed, ago: 2h, attributes: {delay_minutes: 50}}]
            expect:
              first: apology
        """,
    )
    report = run_rule_tests(world)
    assert not report.passed and report.problems == ()
    failed, passed = report.cases
    assert (failed.name, failed.passed, passed.passed) == ("a complaint does not stop the card offer", False, True)
    (message,) = failed.failures
    assert message.startswith("expected `card_offer` to be chosen, but it was dropped at suppression")
    assert "contact policy `complaint_cooldown` suppresses group `sales`" in message
    assert failed.where.endswith("sales_test.yaml:2")
    assert report.to_dict()["cases"][0]["failures"] == [message]
    text = shown(report)
    assert "FAIL" in text and "a complaint does not stop the card offer" in text and "complaint_cooldown" in text
    assert "1 passed, 1 failed" in text


def test_a_treatment_not_offered_on_the_channel_says_so(world: Path) -> None:
    write(
        world,
        "email_test.yaml",
        """
        cases:
          - name: email
            request: {channel: email}
            expect: {not_eligible: [apology], exactly: [newsletter], fallback: true}
        """,
    )
    (result,) = run_rule_tests(world).cases
    assert result.failures == (
        "expected `apology` not to be eligible, but it is not offered on channel `email` (its channels: mobile_app)",
    )


def test_a_malformed_case_file_is_refused_at_each_line_with_a_hint(world: Path) -> None:
    path = write(
        world,
        "broken_test.yaml",
        """
        cases:
          - name: typos
            request: {channel: mobile_app}
            customer:
              events:
                - {type: complain, ago: 2d}
              flags: {delayed_flight: 3x}
            expect:
              not_elegible: [apology]
              chosen: [card_ofer]
          - name: still runs
            request: {channel: mobile_app}
            expect: {first: newsletter}
        """,
    )
    report = run_rule_tests(world)
    assert not report.passed
    found = {p.message: p for p in report.problems}
    expected = {
        "unknown key `not_elegible` (not allowed here)": ("not_elegible", "did you mean `not_eligible`?"),
        "unknown treatment `card_ofer`": ("card_ofer", "did you mean `card_offer`?"),
        "bad duration `3x`": ("3x", "write a number and a unit"),
    }
    for message, (needle, hint) in expected.items():
        problem = found[message]
        assert problem.pos is not None and (problem.pos.file, problem.pos.line) == (str(path), line_of(path, needle))
        assert problem.hint is not None and problem.hint.startswith(hint)
        assert problem.render().startswith(f"{path}:{problem.pos.line}:{problem.pos.column}: {message}")
    assert [c.name for c in report.cases] == ["still runs"], "the well-formed case of the file still runs"


def test_unknown_event_types_flags_and_fields_are_refused_with_hints(world: Path) -> None:
    path = write(
        world,
        "names_test.yaml",
        """
        cases:
          - name: names
            request: {channel: mobile_app, context: {devise: ios}}
            customer:
              profile: {age: "41"}
              events: [{type: complain, ago: 2d}]
              counters: {seat_view: [1h]}
              caps: {day: {sale: 1}}
            expect:
              suppressed: {card_offer: complaint_cooldwn}
        """,
    )
    problems = run_rule_tests(world).problems
    hints = {(p.pos.line if p.pos else 0, p.message): p.hint for p in problems}
    assert hints == {
        (line_of(path, "devise"), "unknown context field `devise`"): "did you mean `device`?",
        (line_of(path, '"41"'), "customer field `age` is declared as number, got '41'"): None,
        (line_of(path, "complain,"), "unknown event type `complain`"): "did you mean `complaint`?",
        (line_of(path, "seat_view"), "unknown counter `seat_view`"): "did you mean `seat_views`?",
        (line_of(path, "sale:"), "`sale` is neither a treatment id nor a group"): "did you mean `sales`?",
        (line_of(path, "cooldwn"), "unknown suppression policy `complaint_cooldwn`"): "did you mean `complaint_cooldown`?",
    }


def test_a_directory_without_test_files_fails(world: Path) -> None:
    report = run_rule_tests(world)
    assert not report.passed and report.cases == ()
    assert "no test files" in report.problems[0].message


def test_a_rule_set_that_does_not_load_fails_with_its_problems(world: Path) -> None:
    write(world, "rules.yaml", RULES.replace("customer.age >= 21", "customer.agee >= 21"))
    report = run_rule_tests(world)
    assert not report.passed and report.coverage is None
    assert any("agee" in p.message for p in report.problems)


# -- coverage ----------------------------------------------------------------------------------


def test_coverage_names_untested_treatments_and_one_sided_conditions(world: Path) -> None:
    write(
        world,
        "some_test.yaml",
        """
        cases:
          - name: after a long delay
            request: {channel: mobile_app}
            customer: {flags: {delayed_flight: 2h}, profile: {age: 41}}
            expect: {first: apology, chosen: [card_offer]}
          - name: no delay
            request: {channel: mobile_app}
            customer: {profile: {age: 17}}
            expect: {not_eligible: [apology, card_offer]}
        """,
    )
    report = run_rule_tests(world)
    assert report.passed, shown(report)
    assert report.coverage is not None
    assert report.coverage.uncovered == ("recovery", "gold_lounge", "newsletter")
    gaps = {c.treatment_id: (c.gap, c.true, c.false) for c in report.coverage.gaps}
    assert gaps == {"recovery": ("only ever false", 0, 2), "gold_lounge": ("only ever false", 0, 2)}
    assert not report.coverage.complete
    text = shown(report)
    assert "customer.tier == 'gold'  (only ever false)" in text
    assert "2 of 5 treatments in a case, 2 of 4 conditions seen true and false" in text


# -- the customer a case describes -----------------------------------------------------------


def test_an_event_two_days_ago_is_seen_by_days_since(rules: RuleSet) -> None:
    state = build_state(
        case(customer={"events": [{"type": "complaint", "ago": "2d", "attributes": {"topic": "WiFi"}}]}), rules, T0
    )
    assert days_since(context(state), "complaint") == pytest.approx(2.0)
    assert state.last["complaint"] == {"ts": T0 - 2 * MS_PER_DAY, "topic": "WiFi"}
    assert state.topics == {"disliked:wifi": T0 - 2 * MS_PER_DAY}
    assert state.facts["complaints"] > 0


def test_recent_history_is_newest_first_whatever_the_order_written(rules: RuleSet) -> None:
    events = [{"type": "page_view", "ago": "1h"}, {"type": "complaint", "ago": "3d"}, {"type": "page_view", "ago": "2d"}]
    state = build_state(case(customer={"events": events}), rules, T0)
    assert [(e["type"], e["ts"]) for e in state.recent] == [
        ("page_view", T0 - MS_PER_HOUR),
        ("page_view", T0 - 2 * MS_PER_DAY),
        ("complaint", T0 - 3 * MS_PER_DAY),
    ]
    assert state.last["page_view"]["ts"] == T0 - MS_PER_HOUR


def test_a_flag_with_time_left_is_set_and_an_expired_one_is_not(rules: RuleSet) -> None:
    left = build_state(case(customer={"flags": {"delayed_flight": "20h"}}), rules, T0)
    assert left.flags == {"delayed_flight": T0 + 20 * MS_PER_HOUR} and flag(context(left), "delayed_flight")
    expired = build_state(case(customer={"flags": {"delayed_flight": "-1m"}}), rules, T0)
    assert not flag(context(expired), "delayed_flight")


def test_events_fire_triggers_as_the_store_would(rules: RuleSet) -> None:
    def delayed(ago: str, minutes: int) -> CustomerState:
        events = [{"type": "flight_delayed", "ago": ago, "attributes": {"delay_minutes": minutes}}]
        return build_state(case(customer={"events": events}), rules, T0)

    assert flag(context(delayed("2h", 50)), "delayed_flight")
    assert not flag(context(delayed("25h", 50)), "delayed_flight"), "the flag lapsed after 24 hours"
    assert delayed("2h", 30).flags == {}, "the trigger's condition did not hold"
    views = [{"type": "page_view", "ago": ago, "attributes": {"page": "seats"}} for ago in ("3h", "2h", "30h")]
    state = build_state(case(customer={"events": views, "counters": {"seat_views": ["1m"]}}), rules, T0)
    assert counter(context(state), "seat_views", days=1) == 3


def test_a_timer_fires_when_due_unless_an_event_cancels_it() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    cart_add = {"type": "cart_add", "ago": "31m", "attributes": {"sku": "A", "price": 10}}
    abandoned = build_state(case(customer={"events": [cart_add]}), rules, T0)
    assert abandoned.flags == {"cart_abandoned": T0 - 31 * 60_000 + 30 * 60_000 + 3 * MS_PER_DAY}
    checked_out = build_state(case(customer={"events": [cart_add, {"type": "checkout", "ago": "5m"}]}), rules, T0)
    assert checked_out.flags == {}
    too_early = build_state(case(customer={"events": [{**cart_add, "ago": "29m"}]}), rules, T0)
    assert too_early.flags == {}


def test_caps_count_a_treatment_for_its_group_too(rules: RuleSet) -> None:
    caps = {"day": {"card_offer": 2, "sales": 1}, "total": {"apology": 1}}
    state = build_state(case(customer={"caps": caps}), rules, T0)
    assert state.caps_day == {"t:card_offer": 2, "g:sales": 3}
    assert (state.caps_week, state.caps_total) == ({}, {"t:apology": 1, "g:service": 1})


def test_durations_need_a_unit() -> None:
    assert parse_duration("1d12h") == 36 * MS_PER_HOUR
    assert parse_duration("-2h") == -2 * MS_PER_HOUR
    assert parse_duration("1w") == 7 * MS_PER_DAY
    for bad in ("3x", "3", "", "h", "2h-1m"):
        with pytest.raises(ValueError, match="bad duration"):
            parse_duration(bad)


@pytest.mark.parametrize("written", ["2026-11-23T11:00:00+01:00", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00"])
def test_case_times_are_utc_unless_they_say_otherwise(written: str) -> None:
    now = case(now=written).now
    assert now is not None and epoch_ms(now) == T0


def test_the_documented_example_file_passes_against_the_example_rules(tmp_path: Path) -> None:
    for rule_file in sorted(EXAMPLE_RULES.glob("*.yaml")):
        if not rule_file.name.endswith("_test.yaml"):
            (tmp_path / rule_file.name).write_bytes(rule_file.read_bytes())
    doc = casefile.__doc__ or ""
    example = doc[doc.index("A file::") + len("A file::") : doc.index("Expectations (")]
    write(tmp_path, "example_test.yaml", example)
    report = run_rule_tests(tmp_path)
    assert report.passed and len(report.cases) == 1, shown(report)


def test_a_case_whose_request_event_a_served_decision_would_refuse_is_refused(world: Path) -> None:
    path = write(
        world,
        "event_test.yaml",
        """
        cases:
          - name: delay as text
            request: {channel: mobile_app, event: {type: flight_delayed, delay_minutes: "50"}}
            expect: {chosen: [apology_upgrade]}
          - name: misspelt type
            request: {channel: mobile_app, event: {type: flight_delayd, delay_minutes: 50}}
            expect: {chosen: [apology_upgrade]}
        """,
    )
    problems = run_rule_tests(world).problems
    found = {(p.pos.line if p.pos else 0, p.message.split(" ")[0]) for p in problems}
    assert (line_of(path, '"50"'), "event") in found
    assert (line_of(path, "flight_delayd"), "unknown") in found
