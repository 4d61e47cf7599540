"""Event attributes: `event.<attr>` and `last('<type>').<attr>` name attributes some event type
declares, or the rule set is refused when it loads, pointing at the name with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.domain import Event
from engine.errors import RuleProblem, RuleSetError
from engine.rules.conditions import compile_condition
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.rules.triggers import effects_of_event
from engine.rules.vocabulary import EvalContext, Vocabulary
from tests.conftest import EXAMPLE_RULES
from tests.unit.rules.test_loader import write


def only_problem(directory: Path) -> RuleProblem:
    with pytest.raises(RuleSetError) as info:
        load_ruleset(directory)
    assert len(info.value.problems) == 1, info.value
    return info.value.problems[0]


def caret_at(problem: RuleProblem) -> str:
    """The source text from the caret on, as `render()` shows it."""
    assert problem.pos is not None and problem.source_line is not None
    lines = problem.render().splitlines()
    caret = lines[2].index("^")
    assert lines[1] == "    " + problem.source_line
    return lines[1][caret:]


def trigger(event: str, when: str, flag: str = "seen") -> str:
    return f"""
        triggers:
          - id: t_{flag}
            event: {event}
            when: "{when}"
            set_flag: {{name: {flag}, expires_after: {{hours: 1}}}}
        """


def offer(eligibility: str, tid: str = "a") -> str:
    return f"""
        treatments:
          - id: {tid}
            kind: offer
            channels: [web]
            eligibility: "{eligibility}"
        """


def fires(rules: RuleSet, event_type: str, attributes: dict[str, object]) -> bool:
    event = Event("e1", "c1", event_type, 1_000, "web", attributes)
    fx = effects_of_event(event, 1_000, rules.triggers_by_event, rules.timer_cancels)
    return bool(fx.flags_set)


def test_a_misspelt_attribute_in_a_trigger_is_refused_at_its_column_with_the_right_name(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", trigger("flight_delayed", "event.delay_minuts >= 45"))
    problem = only_problem(tmp_path)
    assert problem.pos is not None
    assert (problem.pos.file, problem.pos.line, problem.pos.column) == (str(path), 4, 12)
    assert problem.message == "unknown attribute `event.delay_minuts` of `flight_delayed` events"
    assert caret_at(problem).startswith("event.delay_minuts >= 45")
    assert problem.hint == "did you mean `event.delay_minutes`?"


def test_a_misspelt_attribute_of_last_is_refused_at_the_attribute(tmp_path: Path) -> None:
    write(tmp_path, "o.yaml", offer("days_since('purchase') < 30 and last('purchase').amout > 1"))
    problem = only_problem(tmp_path)
    assert problem.pos is not None and problem.pos.line == 5
    assert problem.message == "unknown attribute `amout` of `last('purchase')`"
    assert caret_at(problem).startswith("amout > 1")
    assert problem.hint == "did you mean `amount`?"


def test_a_misspelt_attribute_of_the_request_event_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "o.yaml", offer("event.delay_minuts > 30"))
    problem = only_problem(tmp_path)
    assert problem.message == "unknown field `event.delay_minuts`"
    assert problem.hint == "did you mean `event.delay_minutes`?"
    write(tmp_path, "o.yaml", offer("event.zzz > 30"))
    assert only_problem(tmp_path).hint == "no event type declares `zzz`; declare it under `event_types:`"


def test_declared_attributes_extend_built_in_and_new_types(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.yaml",
        """
        event_types:
          - {name: flight_delayed, attributes: {gate: string}}
          - name: booking
            attributes: {nights: number, extras: any}
        """,
    )
    write(tmp_path, "t.yaml", trigger("flight_delayed", "event.gate == 'B12' and event.delay_minutes >= 45"))
    write(tmp_path, "o.yaml", offer("last('booking').nights >= 3 and last('booking').extras.spa == True and event.nights > 1"))
    rules = load_ruleset(tmp_path)
    assert rules.vocabulary.event_attributes is not None
    assert rules.vocabulary.event_attributes["flight_delayed"] == {
        "delay_minutes": "number",
        "flight": "string",
        "gate": "string",
    }
    assert fires(rules, "flight_delayed", {"gate": "B12", "delay_minutes": 50})
    assert not fires(rules, "flight_delayed", {"gate": "A1", "delay_minutes": 50})
    condition = rules.by_id["a"].eligibility
    assert condition is not None
    last = {"booking": {"ts": 0, "nights": 4, "extras": {"spa": True}}}
    assert condition(EvalContext(data={"event": {"type": "booking", "nights": 2}}, now_ms=1, last=last))
    assert not condition(EvalContext(data={"event": {"type": "booking", "nights": 1}}, now_ms=1, last=last))


def test_an_attribute_of_another_type_is_refused_in_a_trigger_but_not_in_a_decision(tmp_path: Path) -> None:
    write(tmp_path, "events.yaml", "event_types:\n  - {name: flight_delayed, attributes: {gate: string}}\n")
    write(tmp_path, "o.yaml", offer("event.gate == 'B12'"))
    assert load_ruleset(tmp_path).by_id["a"].eligibility is not None
    write(tmp_path, "t.yaml", trigger("purchase", "event.gate == 'B12'"))
    problem = only_problem(tmp_path)
    assert problem.message == "unknown attribute `event.gate` of `purchase` events"
    assert problem.hint is not None and "declared for `flight_delayed` events, not `purchase`" in problem.hint


def test_last_reads_only_what_its_type_declares(tmp_path: Path) -> None:
    write(tmp_path, "o.yaml", offer("last('complaint').amount > 1"))
    problem = only_problem(tmp_path)
    assert problem.message == "unknown attribute `amount` of `last('complaint')`"
    assert problem.hint is not None and "`purchase`" in problem.hint
    write(tmp_path, "o.yaml", offer("last('purchase').amount.total > 1"))
    assert "is a number, not a record" in only_problem(tmp_path).message
    write(tmp_path, "o.yaml", offer("last('complaint').ts > 0 and last('complaint').topic == 'wifi'"))
    assert load_ruleset(tmp_path).by_id["a"].eligibility is not None


def test_every_event_has_type_and_a_trigger_does_not_see_ts_or_channel(tmp_path: Path) -> None:
    write(tmp_path, "o.yaml", offer("event.type == 'page_view' and event.ts > 0 and event.channel == 'web'"))
    write(tmp_path, "t.yaml", trigger("checkout", "event.type == 'checkout'"))
    load_ruleset(tmp_path)
    write(tmp_path, "t.yaml", trigger("checkout", "event.channel == 'web'"))
    problem = only_problem(tmp_path)
    assert problem.message == "unknown attribute `event.channel` of `checkout` events"
    assert problem.hint == "a trigger's condition sees the event's `type` and attributes, not its `channel`"


def test_the_plain_name_form_declares_a_type_without_attributes(tmp_path: Path) -> None:
    write(tmp_path, "events.yaml", "event_types: [survey_sent]\n")
    write(tmp_path, "t.yaml", trigger("survey_sent", "event.type == 'survey_sent'"))
    write(tmp_path, "o.yaml", offer("count('survey_sent', days=7) >= 1"))
    rules = load_ruleset(tmp_path)
    assert "survey_sent" in rules.vocabulary.event_types
    assert fires(rules, "survey_sent", {})
    write(tmp_path, "t.yaml", trigger("survey_sent", "event.score > 3"))
    problem = only_problem(tmp_path)
    assert problem.message == "unknown attribute `event.score` of `survey_sent` events"
    assert problem.hint == "`survey_sent` events declare: type; declare more under `event_types:`"


def test_a_profile_update_carries_the_declared_customer_fields(tmp_path: Path) -> None:
    write(tmp_path, "fields.yaml", "fields:\n  customer:\n    tier: string\n")
    write(tmp_path, "t.yaml", trigger("profile_update", "event.tier == 'gold'"))
    assert fires(load_ruleset(tmp_path), "profile_update", {"tier": "gold"})
    write(tmp_path, "t.yaml", trigger("profile_update", "event.teir == 'gold'"))
    assert only_problem(tmp_path).hint == "did you mean `event.tier`?"


def test_an_attribute_keeps_one_type_and_event_fields_are_not_attributes(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "event_types:\n  - {name: booking, attributes: {nights: number}}\n")
    path = write(tmp_path, "b.yaml", "event_types:\n  - {name: booking, attributes: {nights: string}}\n")
    problem = only_problem(tmp_path)
    assert problem.pos is not None and (problem.pos.file, problem.pos.line) == (str(path), 2)
    assert problem.message.startswith("`booking` attribute `nights` is declared as number at ")
    write(tmp_path, "b.yaml", "event_types:\n  - {name: flight_delayed, attributes: {delay_minutes: string}}\n")
    assert only_problem(tmp_path).message == "`flight_delayed` attribute `delay_minutes` is built in as number, not string"
    write(tmp_path, "b.yaml", "event_types:\n  - {name: booking, attributes: {ts: number}}\n")
    assert "`ts` is part of every event" in only_problem(tmp_path).message
    write(tmp_path, "b.yaml", "event_types:\n  - {name: booking, attributes: {nights: lots}}\n")
    assert "event_types.0.attributes.nights" in only_problem(tmp_path).message


def test_the_example_rules_check_event_attributes() -> None:
    vocab = load_ruleset(EXAMPLE_RULES).vocabulary
    assert "event" not in vocab.open_namespaces
    assert vocab.event_attributes is not None and vocab.event_attributes["page_view"] == {"page": "string"}


def test_a_vocabulary_built_without_event_attributes_leaves_events_unchecked() -> None:
    vocab = Vocabulary.build()
    assert compile_condition("event.anything.at_all == None and last('purchase').whatever == None", vocab, event_type="purchase")
