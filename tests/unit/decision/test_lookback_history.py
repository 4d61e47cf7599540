"""What `count` and `exists` read: the shared history, or a type's look-back counter where it holds more."""

from __future__ import annotations

import random
from pathlib import Path

from engine.decision.pipeline import history_for_conditions
from engine.domain import Event
from engine.rules.functions import lookback_counter
from engine.rules.loader import load_ruleset
from engine.rules.triggers import effects_of_event
from tests.conftest import EXAMPLE_RULES

DAY = 86_400_000
NOW = 1_000 * DAY


def entries(*typed: tuple[str, int]) -> list[dict[str, object]]:
    return [{"type": t, "ts": ts} for t, ts in typed]


def count(recent: list[dict[str, object]], taken: dict[str, list[int]], event_type: str, window: int) -> int:
    """What `count(event_type, window)` reads from what history_for_conditions gives it."""
    if event_type in taken:
        return sum(1 for ts in taken[event_type] if ts >= NOW - window)
    return sum(1 for e in recent if e["type"] == event_type and int(e["ts"]) >= NOW - window)  # type: ignore[call-overload]


def test_without_look_back_counters_the_shared_history_is_read_as_it_is() -> None:
    recent = entries(("page_view", NOW), ("email_received", NOW - DAY))
    assert history_for_conditions(recent, {"complaints": [NOW]}, {"email_received": 7 * DAY}, NOW) == (recent, {})


def test_a_counter_holding_more_within_its_window_replaces_its_type_and_leaves_the_others() -> None:
    recent = entries(*(("page_view", NOW - i) for i in range(3)))  # the email fell out of it
    counters = {lookback_counter("email_received"): [NOW - 2 * DAY], lookback_counter("page_view"): [NOW - 1, NOW]}
    looks = {"email_received": 7 * DAY, "page_view": 7 * DAY}
    recent_left, taken = history_for_conditions(recent, counters, looks, NOW)
    assert taken == {"email_received": [NOW - 2 * DAY]}
    assert count(recent_left, taken, "page_view", 7 * DAY) == 3, "the shared history held more page views: it stays"


def test_old_events_sent_late_do_not_make_the_shared_history_look_fuller() -> None:
    """Entries outside the window do not count for the choice: two emails from a month ago,
    sent late, must not hide last week's, which the shared history lost to page views."""
    recent = [*entries(("email_received", NOW - 20 * DAY), ("email_received", NOW - 30 * DAY)), *entries(("page_view", NOW))]
    counters = {lookback_counter("email_received"): [NOW - DAY]}
    recent_left, taken = history_for_conditions(recent, counters, {"email_received": 7 * DAY}, NOW)
    assert count(recent_left, taken, "email_received", 7 * DAY) == 1


def test_the_choice_gives_the_true_count_whenever_the_counter_has_run_for_its_window() -> None:
    """Random streams of events, arriving in any order (late ones too), a shared history of the
    latest N arrivals of any type and complete per-type counters over the window: every
    windowed count within the window is exact."""
    rng = random.Random(7)
    window = 7 * DAY
    for _ in range(300):
        arrivals = [(rng.choice("abc"), NOW - rng.randrange(0, 20 * DAY)) for _ in range(rng.randrange(1, 60))]
        recent = entries(*list(reversed(arrivals))[: rng.randrange(1, 30)])  # the latest arrivals, first
        counters = {lookback_counter(t): [ts for u, ts in arrivals if u == t and ts >= NOW - window] for t in "abc"}
        recent_left, taken = history_for_conditions(recent, counters, dict.fromkeys("abc", window), NOW)
        for t in "abc":
            for w in (DAY, 3 * DAY, window):
                assert count(recent_left, taken, t, w) == sum(1 for u, ts in arrivals if u == t and ts >= NOW - w)


def test_the_example_rules_keep_a_counter_of_the_types_they_look_back_at(tmp_path: Path) -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    assert rules.lookbacks == {"email_received": 7 * DAY, "page_view": 7 * DAY}
    assert rules.counters_read(True)[-2:] == (lookback_counter("email_received"), lookback_counter("page_view"))
    assert lookback_counter("page_view") not in rules.counters_read(False), "placements that never look back read none"
    event = Event("e1", "c1", "email_received", NOW)
    fx = effects_of_event(event, NOW, rules.triggers_by_event, rules.timer_cancels, NOW, rules.lookbacks)
    assert fx.increments == [(lookback_counter("email_received"), NOW, 7 * DAY, "e1")]
    for source in ("count('x', days=1) > 0 and exists('x', hours=36)", "count('x') > 0 or exists('x', days=2)"):
        (tmp_path / "r.yaml").write_text(
            f'event_types: [x]\ntreatments:\n  - id: a\n    kind: offer\n    channels: [web]\n    eligibility: "{source}"\n'
        )
        window = load_ruleset(tmp_path).lookbacks["x"]
        assert window == (36 * 3_600_000 if "hours=36" in source else None), "the longest window; none at all is longest"
