"""What an event does to timers: which pending waits a cancelling event reaches."""

from __future__ import annotations

from engine.domain import Event
from engine.rules.loader import load_ruleset
from engine.rules.triggers import effects_of_event
from tests.conftest import EXAMPLE_RULES, T0


def test_a_cancel_reaches_only_timers_started_no_later_than_the_cancelling_event() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    schedule = rules.triggers_by_id["cart_abandonment"].spec.schedule
    assert schedule is not None
    checkout = Event("co", "dev", "checkout", T0, None, {})
    fx = effects_of_event(checkout, T0, rules.triggers_by_event, rules.timer_cancels)
    # A wait started at or before T0 is due by T0 + its length; one a later cart_add started is not.
    assert fx.timers_cancel == {"cart_abandonment|dev": T0 + schedule.after.ms}


def test_an_event_that_cancels_and_restarts_a_timer_restarts_it() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    add = Event("add", "dev", "cart_add", T0, None, {"sku": "A", "price": 5})
    fx = effects_of_event(add, T0, rules.triggers_by_event, {"cart_add": (("cart_abandonment", 60_000),)})
    assert fx.timers_cancel == {}
    assert fx.timers_set["cart_abandonment|dev"][0] == T0 + rules.triggers_by_id["cart_abandonment"].spec.schedule.after.ms  # type: ignore[union-attr]
