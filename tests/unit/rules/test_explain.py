"""Explaining a condition: which sub-expressions failed, and the values they read."""

from __future__ import annotations

import doctest
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.rules import conditions
from engine.rules.conditions import compile_condition
from engine.rules.explain import Finding, plain, show
from engine.rules.vocabulary import EvalContext, Vocabulary

NOW = 1_795_428_000_000
VOCAB = Vocabulary.build(
    customer={"tier": "string", "age": "number", "vip": "bool", "segment": "string"},
    context={"companion": "string"},
    flags=["cart_abandoned"],
)


def make_ctx(
    customer: Mapping[str, Any] | None = None,
    *,
    cart: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    last: Mapping[str, Mapping[str, Any]] | None = None,
    recent: list[dict[str, Any]] | None = None,
    flags: Mapping[str, int] | None = None,
) -> EvalContext:
    return EvalContext(
        data={
            "customer": dict(customer or {}),
            "cart": dict(cart or {}),
            "context": dict(context or {}),
            "event": {},
            "value": {},
        },
        now_ms=NOW,
        last=dict(last or {}),
        recent=list(recent or []),
        flags=dict(flags or {}),
    )


def failed(source: str, ctx: EvalContext) -> list[tuple[str, bool, dict[str, Any]]]:
    explanation = compile_condition(source, VOCAB).explain(ctx)
    assert not explanation.result
    return [(f.expression, f.was, dict(f.values)) for f in explanation.failed]


GOLD_SMALL_CART = make_ctx({"tier": "gold"}, cart={"value": 20})


def test_and_names_the_conjunct_that_failed_with_the_value_it_saw() -> None:
    condition = compile_condition("customer.tier in ['gold', 'platinum'] and cart.value > 50", VOCAB)
    explanation = condition.explain(GOLD_SMALL_CART)
    assert explanation.reason == "cart.value > 50 was false (cart.value = 20)"
    assert explanation.as_dict() == {
        "condition": "customer.tier in ['gold', 'platinum'] and cart.value > 50",
        "failed": [{"expression": "cart.value > 50", "was": False, "values": {"cart.value": 20}}],
    }


def test_and_names_every_conjunct_that_failed_not_only_the_first() -> None:
    ctx = make_ctx({"tier": "silver"}, cart={"value": 20})
    assert failed("customer.tier in ['gold', 'platinum'] and cart.value > 50", ctx) == [
        ("customer.tier in ['gold', 'platinum']", False, {"customer.tier": "silver"}),
        ("cart.value > 50", False, {"cart.value": 20}),
    ]


def test_or_lists_every_alternative() -> None:
    ctx = make_ctx({"segment": "business"}, context={"companion": "friends"})
    source = "context.companion == 'child' or customer.segment == 'family'"
    assert failed(source, ctx) == [
        ("context.companion == 'child'", False, {"context.companion": "friends"}),
        ("customer.segment == 'family'", False, {"customer.segment": "business"}),
    ]
    reason = compile_condition(source, VOCAB).explain(ctx).reason
    assert reason.startswith("none of these held: context.companion == 'child' was false (context.companion = 'friends');")


def test_an_or_inside_an_and_is_grouped_in_words() -> None:
    ctx = make_ctx({"age": 40}, cart={"value": 20}, context={"companion": "friends"})
    reason = (
        compile_condition("customer.age < 30 and (context.companion == 'child' or cart.value > 100)", VOCAB).explain(ctx).reason
    )
    assert reason == (
        "customer.age < 30 was false (customer.age = 40); none of these held: "
        "[context.companion == 'child' was false (context.companion = 'friends'); cart.value > 100 was false (cart.value = 20)]"
    )


def test_not_says_what_was_true() -> None:
    assert failed("not customer.tier == 'gold'", GOLD_SMALL_CART) == [
        ("customer.tier == 'gold'", True, {"customer.tier": "gold"})
    ]
    explanation = compile_condition("not (customer.tier == 'gold' and cart.value < 100)", VOCAB).explain(GOLD_SMALL_CART)
    assert [(f.expression, f.was) for f in explanation.failed] == [("customer.tier == 'gold'", True), ("cart.value < 100", True)]
    assert "cart.value < 100 was true (cart.value = 20)" in explanation.reason


def test_a_missing_value_is_called_missing() -> None:
    explanation = compile_condition("customer.age < 30", VOCAB).explain(make_ctx({"tier": "gold"}))
    assert explanation.reason == "customer.age < 30 was false (customer.age is missing)"
    assert explanation.failed[0].values == {"customer.age": None}
    assert compile_condition("customer.vip", VOCAB).explain(make_ctx()).reason == "customer.vip is missing"


def test_a_function_call_shows_what_it_returned() -> None:
    ctx = make_ctx(last={"purchase": {"ts": NOW - 3 * MS_PER_DAY, "amount": 12}})
    explanation = compile_condition("days_since('purchase') > 30", VOCAB).explain(ctx)
    assert explanation.reason == "days_since('purchase') > 30 was false (days_since('purchase') = 3)"
    assert explanation.failed[0].values["days_since('purchase')"] == pytest.approx(3)
    assert failed("last('purchase').amount > 100", ctx) == [
        ("last('purchase').amount > 100", False, {"last('purchase').amount": 12})
    ]


def test_windowed_counts_and_flags_show_their_values() -> None:
    recent = [{"type": "page_view", "ts": NOW - MS_PER_HOUR}, {"type": "page_view", "ts": NOW - 3 * MS_PER_DAY}]
    ctx = make_ctx(recent=recent, flags={"cart_abandoned": NOW - 1})
    assert failed("count('page_view', days=1) >= 2", ctx) == [
        ("count('page_view', days=1) >= 2", False, {"count('page_view', days=1)": 1})
    ]
    explanation = compile_condition("flag('cart_abandoned')", VOCAB).explain(ctx)
    assert explanation.reason == "flag('cart_abandoned') was false", "an expired flag"


def test_chained_comparisons_and_arithmetic_show_the_inputs() -> None:
    ctx = make_ctx({"age": 41}, cart={"value": 20})
    assert failed("18 <= customer.age < 30", ctx) == [("18 <= customer.age < 30", False, {"customer.age": 41})]
    assert failed("cart.value * 2 + customer.age > 100", ctx) == [
        ("cart.value * 2 + customer.age > 100", False, {"cart.value": 20, "customer.age": 41})
    ]


def test_sub_expressions_read_as_written_even_across_lines() -> None:
    source = "(customer.tier  in  ['gold']\n   and cart.value > 50)"
    assert failed(source, GOLD_SMALL_CART) == [("cart.value > 50", False, {"cart.value": 20})]
    assert failed('customer.tier == "silver"', GOLD_SMALL_CART)[0][0] == 'customer.tier == "silver"'


def test_a_true_condition_has_nothing_failed() -> None:
    explanation = compile_condition("customer.tier == 'gold' or cart.value > 50", VOCAB).explain(GOLD_SMALL_CART)
    assert explanation.result and explanation.failed == ()
    assert explanation.as_dict()["failed"] == []


def test_a_malformed_context_is_explained_without_raising() -> None:
    ctx = EvalContext(data={"customer": "not a mapping"}, now_ms=NOW)  # type: ignore[dict-item]
    explanation = compile_condition("customer.tier == 'gold'", VOCAB).explain(ctx)
    assert not explanation.result
    assert [f.expression for f in explanation.failed] == ["customer.tier == 'gold'"]


def test_record_values_are_carried_as_plain_data() -> None:
    assert plain({"ts": 5, "tags": ("a", "b"), "n": float("nan"), 1: 2**70}) == {
        "ts": 5,
        "tags": ["a", "b"],
        "n": None,
        "1": 2.0**70,
    }
    assert show(3.0) == "3" and show(0.25) == "0.25" and show("gold") == "'gold'" and show([1, "a"]) == "[1, 'a']"
    assert Finding("x > 1", False, {"x": None, "y": True}).describe() == "x > 1 was false (x is missing, y = true)"


def test_the_docstring_example_runs() -> None:
    results = doctest.testmod(conditions, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 1 and results.failed == 0


# --- property: the explanation agrees with the condition ------------------------------------------

_ATOMS = st.sampled_from(
    [
        "customer.age < 30",
        "customer.age >= 21",
        "customer.tier == 'gold'",
        "customer.tier in ['gold', 'platinum']",
        "customer.vip",
        "cart.value > 50",
        "cart.value * 2 >= customer.age",
        "days_since('purchase') > 30",
        "days_since('purchase') == None",
        "count('page_view', days=1) >= 2",
        "flag('cart_abandoned')",
        "last('purchase').amount > 10",
        "10 < customer.age <= 40",
        "context.companion != 'child'",
    ]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        children.map(lambda c: f"not {c}" if c.startswith("(") else f"not ({c})"),
    )


CONDITIONS = st.recursive(_ATOMS, _combine, max_leaves=6)
_MAYBE = st.one_of(st.none(), st.integers(-5, 80), st.floats(-10, 100, allow_nan=False), st.text(max_size=3))


@st.composite
def contexts(draw: st.DrawFn) -> EvalContext:
    customer = {
        k: v
        for k, v in {
            "age": draw(_MAYBE),
            "tier": draw(st.sampled_from([None, "gold", "silver", "platinum", 3])),
            "vip": draw(st.one_of(st.none(), st.booleans(), st.integers(0, 1))),
        }.items()
        if v is not None
    }
    purchase_days = draw(st.one_of(st.none(), st.floats(0, 90, allow_nan=False)))
    last = {}
    if purchase_days is not None:
        last["purchase"] = {"ts": NOW - int(purchase_days * MS_PER_DAY), "amount": draw(_MAYBE)}
    views = draw(st.lists(st.integers(0, 48), max_size=4))
    return make_ctx(
        customer,
        cart={"value": draw(_MAYBE)},
        context={"companion": draw(st.sampled_from(["child", "friends", None]))},
        last=last,
        recent=[{"type": "page_view", "ts": NOW - h * MS_PER_HOUR} for h in views],
        flags={"cart_abandoned": NOW + draw(st.integers(-MS_PER_HOUR, MS_PER_HOUR))},
    )


@settings(max_examples=300, deadline=None)
@given(CONDITIONS, contexts())
def test_explain_reports_failure_iff_false_and_each_finding_holds_on_its_own(source: str, ctx: EvalContext) -> None:
    condition = compile_condition(source, VOCAB)
    explanation = condition.explain(ctx)
    assert explanation.result == condition(ctx)
    assert (explanation.failed == ()) == explanation.result
    for finding in explanation.failed:
        assert compile_condition(finding.expression, VOCAB)(ctx) == finding.was, finding
        for name, value in finding.values.items():
            if value is None:
                assert compile_condition(f"{name} == None", VOCAB)(ctx), (name, value)
            elif isinstance(value, bool | int | float | str):
                assert compile_condition(f"{name} == {value!r}", VOCAB)(ctx), (name, value)
