"""Condition functions over a fixed clock and a known interaction history."""

from __future__ import annotations

from typing import Any

import pytest

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.rules.conditions import ConditionError, compile_condition
from engine.rules.functions import (
    FUNCTIONS,
    FunctionSpec,
    Param,
    count,
    days_since,
    exists,
    function_names,
    hours_since,
    last,
    register,
    unregister,
)
from engine.rules.vocabulary import EvalContext, Vocabulary

NOW = 1_795_428_000_000
VOCAB = Vocabulary.build(customer={"tier": "string"}, extra_event_types=["survey_sent"])


def event(kind: str, hours_ago: float, **attributes: Any) -> dict[str, Any]:
    return {"type": kind, "ts": NOW - int(hours_ago * MS_PER_HOUR), "channel": "web", "attributes": attributes}


RECENT = [
    event("page_view", 1),
    event("page_view", 5),
    event("cart_add", 6),
    event("page_view", 23),
    event("page_view", 30),
    event("complaint", 24 * 10),
    {"type": "page_view", "ts": None},  # a malformed entry never falls inside a window
]
LAST = {
    "page_view": {"ts": NOW - MS_PER_HOUR},
    "flight_delayed": {"ts": NOW - 3 * MS_PER_HOUR, "delay_minutes": 50},
    "purchase": {"ts": NOW - 2 * MS_PER_DAY, "amount": 80.5},
}


@pytest.fixture
def ctx() -> EvalContext:
    return EvalContext(data={"customer": {"tier": "gold"}}, now_ms=NOW, last=LAST, recent=RECENT)


def test_registry_lists_the_builtin_functions() -> None:
    assert function_names() == ["complained_about", "count", "counter", "days_since", "exists", "flag", "hours_since", "last"]
    assert FUNCTIONS["count"].signature() == "count(event_type, days=..., hours=...)"
    assert FUNCTIONS["last"].returns_record
    with pytest.raises(TypeError):
        FUNCTIONS["x"] = FUNCTIONS["count"]  # type: ignore[index]


def test_count_windows(ctx: EvalContext) -> None:
    assert count(ctx, "page_view") == 5
    assert count(ctx, "page_view", hours=24) == 3
    assert count(ctx, "page_view", hours=5) == 2
    assert count(ctx, "page_view", days=1) == 3
    assert count(ctx, "page_view", days=1, hours=6) == 4
    assert count(ctx, "page_view", hours=0) == 0
    assert count(ctx, "purchase") == 0


def test_exists_windows(ctx: EvalContext) -> None:
    assert exists(ctx, "complaint")
    assert not exists(ctx, "complaint", days=7)
    assert exists(ctx, "complaint", days=11)
    assert exists(ctx, "cart_add", hours=6)
    assert not exists(ctx, "purchase")


def test_since(ctx: EvalContext) -> None:
    assert hours_since(ctx, "flight_delayed") == pytest.approx(3.0)
    assert days_since(ctx, "purchase") == pytest.approx(2.0)
    assert days_since(ctx, "complaint") is None
    assert hours_since(ctx, "complaint") is None


def test_since_ignores_bad_timestamps_and_clock_skew() -> None:
    skewed = EvalContext(data={}, now_ms=NOW, last={"purchase": {"ts": NOW + MS_PER_HOUR}, "complaint": {"ts": "yesterday"}})
    assert hours_since(skewed, "purchase") == 0.0
    assert days_since(skewed, "complaint") is None


def test_last(ctx: EvalContext) -> None:
    assert last(ctx, "purchase") == {"ts": NOW - 2 * MS_PER_DAY, "amount": 80.5}
    assert last(ctx, "complaint") is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("count('page_view', hours=24) >= 3", True),
        ("count('page_view', hours=24) >= 4", False),
        ("count('page_view') == 5", True),
        ("count('page_view', days=1.25) == 4", True),
        ("not exists('complaint', days=7)", True),
        ("exists('complaint')", True),
        ("exists('survey_sent')", False),
        ("hours_since('flight_delayed') <= 24 and last('flight_delayed').delay_minutes >= 45", True),
        ("days_since('purchase') > 1.5", True),
        ("days_since('complaint') == None", True),
        ("days_since('complaint') < 30", False),
        ("days_since('complaint') > 30", False),
        ("last('purchase').amount > 80", True),
        ("last('purchase').ts == last('purchase').ts", True),
        ("last('complaint').amount == None", True),
        ("last('complaint')", False),
        ("last('purchase')", True),
    ],
)
def test_functions_in_conditions(ctx: EvalContext, source: str, expected: bool) -> None:
    assert compile_condition(source, VOCAB)(ctx) is expected


def test_functions_in_conditions_match_direct_calls(ctx: EvalContext) -> None:
    for hours in (0, 1, 5, 6, 23, 24, 31):
        cond = compile_condition(f"count('page_view', hours={hours}) == {count(ctx, 'page_view', hours=hours)}", VOCAB)
        assert cond(ctx)


def test_functions_tolerate_an_empty_history() -> None:
    empty = EvalContext(data={}, now_ms=NOW)
    assert compile_condition("count('page_view') == 0 and not exists('purchase', days=1)", VOCAB)(empty)
    assert compile_condition("hours_since('purchase') == None", VOCAB)(empty)


def test_extra_event_types_are_accepted() -> None:
    compile_condition("exists('survey_sent')", VOCAB)
    with pytest.raises(ConditionError, match="unknown event type `survey_sent`"):
        compile_condition("exists('survey_sent')", Vocabulary.build())


def test_register_and_unregister() -> None:
    spec = FunctionSpec(
        "tier_is",
        (Param("tier", "string"),),
        lambda ctx, tier: ctx.data.get("customer", {}).get("tier") == tier,
    )
    register(spec)
    try:
        assert "tier_is" in function_names()
        cond = compile_condition("tier_is('gold')", VOCAB)
        assert cond(EvalContext(data={"customer": {"tier": "gold"}}, now_ms=NOW))
        with pytest.raises(ConditionError, match="must be a string literal"):
            compile_condition("tier_is(1)", VOCAB)
        with pytest.raises(ValueError, match="already registered"):
            register(spec)
        register(spec, replace=True)
    finally:
        unregister("tier_is")
    assert "tier_is" not in FUNCTIONS


@pytest.mark.parametrize("name", ["_hidden", "not", "two words", "__import__"])
def test_register_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid condition function name"):
        register(FunctionSpec(name, (), lambda ctx: None))


def test_register_refuses_duplicate_parameters() -> None:
    with pytest.raises(ValueError, match="duplicate parameter"):
        register(FunctionSpec("dup", (Param("a", "string"),), lambda ctx, a: None, keywords=(Param("a", "number"),)))


def test_flags_counters_and_complaint_topics_read_trigger_state() -> None:
    from engine.rules.functions import complained_about, counter, flag
    from engine.rules.vocabulary import EvalContext

    now = 10 * 86_400_000
    ctx = EvalContext(
        data={},
        now_ms=now,
        flags={"cart_abandoned": now + 1, "old": now - 1},
        counters={"mentions": [now - 2 * 86_400_000, now - 10 * 86_400_000]},
        topics={"disliked:wifi": now - 86_400_000, "liked:food": now},
    )
    assert flag(ctx, "cart_abandoned") and not flag(ctx, "old") and not flag(ctx, "never")
    assert counter(ctx, "mentions") == 2 and counter(ctx, "mentions", days=7) == 1 and counter(ctx, "none") == 0
    assert complained_about(ctx, "wifi", days=2) and not complained_about(ctx, "wifi", hours=1)
    assert not complained_about(ctx, "food")


def test_unknown_flag_or_counter_is_refused_when_the_rules_load() -> None:
    import pytest

    from engine.rules.conditions import ConditionError, compile_condition
    from engine.rules.vocabulary import Vocabulary

    vocab = Vocabulary.build(flags=["cart_abandoned"], counters=["mentions"])
    assert compile_condition("flag('cart_abandoned') and counter('mentions', days=7) >= 2", vocab)
    with pytest.raises(ConditionError, match="unknown flag `cart_abandonned`") as info:
        compile_condition("flag('cart_abandonned')", vocab)
    assert "cart_abandoned" in (info.value.problem.hint or "")
    with pytest.raises(ConditionError, match="unknown counter `mention`"):
        compile_condition("counter('mention') > 1", vocab)
