"""Counter thresholds in triggers ("3 complaints in 7 days" acted on): rule-file checks and the
pure half that turns a reported count into effects."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.domain import Event
from engine.errors import RuleSetError
from engine.rules.loader import load_ruleset
from engine.rules.triggers import effects_of_event, emits_of_crossing
from tests.conftest import EXAMPLE_RULES, T0
from tests.unit.rules.test_loader import MINIMAL, refused, write

TRIGGER = """
triggers:
  - id: repeated
    event: complaint
    increment:
      counter: complaints
      window: {days: 7}
%s
"""


def test_the_example_rules_watch_complaints_and_name_the_flag_conditions_may_read() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    fx = effects_of_event(
        Event("e1", "dev", "complaint", T0, "social", {"topic": "lounge"}), T0, rules.triggers_by_event, rules.timer_cancels
    )
    [watched] = fx.thresholds
    assert (watched.trigger, watched.counter, watched.at, watched.cause) == ("repeated_complaints", "complaints", 3, "e1")
    assert watched.window_ms == 7 * 86_400_000
    assert not any(name == "complaints" for name, *_ in fx.increments), "counted by the threshold's script, not twice"
    # What `then` does is worked out with the event, so the store can set its flags as it counts.
    assert watched.then.flags_set == {"repeat_complainer": T0 + 30 * 86_400_000}
    assert "repeat_complainer" in rules.vocabulary.flags


@pytest.mark.parametrize(("count", "fires"), [(2, False), (3, True), (4, False)])
def test_messages_go_only_when_the_count_is_exactly_at(count: int, fires: bool) -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    fx = effects_of_event(Event("e9", "dev", "complaint", T0, None, {}), T0, rules.triggers_by_event, rules.timer_cancels)
    messages = emits_of_crossing(fx.thresholds[0], count)
    assert bool(messages) is fires
    if fires:
        [message] = messages
        # Named after the crossing, so a retried event that crosses again emits the same id.
        assert message["id"] == "repeated_complaints:dev:e9#complaints@3" and message["channel"] == "email"


def test_at_without_then_is_refused_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "t.yaml", TRIGGER % "      at: 3")
    error = refused(tmp_path)
    assert "`at` and `then` go together" in str(error) and "t.yaml" in str(error)


def test_a_threshold_may_not_count_again(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    chained = "      at: 3\n      then:\n        increment: {counter: more, window: {days: 1}}"
    write(tmp_path, "t.yaml", TRIGGER % chained)
    assert "not increment another counter" in str(refused(tmp_path))


def test_a_threshold_in_a_timer_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(
        tmp_path,
        "t.yaml",
        """
triggers:
  - id: later
    event: cart_add
    schedule:
      after: {minutes: 30}
      then:
        increment:
          counter: abandoned
          window: {days: 7}
          at: 2
          then: {set_flag: {name: serial_abandoner, expires_after: {days: 7}}}
""",
    )
    error = refused(tmp_path)
    assert isinstance(error, RuleSetError)
    text = str(error)
    assert "a timer's `then`" in text and "t.yaml:10" in text, text


def test_rule_tests_replay_a_threshold_as_the_store_counts_it() -> None:
    """The rule-test replay (engine.rules.testing) must flag the third complaint in a week too."""
    from engine.rules.testing import _Replay

    rules = load_ruleset(EXAMPLE_RULES)
    replay = _Replay("dev", rules)
    day = 86_400_000
    for i, ts in enumerate((T0 - 30 * day, T0 - 2 * day, T0 - day)):
        replay.event(Event(f"c{i}", "dev", "complaint", ts, None, {"topic": "seats"}), T0)
    assert "repeat_complainer" not in replay.flags, "the first complaint is weeks older than the others"
    replay.event(Event("c3", "dev", "complaint", T0, None, {"topic": "seats"}), T0)
    assert replay.flags["repeat_complainer"] == T0 + 30 * day
