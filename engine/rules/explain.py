"""Why a condition did not hold: the sub-expressions that failed and the values they read.

A marketer who reads "condition is false: customer.tier in ['gold', 'platinum'] and cart.value
> 50" still has to guess which half failed. `Condition.explain(ctx)` answers
`cart.value > 50 was false (cart.value = 20)`.

The compiler (`conditions.py`) keeps, beside the closure it evaluates on every decision, a
plan of the condition's boolean structure: `and`, `or` and `not` nodes over *tests* (any other
sub-expression, such as a comparison or a function call), each test with the *inputs* it reads
(field reads and function calls). Nothing of the plan is compiled until a condition is first
explained, so loading rules and evaluating conditions cost what they cost without it; an
explanation then evaluates each test and input on its own, with the same total semantics.

Which sub-expressions are reported:

* a test that was false;
* for `a and b`, every conjunct that was false (Python stops at the first; a marketer wants
  all that must change);
* for `a or b`, every alternative, since all were false;
* for `not x`, why `x` was *true*.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.rules.vocabulary import EvalContext

_LINE_BREAK = re.compile(r"\s*[\r\n]+\s*")
_MAX_SHOWN_CHARS = 60
_MAX_PLAIN_DEPTH = 8


# --- what an explanation says ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """A sub-expression, what it evaluated to, and the inputs it read (None: missing)."""

    expression: str
    was: bool
    values: Mapping[str, Any]

    def describe(self) -> str:
        """`cart.value > 50 was false (cart.value = 20)`; `customer.age is missing`."""
        verdict = "true" if self.was else "false"
        if list(self.values) == [self.expression]:
            value = self.values[self.expression]
            if value is None:
                return f"{self.expression} is missing"
            if isinstance(value, bool):
                return f"{self.expression} was {verdict}"
        seen = ", ".join(_describe_input(name, value) for name, value in self.values.items())
        return f"{self.expression} was {verdict} ({seen})" if seen else f"{self.expression} was {verdict}"

    def as_dict(self) -> dict[str, Any]:
        return {"expression": self.expression, "was": self.was, "values": dict(self.values)}


@dataclass(frozen=True, slots=True)
class Explanation:
    """The outcome of a condition for one context and, when false, what made it false.

    `failed` is empty exactly when `result` is true. `reason` says the same in words.
    """

    source: str
    result: bool
    failed: tuple[Finding, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The structured form carried by explanations on the wire."""
        return {"condition": self.source, "failed": [f.as_dict() for f in self.failed]}


def _describe_input(name: str, value: Any) -> str:
    return f"{name} is missing" if value is None else f"{name} = {show(value)}"


def show(value: Any) -> str:
    """A value as a condition would spell it: `'gold'`, `20`, `2.5`, `true`, `['a', 'b']`."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 3] + "..."


def plain(value: Any, depth: int = 0) -> Any:
    """A value as JSON and protobuf Structs can carry it (lists, string-keyed dicts, scalars)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_PLAIN_DEPTH:
        return show(value)
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    return show(value)


# --- the plan the compiler leaves ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Test:
    text: str
    fn: int
    """Index of its `ctx -> bool` function."""
    inputs: tuple[tuple[str, int], ...]
    """(text, index of its `ctx -> value` function) of each field read or function call."""


@dataclass(frozen=True, slots=True)
class _All:
    text: str
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Any:
    text: str
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    text: str
    part: _Node


_Node = _Test | _All | _Any | _Not


class Explainer:
    """The boolean structure of one condition, compiled into traced functions on first use."""

    __slots__ = ("_bodies", "_fns", "_globals", "_root", "_source")

    def __init__(self, source: str, root: _Node, bodies: list[ast.expr], globals_: dict[str, Any]) -> None:
        self._source = source
        self._root = root
        self._bodies: list[ast.expr] | None = bodies
        self._globals = globals_
        self._fns: tuple[Callable[[EvalContext], Any], ...] = ()

    def explain(self, result: bool, ctx: EvalContext) -> Explanation:
        """Explain a condition that evaluated to `result` (computed by its normal closure)."""
        source = " ".join(self._source.split())
        if result:
            return Explanation(self._source, True, (), f"{source} was true")
        trace = _Trace(self._functions(), ctx)
        failed, words = trace.why(self._root, False, top=True)
        if not failed:
            # Only a malformed context (one the normal closure raised on) gets here.
            failed, words = [Finding(source, False, {})], f"{source} was false"
        return Explanation(self._source, False, tuple(failed), words)

    def _functions(self) -> tuple[Callable[[EvalContext], Any], ...]:
        bodies = self._bodies
        if bodies is not None:
            self._fns = _compile_all(bodies, self._globals)
            self._bodies = None
        return self._fns


def _compile_all(bodies: list[ast.expr], globals_: dict[str, Any]) -> tuple[Callable[[EvalContext], Any], ...]:
    """One `compile()` for every test and input: a tuple of `lambda _ctx: ...`."""
    lambdas: list[ast.expr] = [
        ast.Lambda(
            args=ast.arguments(
                posonlyargs=[], args=[ast.arg(arg="_ctx")], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
            ),
            body=body,
        )
        for body in bodies
    ]
    tree = ast.fix_missing_locations(ast.Expression(body=ast.Tuple(elts=lambdas, ctx=ast.Load())))
    fns: tuple[Callable[[EvalContext], Any], ...] = eval(compile(tree, "<condition explain>", "eval"), globals_)
    return fns


class _Trace:
    """One explanation's evaluation: each test and input runs at most once."""

    def __init__(self, fns: Sequence[Callable[[EvalContext], Any]], ctx: EvalContext) -> None:
        self.fns = fns
        self.ctx = ctx
        self.seen: dict[int, Any] = {}

    def value(self, index: int) -> Any:
        if index not in self.seen:
            try:
                self.seen[index] = self.fns[index](self.ctx)
            except Exception:
                # As Condition.__call__: a malformed context reads as false / missing.
                self.seen[index] = None
        return self.seen[index]

    def holds(self, node: _Node) -> bool:
        if isinstance(node, _Test):
            return bool(self.value(node.fn))
        if isinstance(node, _Not):
            return not self.holds(node.part)
        if isinstance(node, _All):
            return all(self.holds(p) for p in node.parts)
        return any(self.holds(p) for p in node.parts)

    def why(self, node: _Node, want: bool, *, top: bool = False) -> tuple[list[Finding], str]:
        """The tests that made `node` evaluate to `want` (which it does), and the same in words."""
        if isinstance(node, _Test):
            values = {text: plain(self.value(fn)) for text, fn in node.inputs}
            finding = Finding(node.text, want, values)
            return [finding], finding.describe()
        if isinstance(node, _Not):
            return self.why(node.part, not want, top=top)
        # `and` false / `or` true: the parts that decided it; `and` true / `or` false: all parts.
        deciding = isinstance(node, _All) != want
        parts = [p for p in node.parts if self.holds(p) == want] if deciding else list(node.parts)
        findings: list[Finding] = []
        words: list[str] = []
        for part in parts:
            found, said = self.why(part, want)
            findings.extend(found)
            words.append(said)
        text = "; ".join(words)
        if isinstance(node, _Any) and not want and len(words) > 1:
            text = f"none of these held: {text}" if top else f"none of these held: [{text}]"
        return findings, text


class Planner:
    """Builds an Explainer from a checked tree and the code the compiler generated for it."""

    def __init__(self, text: str, generated: Mapping[ast.AST, ast.expr]) -> None:
        self.text = text
        self.generated = generated
        self.bodies: list[ast.expr] = []
        self.inputs: dict[str, int] = {}

    def build(self, source: str, root: ast.expr, globals_: dict[str, Any]) -> Explainer:
        return Explainer(source, self.node(root), self.bodies, globals_)

    def segment(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.text, node) or ast.unparse(node)
        return _LINE_BREAK.sub(" ", text.strip())

    def add(self, body: ast.expr) -> int:
        self.bodies.append(body)
        return len(self.bodies) - 1

    def node(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.BoolOp):
            parts = tuple(self.node(v) for v in node.values)
            return _All(self.segment(node), parts) if isinstance(node.op, ast.And) else _Any(self.segment(node), parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _Not(self.segment(node), self.node(node.operand))
        test = ast.Call(func=ast.Name(id="_bool", ctx=ast.Load()), args=[self.generated[node]], keywords=[])
        return _Test(self.segment(node), self.add(test), tuple(self.read_by(node)))

    def read_by(self, node: ast.AST) -> list[tuple[str, int]]:
        """Field reads (`customer.tier`, `last('purchase').amount`) and calls, outermost first."""
        found: list[tuple[str, int]] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, ast.Attribute | ast.Call) and current in self.generated:
                text = self.segment(current)
                if text not in self.inputs:
                    self.inputs[text] = self.add(self.generated[current])
                if all(text != t for t, _ in found):
                    found.append((text, self.inputs[text]))
                continue
            stack.extend(reversed(list(ast.iter_child_nodes(current))))
        return found
