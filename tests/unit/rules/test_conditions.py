"""The condition compiler: what it accepts, how it evaluates, and how it refuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.clock import MS_PER_HOUR
from engine.errors import EngineError, SourcePos
from engine.rules.conditions import Condition, ConditionError, compile_condition
from engine.rules.functions import FunctionSpec, Param, register, unregister
from engine.rules.vocabulary import EvalContext, Vocabulary

NOW = 1_795_428_000_000
VOCAB = Vocabulary.build(customer={"tier": "string", "age": "number"}, context={"device": "string"})

CUSTOMER: dict[str, Any] = {"tier": "gold", "age": 40}


def make_ctx(
    customer: Mapping[str, Any] | None = None,
    *,
    cart: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    last: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvalContext:
    return EvalContext(
        data={
            "customer": dict(CUSTOMER if customer is None else customer),
            "cart": dict(cart or {"value": 70, "items": 2, "skus": ["a", "b"]}),
            "event": dict(event or {"type": "purchase", "flight": {"delay": 50}}),
            "context": dict(context or {"device": "mobile"}),
        },
        now_ms=NOW,
        last=last or {},
    )


def run(source: str, ctx: EvalContext | None = None) -> bool:
    return compile_condition(source, VOCAB)(ctx or make_ctx())


def refusal(source: str, **kwargs: Any) -> ConditionError:
    with pytest.raises(ConditionError) as info:
        compile_condition(source, VOCAB, **kwargs)
    return info.value


# --- accepted constructs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("True", True),
        ("False", False),
        ("None", False),
        ("1", True),
        ("0", False),
        ("0.5", True),
        ("'x'", True),
        ("''", False),
        ("[]", False),
        ("[1, 2] == [1, 2]", True),
        ("(1, 2) == (1, 2)", True),
        ("() == ()", True),
        ("customer.tier == 'gold'", True),
        ("customer.tier != 'gold'", False),
        ("customer.age < 41", True),
        ("customer.age <= 40", True),
        ("customer.age > 40", False),
        ("customer.age >= 40", True),
        ("customer.tier in ['gold', 'platinum']", True),
        ("customer.tier in ('silver', 'platinum')", False),
        ("customer.tier not in ['silver']", True),
        ("'a' in cart.skus", True),
        ("'z' not in cart.skus", True),
        ("'ol' in customer.tier", True),
        ("customer.age in [customer.age, 1]", True),
        ("30 < customer.age < 50", True),
        ("30 < customer.age < 35", False),
        ("1 < 2 < 3 < 4", True),
        ("1 < 2 > 0 == 0", True),
        ("customer.tier == 'gold' == 'gold'", True),
        ("customer.tier in ['gold', 'platinum'] and cart.value > 50", True),
        ("customer.tier == 'silver' or cart.value > 50", True),
        ("not customer.age > 50", True),
        ("customer.age + 2 == 42", True),
        ("customer.age - 50 == -10", True),
        ("customer.age * 2 == 80", True),
        ("customer.age / 16 == 2.5", True),
        ("customer.age // 16 == 2", True),
        ("customer.age % 16 == 8", True),
        ("customer.age ** 2 == 1600", True),
        ("2 ** -1 == 0.5", True),
        ("-customer.age == -40", True),
        ("+customer.age == 40", True),
        ("- -customer.age == 40", True),
        ("'a' + 'b' == 'ab'", True),
        ("cart.skus + ['c'] == ['a', 'b', 'c']", True),
        ("('old' if customer.age > 30 else 'young') == 'old'", True),
        ("('old' if customer.age > 50 else 'young') == 'young'", True),
        ("context.device == 'mobile'", True),
        ("event.type == 'purchase'", True),
        ("event.flight.delay >= 45", True),
        ("event.anything == None", True),
        ("event.flight.gate.letter == None", True),
        ("cart.items == 2", True),
        ("(customer.age > 30) + 1 == 2", True),
    ],
)
def test_allowed_constructs(source: str, expected: bool) -> None:
    assert run(source) is expected


def test_condition_metadata() -> None:
    cond = compile_condition("customer.tier in ['gold'] and count('page_view', hours=24) >= 3 or event.flight.delay > 5", VOCAB)
    assert isinstance(cond, Condition)
    assert cond.source.startswith("customer.tier")
    assert cond.names == frozenset({"customer.tier", "event.flight.delay"})
    assert cond.functions == frozenset({"count"})


def test_condition_is_immutable() -> None:
    cond = compile_condition("True", VOCAB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.source = "False"  # type: ignore[misc]


def test_leading_whitespace_is_ignored() -> None:
    assert run("   customer.age == 40")


def test_parenthesised_expression_may_span_lines() -> None:
    assert run("(customer.age == 40 and\n customer.tier == 'gold')")


@pytest.fixture
def probe() -> Iterator[list[str]]:
    """A registered function that records its calls, to observe evaluation order."""
    calls: list[str] = []

    def impl(ctx: EvalContext, label: str) -> bool:
        calls.append(label)
        return True

    register(FunctionSpec("probe", (Param("label", "string"),), impl))
    yield calls
    unregister("probe")


def test_and_or_short_circuit(probe: list[str]) -> None:
    assert not run("False and probe('and')")
    assert run("True or probe('or')")
    assert probe == []
    assert run("True and probe('evaluated')")
    assert probe == ["evaluated"]


def test_chained_comparison_evaluates_middle_once(probe: list[str]) -> None:
    assert run("0 < probe('mid') <= 1")
    assert probe == ["mid"]
    assert not run("5 < probe('short') < 9")
    # The second comparison is skipped once the first is false.
    assert probe == ["mid", "short"]


# --- missing data and type mismatches -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.age > 3", False),
        ("customer.age < 3", False),
        ("customer.age >= 3", False),
        ("customer.age <= 3", False),
        ("not customer.age > 3", True),
        ("customer.age == None", True),
        ("customer.age != 1", True),
        ("customer.tier == 'gold'", False),
        ("customer.age + 1 == None", True),
        ("-customer.age == None", True),
        ("customer.age ** 2 == None", True),
        ("customer.age in [1, None]", True),
        ("1 in customer.tier", False),
        ("1 not in customer.tier", False),
        ("customer.age < customer.tier", False),
        ("customer.age", False),
    ],
)
def test_missing_field_semantics(source: str, expected: bool) -> None:
    assert run(source, make_ctx({})) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.tier > 5", False),
        ("customer.tier < 5", False),
        ("customer.tier + 1 == None", True),
        ("customer.tier * 3 == None", True),
        ("customer.tier % 2 == None", True),
        ("customer.age / 0 == None", True),
        ("customer.age // 0 == None", True),
        ("customer.age % 0 == None", True),
        ("0 ** -1 == None", True),
        ("5 in customer.age", False),
        ("cart.skus > 1", False),
        ("'a' < 'b'", True),
    ],
)
def test_mismatched_types_do_not_raise(source: str, expected: bool) -> None:
    assert run(source) is expected


def test_huge_powers_evaluate_to_none() -> None:
    ctx = make_ctx({"age": 10**15})
    assert run("((customer.age ** 8) ** 8) ** 8 == None", ctx)
    assert run("(customer.age ** 8) ** 8 > 0", ctx)


def test_missing_namespace_and_malformed_context_are_false() -> None:
    empty = EvalContext(data={}, now_ms=NOW)
    assert run("customer.tier == None", empty)
    assert not run("customer.age > 1", empty)
    broken = EvalContext(data={"customer": None}, now_ms=NOW)  # type: ignore[dict-item]
    assert run("customer.tier == None", broken) is False


def test_last_attribute_on_never_seen_event_is_none() -> None:
    assert run("last('purchase').amount == None")
    assert not run("last('purchase').amount > 3")


def test_last_attribute_reads_the_newest_event() -> None:
    ctx = make_ctx(last={"purchase": {"ts": NOW - MS_PER_HOUR, "amount": 120, "meta": {"channel": "web"}}})
    assert run("last('purchase').amount > 100", ctx)
    assert run("last('purchase').meta.channel == 'web'", ctx)
    assert run("last('purchase').missing == None", ctx)


# --- refusals -------------------------------------------------------------------------------

DEEP_PARENS = "(" * 100 + "1" + ")" * 100
LONG_NOT = "not " * 100 + "customer.age"
LONG_SUM = " + ".join(["1"] * 40)
WIDE_LIST = "[" + "1," * 300 + "]"


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("__import__('os')", "`__import__` is not allowed (names starting with `_` are reserved)", 1),
        ("_ctx", "`_ctx` is not allowed", 1),
        ("customer.__class__", "attribute access is not allowed: `__class__`", 10),
        ("().__class__.__bases__", "attribute access is not allowed: `__class__`", 4),
        ("last('purchase').__class__", "attribute access is not allowed: `__class__`", 18),
        ("count('purchase', __x=1)", "`__x` is not allowed", 19),
        ("open('x')", "built-in `open` is not allowed", 1),
        ("eval('1')", "built-in `eval` is not allowed", 1),
        ("len", "built-in `len` is not allowed", 1),
        ("customer.age == len", "built-in `len` is not allowed", 17),
        ("[x for x in y]", "comprehensions are not allowed: `[x for x in y]`", 1),
        ("any(x for x in y)", "built-in `any` is not allowed", 1),
        ("lambda: 1", "lambda expressions are not allowed: `lambda: 1`", 1),
        ("(y := 1)", "assignment expressions (`:=`) are not allowed: `y := 1`", 2),
        ("f'{customer.tier}' == 'x'", "f-strings are not allowed", 1),
        ("[*cart.skus]", "starred expressions are not allowed: `*cart.skus`", 2),
        ("{'a': 1}", "dict literals are not allowed: `{'a': 1}`", 1),
        ("{1, 2}", "set literals are not allowed: `{1, 2}`", 1),
        ("cart.skus[0] == 'a'", "subscripts are not allowed: `cart.skus[0]`", 1),
        ("b'abc' == 1", "bytes literals are not allowed: `b'abc'`", 1),
        ("1j == 1", "complex numbers are not allowed: `1j`", 1),
        ("... == 1", "`...` is not allowed", 1),
        ("2 ** 999999", "exponent too large: 999999 (at most 8)", 6),
        ("customer.age ** -9", "exponent too large: -9", 17),
        ("2 ** customer.age", "exponent must be a number literal (at most 8), not `customer.age`", 6),
        ("customer.age == 10000000000000000", "number too large: 10000000000000000", 17),
        ("'" + "a" * 201 + "' == 1", "string literal too long (201 characters > 200)", 1),
        (DEEP_PARENS, "expression nests too deeply (depth 100 > 32)", 33),
        (LONG_NOT, "expression nests too deeply (depth 102 > 32)", 4 * 32 + 1),
        (LONG_SUM, "expression nests too deeply (depth 40 > 32)", 1),
        (WIDE_LIST, "expression is too large (301 nodes > 256)", 1),
        ("x" * 1001, "expression too long (1001 characters > 1000)", 1),
        ("(" * 1001, "expression too long (1001 characters > 1000)", 1),
        ("customer.teir == 'gold'", "unknown field `customer.teir`", 1),
        ("customer.tier.upper", "attribute access is not allowed: `upper`", 15),
        ("customer", "`customer` is a namespace, not a value", 1),
        ("x.y == 1", "unknown namespace `x` in `x.y`", 1),
        ("foo", "unknown name `foo`", 1),
        ("count", "`count` is a function; call it", 1),
        ("count.x", "attribute access is not allowed: `x`", 7),
        ("foo(1)", "unknown function `foo`", 1),
        ("'a'.upper()", "only condition functions can be called by name, not `'a'.upper`", 1),
        ("customer.tier.__len__()", "attribute access is not allowed: `__len__`", 15),
        ("(lambda: 1)()", "only condition functions can be called by name, not `lambda: 1`", 2),
        ("count('page_view').x", "attribute access is not allowed: `x` (only on the result of `last(...)`)", 20),
        ("count('purchse') > 1", "unknown event type `purchse`", 7),
        ("count('page_view', weeks=2)", "`count` has no keyword argument `weeks`", 20),
        ("last('purchase', days=1)", "`last` has no keyword argument `days`", 18),
        ("count('page_view', **opts)", "`**` arguments are not allowed: `**opts`", 20),
        ("count(*types)", "starred arguments are not allowed: `*types`", 7),
        ("count()", "`count` takes 1 positional argument(s) (event_type), got 0", 1),
        ("count('page_view', 'purchase')", "`count` takes 1 positional argument(s) (event_type), got 2", 1),
        ("count(customer.tier)", "argument `event_type` of `count` must be a literal, not `customer.tier`", 7),
        ("count(1)", "argument `event_type` of `count` must be an event type string literal", 7),
        ("count('page_view', days=-1)", "argument `days` of `count` must not be negative, got -1", 25),
        ("count('page_view', days='x')", "argument `days` of `count` must be a number literal", 25),
        ("count('page_view', days=True)", "argument `days` of `count` must be a number literal", 25),
        ("customer.tier is None", "operator `is` is not allowed", 18),
        ("customer.age | 1", "operator `|` is not allowed", 14),
        ("customer.age << 60", "operator `<<` is not allowed", 14),
        ("~customer.age", "operator `~` is not allowed", 1),
        ("customer.tier ==", "syntax error: invalid syntax", 17),
        ("", "syntax error", 1),
        ("customer.tier == 'gold' gold", "syntax error: invalid syntax", 25),
    ],
)
def test_refusals(source: str, message: str, column: int) -> None:
    error = refusal(source)
    assert message in error.problem.message
    assert error.problem.pos == SourcePos("<condition>", 1, column)
    assert error.problem.source_line == source


def test_condition_error_is_an_engine_error() -> None:
    error = refusal("customer.teir == 'gold'")
    assert isinstance(error, EngineError)
    assert error.code == "invalid_condition"
    assert error.http_status == 422
    assert error.grpc_code == "INVALID_ARGUMENT"
    assert "unknown field `customer.teir`" in error.message
    assert error.to_dict()["error"] == "invalid_condition"


def test_unknown_field_has_a_hint() -> None:
    assert refusal("customer.teir == 'gold'").problem.hint == "did you mean `customer.tier`?"
    assert refusal("cutsomer.tier == 'gold'").problem.hint == "did you mean `customer.tier`?"
    assert refusal("context.zzzzzz == 1").problem.hint == "known fields of `context`: device"


def test_unknown_function_and_event_type_have_hints() -> None:
    assert refusal("cuont('page_view') > 1").problem.hint == "did you mean `count`?"
    assert refusal("count('purchse')").problem.hint == "did you mean `purchase`?"
    assert refusal("count('page_view', hour=1)").problem.hint == "did you mean `hours`?"


def test_non_text_condition_is_refused() -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(True, VOCAB)  # type: ignore[arg-type]
    assert "a condition must be text, got bool" in info.value.problem.message


def test_length_is_checked_before_parsing() -> None:
    # Unbalanced brackets would be a syntax error; the length limit speaks first.
    assert "too long" in refusal("[" * 2000).problem.message


# --- positions ------------------------------------------------------------------------------


def test_position_in_rule_file_points_at_the_offending_node() -> None:
    line = "    when: customer.tier == 'gold' and customer.teir == 'x'"
    expr = line[len("    when: ") :]
    error = refusal(expr, pos=SourcePos("rules/offers.yaml", 12, 11), source_line=line)
    problem = error.problem
    assert problem.pos == SourcePos("rules/offers.yaml", 12, 11 + expr.index("customer.teir"))
    rendered = problem.render()
    assert rendered.splitlines()[0] == "rules/offers.yaml:12:39: unknown field `customer.teir`"
    caret_line = rendered.splitlines()[2]
    assert caret_line.index("^") - 4 == line.index("customer.teir")
    assert "hint: did you mean `customer.tier`?" in rendered


def test_position_without_source_line_still_draws_a_caret() -> None:
    error = refusal("2 ** 999999", pos=SourcePos("r.yaml", 3, 9))
    assert error.problem.pos == SourcePos("r.yaml", 3, 14)
    lines = error.problem.render().splitlines()
    assert lines[1][4:].strip() == "2 ** 999999"
    assert lines[2].index("^") == lines[1].index("999999")


def test_position_on_a_later_line() -> None:
    expr = "(customer.tier == 'gold' and\n  customer.teir == 'x')"
    error = refusal(expr, pos=SourcePos("r.yaml", 5, 9), source_line="  when: (customer.tier == 'gold' and")
    assert error.problem.pos == SourcePos("r.yaml", 6, 3)
    assert error.problem.source_line == "  customer.teir == 'x')"


def test_position_without_pos_on_a_later_line() -> None:
    error = refusal("(customer.age > 1 and\n  foo)")
    assert error.problem.pos == SourcePos("<condition>", 2, 3)
    assert error.problem.source_line == "  foo)"


def test_syntax_error_position() -> None:
    error = refusal(
        "customer.tier == 'gold' gold", pos=SourcePos("r.yaml", 2, 7), source_line="when: customer.tier == 'gold' gold"
    )
    assert error.problem.message.startswith("syntax error")
    assert error.problem.pos == SourcePos("r.yaml", 2, 7 + len("customer.tier == 'gold' "))


def test_columns_count_characters_not_bytes() -> None:
    expr = "customer.tier == 'café' and customer.teir == 1"
    error = refusal(expr)
    assert error.problem.pos == SourcePos("<condition>", 1, expr.index("customer.teir") + 1)


def test_leading_whitespace_keeps_columns() -> None:
    error = refusal("  customer.teir")
    assert error.problem.pos == SourcePos("<condition>", 1, 3)


# --- properties -----------------------------------------------------------------------------

_INT = st.integers(min_value=-20, max_value=20).map(str)


def _expressions(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def binary(ops: list[str]) -> st.SearchStrategy[str]:
        return st.tuples(children, st.sampled_from(ops), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")

    return st.one_of(
        binary(["+", "-", "*", "/", "//", "%"]),
        binary(["<", "<=", ">", ">=", "==", "!="]),
        binary(["and", "or"]),
        st.tuples(children, st.sampled_from(["<", "<=", "=="]), children, st.sampled_from([">", "!=", ">="]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]} {t[3]} {t[4]})"
        ),
        children.map(lambda c: f"(not {c})"),
        children.map(lambda c: f"(-{c})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.integers(-9, 9), st.integers(0, 8)).map(lambda t: f"(({t[0]}) ** {t[1]})"),
    )


ARITHMETIC = st.recursive(_INT, _expressions, max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(ARITHMETIC)
def test_arithmetic_agrees_with_python(source: str) -> None:
    try:
        expected = bool(eval(source, {"__builtins__": {}}))
    except ArithmeticError:
        assume(False)
        return
    try:
        cond = compile_condition(source, VOCAB)
    except ConditionError as error:
        assume("nests too deeply" not in error.problem.message and "too long" not in error.problem.message)
        raise
    assert cond(make_ctx()) is expected


_CONDITION_ALPHABET = st.sampled_from(
    [
        "customer.tier",
        "customer.age",
        "cart.value",
        "event.x.y",
        "count('page_view', days=1)",
        "last('purchase').amount",
        " and ",
        " or ",
        "not ",
        " == ",
        " < ",
        " in ",
        "[",
        "]",
        "(",
        ")",
        ",",
        "'gold'",
        "1",
        "0",
        "-",
        " ** ",
        " / ",
        ".",
        "__class__",
        "None",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(_CONDITION_ALPHABET, max_size=20).map("".join),
    )
)
def test_any_text_compiles_or_is_refused_cleanly(source: str) -> None:
    try:
        cond = compile_condition(source, VOCAB)
    except ConditionError as error:
        problem = error.problem
    else:
        assert isinstance(cond(make_ctx()), bool)
        assert isinstance(cond(make_ctx({})), bool)
        assert isinstance(cond(EvalContext(data={}, now_ms=NOW)), bool)
        return
    assert problem.message
    assert problem.pos is not None


def test_null_bytes_are_a_syntax_error() -> None:
    error = refusal("customer.tier == '\x00'")
    assert error.problem.message == "syntax error: source code string cannot contain null bytes"
    assert error.problem.pos == SourcePos("<condition>", 1, 1)


def test_truncated_expression_points_past_the_end() -> None:
    error = refusal("customer.tier ==")
    assert error.problem.message == "syntax error: invalid syntax (the expression ends too early?)"
    assert error.problem.pos == SourcePos("<condition>", 1, 17)
