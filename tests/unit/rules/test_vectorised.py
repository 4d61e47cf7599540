"""The vectorised back end: the condition language over columns, answering exactly as the scalar
evaluator does for every customer, and saying when it had to ask the scalar evaluator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.clock import MS_PER_DAY
from engine.rules.conditions import ConditionError
from engine.rules.functions import FunctionSpec, Param, register, unregister
from engine.rules.loader import load_ruleset
from engine.rules.vectorised import (
    VECTORISED_FUNCTIONS,
    Frame,
    column,
    compile_vectorised,
    evaluate_all,
    vectorise,
)
from engine.rules.vocabulary import EvalContext, Vocabulary
from tests.conftest import EXAMPLE_RULES

NOW = 1_795_428_000_000
VOCAB = Vocabulary.build(
    customer={"tier": "string", "age": "number", "tags": "list", "vip": "bool", "score": "any"},
    context={"device": "string"},
    flags=["delayed_flight"],
    counters=["views"],
)
EVENT_TYPES = ("purchase", "page_view", "email_received", "complaint")

# --- customers ---------------------------------------------------------------------------------

_EDGE_NUMBERS = [0, 0.0, -0.0, 1, -1, 2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 3, 10**17, 1e300, 0.1, 0.5]
_NUMBERS = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from(_EDGE_NUMBERS),
)
_STRINGS = st.sampled_from(["gold", "silver", "", "Gold", "ios", "a", "ab", "page_view"])
_ODD = st.sampled_from([float("nan"), float("inf"), -float("inf"), True, False, {}, {"y": 1}, (1,)])
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    _NUMBERS,
    _STRINGS,
    st.lists(st.one_of(_STRINGS, st.integers(-3, 3)), max_size=3),
    _ODD,
)
_TS = st.one_of(
    st.integers(NOW - 40 * MS_PER_DAY, NOW + MS_PER_DAY),
    st.floats(NOW - 40 * MS_PER_DAY, NOW + MS_PER_DAY),
    st.sampled_from([None, "yesterday", True, 2**60, float("nan"), float("inf"), -float("inf"), NOW]),
)
_CLEAN_TS = st.integers(NOW - 40 * MS_PER_DAY, NOW + MS_PER_DAY)


def _maybe(typical: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-typed values, sometimes anything at all."""
    return st.one_of(typical, typical, typical, _ANY)


@st.composite
def contexts(draw: st.DrawFn, *, odd_history: bool = True) -> EvalContext:
    ts = _TS if odd_history else _CLEAN_TS
    optional = st.fixed_dictionaries
    data = {
        "customer": draw(
            optional(
                {},
                optional={
                    "tier": _maybe(st.sampled_from(["gold", "silver", "platinum"])),
                    "age": _maybe(st.integers(0, 120)),
                    "tags": _maybe(st.lists(_STRINGS, max_size=3)),
                    "vip": _maybe(st.booleans()),
                    "score": _ANY,
                },
            )
        ),
        "cart": draw(optional({}, optional={"value": _maybe(_NUMBERS), "items": _maybe(st.integers(0, 5)), "skus": _ANY})),
        "context": draw(optional({}, optional={"device": _maybe(_STRINGS)})),
        "value": draw(optional({}, optional={"tier": _maybe(_STRINGS), "equity": _maybe(st.floats(0, 100))})),
        "event": draw(optional({}, optional={"type": _STRINGS, "x": st.one_of(optional({}, optional={"y": _ANY}), _ANY)})),
    }
    last = draw(
        st.dictionaries(
            st.sampled_from(EVENT_TYPES), st.one_of(st.none(), optional({}, optional={"ts": ts, "amount": _ANY})), max_size=3
        )
    )
    recent = draw(st.lists(optional({"type": st.one_of(st.sampled_from(EVENT_TYPES), _ANY)}, optional={"ts": ts}), max_size=5))
    flags = draw(st.dictionaries(st.just("delayed_flight"), st.one_of(_CLEAN_TS, ts), max_size=1))
    counter_ts = st.one_of(_CLEAN_TS, st.sampled_from([True, 2**60, float("nan")])) if odd_history else _CLEAN_TS
    counters = draw(st.dictionaries(st.just("views"), st.lists(counter_ts, max_size=4), max_size=1))
    topics = draw(st.dictionaries(st.sampled_from(["disliked:wifi", "liked:wifi"]), st.one_of(_CLEAN_TS, ts), max_size=2))
    return EvalContext(data, NOW, last=last, recent=recent, flags=flags, counters=counters, topics=topics)


# --- conditions --------------------------------------------------------------------------------

_LEAVES = st.sampled_from(
    [
        "customer.tier",
        "customer.age",
        "customer.tags",
        "customer.vip",
        "customer.score",
        "cart.value",
        "cart.items",
        "cart.skus",
        "context.device",
        "value.tier",
        "value.equity",
        "event.x.y",
        "event.type",
        "days_since('purchase')",
        "hours_since('page_view')",
        "count('page_view')",
        "count('page_view', days=1)",
        "count('email_received', days=1, hours=6)",
        "exists('email_received', hours=12)",
        "exists('complaint')",
        "flag('delayed_flight')",
        "counter('views')",
        "counter('views', days=1)",
        "complained_about('wifi')",
        "complained_about(' WiFi ', days=30)",
        "None",
        "True",
        "False",
        "0",
        "1",
        "3",
        "-2",
        "18",
        "2.5",
        "1000000000000000",
        "'gold'",
        "'a'",
        "''",
        "['gold', 'silver']",
        "[1, 2]",
        "(None, 3)",
    ]
)


def _grow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def binary(ops: list[str]) -> st.SearchStrategy[str]:
        return st.tuples(children, st.sampled_from(ops), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")

    return st.one_of(
        binary(["+", "-", "*", "/", "//", "%"]),
        binary(["<", "<=", ">", ">=", "==", "!="]),
        binary(["and", "or"]),
        binary(["in", "not in"]),
        st.tuples(children, st.sampled_from(["in", "not in"]), st.lists(children, max_size=3)).map(
            lambda t: f"({t[0]} {t[1]} [{', '.join(t[2])}])"
        ),
        st.tuples(children, st.sampled_from(["<", "<=", "=="]), children, st.sampled_from([">", "!=", ">="]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]} {t[3]} {t[4]})"
        ),
        st.lists(children, max_size=2).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(children, min_size=2, max_size=2).map(lambda xs: f"({', '.join(xs)})"),
        children.map(lambda c: f"(not {c})"),
        children.map(lambda c: f"(-{c})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(children, st.sampled_from(["-2", "0", "0.5", "2", "8"])).map(lambda t: f"({t[0]} ** {t[1]})"),
    )


CONDITIONS = st.recursive(_LEAVES, _grow, max_leaves=10)


def agree(source: str, ctxs: list[EvalContext], vocab: Vocabulary = VOCAB) -> int:
    """Assert the two evaluators agree on every row; return how many rows went to the scalar one."""
    vc = compile_vectorised(source, vocab)
    evaluation = vc.evaluate(Frame.from_contexts(ctxs, NOW))
    expected = [vc.condition(c) for c in ctxs]
    assert evaluation.matches.dtype == np.bool_
    assert evaluation.matches.tolist() == expected, source
    return evaluation.scalar_rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(CONDITIONS, st.lists(contexts(), min_size=1, max_size=12))
def test_random_conditions_agree_with_the_scalar_evaluator_row_by_row(source: str, ctxs: list[EvalContext]) -> None:
    try:
        compile_vectorised(source, VOCAB)
    except ConditionError as error:
        assume("nests too deeply" not in error.problem.message)
        raise
    agree(source, ctxs)


def _shipped_conditions() -> Iterator[tuple[str, str]]:
    rules = load_ruleset(EXAMPLE_RULES)
    for t in rules.treatments:
        if t.eligibility is not None:
            yield t.id, t.eligibility.source
        for i, (condition, _) in enumerate(t.context_weights):
            yield f"{t.id}:weight{i}", condition.source


SHIPPED = dict(_shipped_conditions())
SHIPPED_RULES = load_ruleset(EXAMPLE_RULES)


@st.composite
def shipped_contexts(draw: st.DrawFn) -> EvalContext:
    """Customers for the example rule set: its declared fields, mostly with plausible values."""
    ctx = draw(contexts())
    customer = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "tier": _maybe(st.sampled_from(["bronze", "silver", "gold", "platinum"])),
                "age": _maybe(st.integers(15, 90)),
                "segment": _maybe(st.sampled_from(["family", "young_adult", "business"])),
                "travel_month": _maybe(st.sampled_from(["june", "july"])),
                "usual_party_size": _ANY,
                "seat_preference": _ANY,
            },
        )
    )
    context = draw(st.fixed_dictionaries({}, optional={"companion": _maybe(st.sampled_from(["child", "friends", "none"]))}))
    value = draw(st.fixed_dictionaries({}, optional={"tier": _maybe(st.sampled_from(["bronze", "silver", "gold"]))}))
    last = {k: v for k, v in ctx.last.items() if k != "complaint"}
    if draw(st.booleans()):
        last["complaint"] = {"ts": draw(_TS)}
    flags = {name: draw(_TS) for name in draw(st.sets(st.sampled_from(["delayed_flight", "cart_abandoned"])))}
    counters = {name: draw(st.lists(_CLEAN_TS, max_size=4)) for name in ("premium_seat_views", "positive_mentions")}
    recent = [*ctx.recent, *draw(st.lists(st.fixed_dictionaries({"type": st.just("email_received"), "ts": _TS}), max_size=2))]
    return EvalContext(
        {**ctx.data, "customer": customer, "context": context, "value": value},
        NOW,
        last=last,
        recent=recent,
        flags=flags,
        counters=counters,
        topics=ctx.topics,
    )


def test_every_shipped_condition_is_vectorised() -> None:
    assert len(SHIPPED) >= 15
    for name, source in SHIPPED.items():
        vc = compile_vectorised(source, SHIPPED_RULES.vocabulary)
        assert vc.vectorised and vc.fallback is None, name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shipped_contexts(), min_size=1, max_size=10))
def test_shipped_conditions_agree_with_the_scalar_evaluator(ctxs: list[EvalContext]) -> None:
    for source in SHIPPED.values():
        agree(source, ctxs, SHIPPED_RULES.vocabulary)


@settings(max_examples=100, deadline=None)
@given(st.lists(contexts(odd_history=False), min_size=1, max_size=10))
def test_ordinary_customers_never_need_the_scalar_evaluator(ctxs: list[EvalContext]) -> None:
    sources = [
        "customer.tier in ['gold', 'platinum'] and customer.age >= 21",
        "(customer.age or 0) + cart.items * 2 >= 20 or not customer.vip",
        "days_since('purchase') == None or hours_since('page_view') < 3",
        "count('page_view', days=1) >= 2 or exists('email_received', hours=12)",
        "flag('delayed_flight') and counter('views', days=1) > 1",
        "complained_about('wifi', days=30) or 'a' in customer.tags",
    ]
    clean = [
        EvalContext(
            {"customer": {k: v for k, v in c.data["customer"].items() if k in ("tier", "age") and _plain(v)}},
            NOW,
            last=c.last,
            recent=c.recent,
            flags=c.flags,
            counters=c.counters,
            topics=c.topics,
        )
        for c in ctxs
    ]
    for source in sources:
        assert agree(source, clean) == 0, source


def _plain(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 1000)


# --- examples ----------------------------------------------------------------------------------


def _ctx(customer: dict[str, Any], **history: Any) -> EvalContext:
    return EvalContext({"customer": customer}, NOW, **history)


def test_missing_values_follow_the_scalar_rules() -> None:
    ctxs = [_ctx({"age": 40}), _ctx({}), _ctx({"age": None}), _ctx({"age": "forty"})]
    frame = Frame.from_contexts(ctxs, NOW)
    assert compile_vectorised("customer.age >= 18", VOCAB)(frame).tolist() == [True, False, False, False]
    assert compile_vectorised("customer.age < 18", VOCAB)(frame).tolist() == [False, False, False, False]
    assert compile_vectorised("customer.age == None", VOCAB)(frame).tolist() == [False, True, True, False]
    assert compile_vectorised("customer.age + 1 == None", VOCAB)(frame).tolist() == [False, True, True, True]


def test_values_beyond_exact_float_range_are_answered_by_the_scalar_evaluator() -> None:
    ctxs = [_ctx({"age": 2**52}), _ctx({"age": 3})]
    source = "customer.age * 4 + 1 - customer.age * 4 == 1"  # 2**54 + 1 is not a float64
    assert agree(source, ctxs) == 1
    assert compile_vectorised(source, VOCAB)(Frame.from_contexts(ctxs, NOW)).tolist() == [True, True]


def test_history_times_that_are_not_numbers_send_their_row_to_the_scalar_evaluator() -> None:
    ctxs = [_ctx({}, flags={"delayed_flight": "soon"}), _ctx({}, flags={"delayed_flight": NOW + 1})]
    frame = Frame.from_contexts(ctxs, NOW)
    assert frame.inexact is not None and frame.inexact.tolist() == [True, False]
    evaluation = compile_vectorised("flag('delayed_flight')", VOCAB).evaluate(frame)
    assert evaluation.matches.tolist() == [False, True]
    assert evaluation.scalar_rows == 1


def test_a_condition_reading_last_falls_back_and_says_so() -> None:
    vc = compile_vectorised("last('purchase').amount > 100 and customer.age >= 18", VOCAB)
    assert not vc.vectorised
    assert vc.fallback is not None and "last" in vc.fallback
    ctxs = [
        _ctx({"age": 30}, last={"purchase": {"ts": NOW, "amount": 150}}),
        _ctx({"age": 30}, last={"purchase": {"ts": NOW, "amount": 50}}),
        _ctx({"age": 12}, last={"purchase": {"ts": NOW, "amount": 500}}),
        _ctx({"age": 30}),
    ]
    evaluation = vc.evaluate(Frame.from_contexts(ctxs, NOW))
    assert evaluation.matches.tolist() == [True, False, False, False]
    assert evaluation.scalar_rows == len(ctxs)


@pytest.fixture
def plugin_function() -> Iterator[str]:
    register(FunctionSpec("is_weekend", (), lambda ctx: (ctx.now_ms // MS_PER_DAY) % 7 in (2, 3)))
    yield "is_weekend"
    unregister("is_weekend")


def test_a_function_registered_later_falls_back(plugin_function: str) -> None:
    vc = compile_vectorised(f"{plugin_function}() or customer.age > 60", VOCAB)
    assert vc.fallback == f"`{plugin_function}(...)` has no vectorised form"
    ctxs = [_ctx({"age": 70}), _ctx({"age": 20})]
    assert vc(Frame.from_contexts(ctxs, NOW)).tolist() == [vc.condition(c) for c in ctxs]


@pytest.fixture
def replaced_flag() -> Iterator[None]:
    from engine.rules.functions import FUNCTIONS

    original = FUNCTIONS["flag"]
    register(FunctionSpec("flag", (Param("name", "flag"),), lambda ctx, name: True), replace=True)
    yield
    register(original, replace=True)


def test_a_replaced_builtin_falls_back(replaced_flag: None) -> None:
    vc = compile_vectorised("flag('delayed_flight')", VOCAB)
    assert vc.fallback is not None and "registered again" in vc.fallback
    assert vc(Frame.from_contexts([_ctx({})], NOW)).tolist() == [True]


def test_conditions_evaluated_together_build_each_context_once() -> None:
    built: list[int] = []
    ctxs = [_ctx({"age": a}, last={"purchase": {"ts": NOW, "amount": a}}) for a in (10, 50, 90)]

    def context_of(row: int) -> EvalContext:
        built.append(row)
        return ctxs[row]

    base = Frame.from_contexts(ctxs, NOW)
    frame = Frame(base.size, base.columns, NOW, context_of, base.inexact)
    fallback = [
        vectorise(compile_vectorised(s, VOCAB).condition, VOCAB)
        for s in ("last('purchase').amount > 40", "last('purchase').amount < 60")
    ]
    vectorised = compile_vectorised("customer.age > 40", VOCAB)
    results = evaluate_all([*fallback, vectorised], frame)
    assert [r.matches.tolist() for r in results] == [[False, True, True], [True, True, False], [False, True, True]]
    assert [r.scalar_rows for r in results] == [3, 3, 0]
    assert sorted(built) == [0, 1, 2]


def test_refused_conditions_are_refused_with_the_scalar_compilers_message() -> None:
    with pytest.raises(ConditionError) as info:
        compile_vectorised("customer.teir == 'gold'", VOCAB)
    assert "unknown field `customer.teir`" in info.value.problem.message


def test_columns_keep_exact_numbers_as_floats_and_everything_else_as_objects() -> None:
    assert column([1, None, 2.5]).dtype == np.float64
    assert column([1, "a"]).dtype == object
    assert column([True, None]).dtype == object
    assert column([2**53]).dtype == object
    assert column([float("nan")]).dtype == object


def test_columns_given_directly_are_read_by_dtype() -> None:
    n = 4
    frame = Frame(
        n,
        {
            "customer.age": np.array([10, 20, 30, 40]),
            "customer.vip": np.array([True, False, True, False]),
            "customer.tier": np.array(["gold", "silver", "gold", "bronze"]),
            "flag.delayed_flight": np.array([NOW + 1.0, np.nan, NOW - 1.0, NOW + 5.0]),
            "counter.views": np.array([[NOW - 1.0, NOW - 2.0], [np.nan, np.nan], [NOW - 3 * MS_PER_DAY, np.nan], [NOW, NOW]]),
        },
        NOW,
        lambda row: pytest.fail("no row should need the scalar evaluator"),
    )
    source = "customer.age > 15 and customer.vip or customer.tier == 'gold' and flag('delayed_flight')"
    assert compile_vectorised(source, VOCAB)(frame).tolist() == [True, False, True, False]
    assert compile_vectorised("counter('views', days=1) == 2", VOCAB)(frame).tolist() == [True, False, False, True]
    assert compile_vectorised("counter('views') >= 1", VOCAB)(frame).tolist() == [True, False, True, True]


def test_every_vectorised_function_is_a_registered_one() -> None:
    assert set(VECTORISED_FUNCTIONS) == {
        "days_since",
        "hours_since",
        "count",
        "exists",
        "flag",
        "counter",
        "complained_about",
    }


def test_the_module_examples_run() -> None:
    import doctest

    from engine.rules import vectorised

    results = doctest.testmod(vectorised)
    assert results.attempted > 0 and results.failed == 0
