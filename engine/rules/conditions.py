"""Eligibility conditions: a whitelisted subset of Python expressions, compiled once.

Marketers write conditions such as `customer.tier in ['gold'] and count('page_view', hours=24)
>= 3` in rule files. The text is parsed with `ast`, every node is checked against a short
whitelist (anything not explicitly allowed is refused with a positioned message), and the tree
is rewritten into a `lambda _ctx: ...` whose only globals are a handful of total helper
functions. Because the generated code is built from vetted nodes only, compiling it with
`compile()`/`eval()` is safe, and evaluation costs a few hundred nanoseconds.

Run-time semantics are total: a condition never raises. Missing fields read as `None`;
ordering comparisons involving `None` or mismatched types are false; arithmetic involving
`None`, non-numbers or a zero divisor yields `None`. Errors in a rule are therefore caught
when the rules load, never while deciding for a customer.

`Condition.explain(ctx)` says which sub-expressions were false and what values they read
(`explain.py`); only requests that ask for explanations pay for it.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import io
import re
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from engine.errors import EngineError, RuleProblem, SourcePos
from engine.rules.explain import Explainer, Explanation, Planner
from engine.rules.functions import (
    FUNCTIONS,
    LOOKBACK_FUNCTIONS,
    FunctionSpec,
    Param,
    check_argument,
    function_names,
    window_ms,
)
from engine.rules.semantics import HELPERS as _HELPERS
from engine.rules.semantics import NUMBER_TYPES
from engine.rules.vocabulary import EvalContext, FieldType, Vocabulary

MAX_SOURCE_CHARS = 1000
MAX_DEPTH = 32
MAX_NODES = 256
MAX_EXPONENT = 8
MAX_STRING_CHARS = 200
MAX_INT = 10**15
"""Integer powers whose result would exceed this many bits evaluate to None, so nested
`((x ** 8) ** 8) ** 8` cannot stall a decision computing a gigantic number."""

DEFAULT_FILE = "<condition>"

_BUILTIN_NAMES = frozenset(dir(builtins))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SNIPPET_CHARS = 40


class ConditionError(EngineError):
    """A condition was refused when its rule set loaded; `problem` says where and why."""

    http_status = 422
    grpc_code = "INVALID_ARGUMENT"
    code = "invalid_condition"

    def __init__(self, problem: RuleProblem, *more: RuleProblem) -> None:
        super().__init__("\n".join(p.render() for p in (problem, *more)))
        self.problem = problem
        self.problems = (problem, *more)
        """Every fault found in the expression, in source order (`problem` is the first)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition. Calling it never raises; any surprise reads as "not eligible"."""

    source: str
    names: frozenset[str]
    functions: frozenset[str]
    lookbacks: frozenset[tuple[str, float | None]]
    """What `count` and `exists` look back at: (event type, window ms or None for all time)."""
    _fn: Callable[[EvalContext], bool] = field(repr=False, compare=False)
    _explainer: Explainer = field(repr=False, compare=False)

    def __call__(self, ctx: EvalContext) -> bool:
        try:
            return self._fn(ctx)
        except Exception:
            # Defence in depth: the generated code is total for well-formed contexts, but a
            # malformed context (say a namespace that is not a mapping) must not fail a decision.
            return False

    def explain(self, ctx: EvalContext) -> Explanation:
        """Evaluate again, tracing: the result and, when false, the sub-expressions that failed
        with the values they read. Slower than a call; for explanations only.

        >>> from engine.rules.vocabulary import Vocabulary
        >>> vocab = Vocabulary.build(customer={"tier": "string"})
        >>> condition = compile_condition("customer.tier in ['gold', 'platinum'] and cart.value > 50", vocab)
        >>> ctx = EvalContext(data={"customer": {"tier": "gold"}, "cart": {"value": 20}}, now_ms=0)
        >>> condition.explain(ctx).reason
        'cart.value > 50 was false (cart.value = 20)'
        """
        return self._explainer.explain(self(ctx), ctx)


ORDERING: dict[type[ast.cmpop], str] = {
    ast.Lt: "_lt",
    ast.LtE: "_le",
    ast.Gt: "_gt",
    ast.GtE: "_ge",
}

ARITHMETIC: dict[type[ast.operator], str] = {
    ast.Add: "_add",
    ast.Sub: "_sub",
    ast.Mult: "_mul",
    ast.Div: "_div",
    ast.FloorDiv: "_floordiv",
    ast.Mod: "_mod",
    ast.Pow: "_pow",
}

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
}

_REFUSED_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Subscript: "subscripts are not allowed",
    ast.Slice: "slices are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.NamedExpr: "assignment expressions (`:=`) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed",
    ast.YieldFrom: "`yield` is not allowed",
}


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_load(helper), args=list(args), keywords=[])


def _is_number(value: object) -> bool:
    return isinstance(value, NUMBER_TYPES) and not isinstance(value, bool)


def literal_number(node: ast.expr) -> int | float | None:
    """The value of `5`, `-5` or `+5.0`; None for anything else."""
    if isinstance(node, ast.Constant) and _is_number(node.value):
        return node.value  # type: ignore[no-any-return]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and _is_number(node.operand.value)
    ):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value  # type: ignore[no-any-return]
    return None


def _did_you_mean(word: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f"did you mean `{close[0]}`?" if close else None


class _Compiler:
    """Checks one parsed expression and generates the equivalent total code."""

    def __init__(
        self,
        source: str,
        text: str,
        lead: int,
        vocab: Vocabulary,
        pos: SourcePos | None,
        source_line: str | None,
        event_type: str | None = None,
    ) -> None:
        self.source = source
        self.event_type = event_type
        """The trigger's event type when compiling its `when:`: `event.*` is that event."""
        self.text = text
        self.lead = lead
        self.lines = _LINE_BREAK.split(source)
        self.text_lines = _LINE_BREAK.split(text)
        self.vocab = vocab
        self.pos = pos
        self.source_line = source_line
        self.names: set[str] = set()
        self.functions: set[str] = set()
        self.lookbacks: set[tuple[str, float | None]] = set()
        """(event type, window ms or None for all time) of every `count` and `exists` call."""
        self.globals: dict[str, Any] = dict(_HELPERS)
        self.temps = 0
        self.generated: dict[ast.AST, ast.expr] = {}
        """Checked node -> the code generated for it, for explanations (`explain.Planner`)."""
        self.faults: list[RuleProblem] = []

    # --- positions ---------------------------------------------------------------------

    def place(self, lineno: int, col: int) -> tuple[SourcePos, str | None]:
        """Map a 1-based line and 0-based character column of the source to the rule file."""
        lineno = min(max(lineno, 1), len(self.lines))
        line_text = self.lines[lineno - 1]
        if self.pos is None:
            return SourcePos(DEFAULT_FILE, lineno, col + 1), line_text
        if lineno == 1:
            shown = self.source_line
            if shown is None:
                shown = " " * (self.pos.column - 1) + line_text
            return SourcePos(self.pos.file, self.pos.line, self.pos.column + col), shown
        return SourcePos(self.pos.file, self.pos.line + lineno - 1, col + 1), line_text

    def problem(self, message: str, at: tuple[int, int] = (1, 0), hint: str | None = None) -> RuleProblem:
        """A problem at a 1-based line and 0-based column of the *parsed* text."""
        lineno, col = at
        if lineno == 1:
            col += self.lead
        where, shown = self.place(lineno, col)
        return RuleProblem(where, message, shown, hint)

    def fail(self, message: str, at: tuple[int, int] = (1, 0), hint: str | None = None) -> NoReturn:
        raise ConditionError(self.problem(message, at, hint))

    def char_col(self, lineno: int, byte_col: int) -> int:
        """`ast` columns count UTF-8 bytes; carets need characters."""
        if not 1 <= lineno <= len(self.text_lines):
            return byte_col
        line = self.text_lines[lineno - 1]
        if line.isascii():
            return byte_col
        return len(line.encode("utf-8")[:byte_col].decode("utf-8", "ignore"))

    def start(self, node: ast.AST) -> tuple[int, int]:
        lineno: int = getattr(node, "lineno", 1)
        return lineno, self.char_col(lineno, getattr(node, "col_offset", 0))

    def end(self, node: ast.AST) -> tuple[int, int]:
        lineno: int = getattr(node, "end_lineno", None) or getattr(node, "lineno", 1)
        byte_col = getattr(node, "end_col_offset", None)
        if byte_col is None:
            return self.start(node)
        return lineno, self.char_col(lineno, byte_col)

    def attr_at(self, node: ast.Attribute) -> tuple[int, int]:
        lineno, col = self.end(node)
        return lineno, max(col - len(node.attr), 0)

    def snippet(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.text, node) or type(node).__name__
        text = " ".join(text.split())
        if len(text) > _SNIPPET_CHARS:
            text = text[: _SNIPPET_CHARS - 3] + "..."
        return text

    # --- shape limits ------------------------------------------------------------------

    def check_brackets(self) -> None:
        """Redundant parentheses leave no trace in the AST, so nesting is also counted here."""
        depth = 0
        try:
            for tok in tokenize.generate_tokens(io.StringIO(self.text).readline):
                if tok.type != tokenize.OP:
                    continue
                if tok.string in "([{":
                    depth += 1
                    if depth > MAX_DEPTH:
                        deepest = self._deepest_brackets()
                        self.fail(
                            f"expression nests too deeply (depth {deepest} > {MAX_DEPTH})",
                            at=(tok.start[0], tok.start[1]),
                        )
                elif tok.string in ")]}":
                    depth -= 1
        except (tokenize.TokenError, SyntaxError):
            return

    def _deepest_brackets(self) -> int:
        depth = deepest = 0
        for tok in tokenize.generate_tokens(io.StringIO(self.text).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
                deepest = max(deepest, depth)
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
        return deepest

    def check_shape(self, root: ast.expr) -> None:
        """Depth and size are measured without recursion, so hostile input cannot overflow."""
        stack: list[tuple[ast.AST, int]] = [(root, 1)]
        deepest = 0
        first_too_deep: ast.AST | None = None
        size = 0
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.expr | ast.keyword):
                size += 1
            if depth > deepest:
                deepest = depth
            if depth > MAX_DEPTH and first_too_deep is None:
                first_too_deep = node
            children = list(ast.iter_child_nodes(node))
            for child in reversed(children):
                stack.append((child, depth + 1 if isinstance(child, ast.expr) else depth))
        if first_too_deep is not None:
            self.fail(
                f"expression nests too deeply (depth {deepest} > {MAX_DEPTH})",
                at=self.start(first_too_deep),
            )
        if size > MAX_NODES:
            self.fail(f"expression is too large ({size} nodes > {MAX_NODES})", at=self.start(root))

    # --- checking and generation ---------------------------------------------------------

    def visit(self, node: ast.expr) -> ast.expr:
        method = _DISPATCH.get(type(node))
        if method is None:
            message = _REFUSED_CONSTRUCTS.get(type(node))
            if message is None:
                message = f"`{type(node).__name__}` expressions are not allowed"
            self.faults.append(self.problem(f"{message}: `{self.snippet(node)}`", at=self.start(node)))
            return ast.Constant(None)
        try:
            result: ast.expr = method(self, node)
        except ConditionError as exc:
            # Noted, and the rest of the expression is checked on, so that one load lists every
            # fault in it; nothing is generated from an expression with a fault.
            self.faults.extend(exc.problems)
            return ast.Constant(None)
        self.generated[node] = result
        return result

    def on_constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        if value is None or isinstance(value, bool):
            return ast.Constant(value=value)
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                self.fail(
                    f"number too large: {value} (at most 10**15 in absolute value)",
                    at=self.start(node),
                )
            return ast.Constant(value=value)
        if isinstance(value, float):
            return ast.Constant(value=value)
        if isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                self.fail(
                    f"string literal too long ({len(value)} characters > {MAX_STRING_CHARS})",
                    at=self.start(node),
                )
            return ast.Constant(value=value)
        if isinstance(value, bytes):
            self.fail(f"bytes literals are not allowed: `{self.snippet(node)}`", at=self.start(node))
        if isinstance(value, complex):
            self.fail(f"complex numbers are not allowed: `{self.snippet(node)}`", at=self.start(node))
        self.fail(f"`{self.snippet(node)}` is not allowed", at=self.start(node))

    def refuse_underscore(self, name: str, at: tuple[int, int]) -> None:
        if name.startswith("_"):
            self.fail(f"`{name}` is not allowed (names starting with `_` are reserved)", at=at)

    def on_name(self, node: ast.Name) -> ast.expr:
        name = node.id
        at = self.start(node)
        self.refuse_underscore(name, at)
        namespaces = self.vocab.namespaces
        if name in namespaces:
            fields = sorted(namespaces[name])
            example = f"e.g. `{name}.{fields[0]}`" if fields else None
            self.fail(f"`{name}` is a namespace, not a value; name one of its fields", at, example)
        if name in FUNCTIONS:
            self.fail(f"`{name}` is a function; call it", at, f"e.g. `{FUNCTIONS[name].signature()}`")
        if name in _BUILTIN_NAMES:
            self.fail(f"built-in `{name}` is not allowed", at)
        hint = _did_you_mean(name, [*namespaces, *self.known_fields(), *function_names()])
        self.fail(f"unknown name `{name}`", at, hint)

    def known_fields(self) -> list[str]:
        return sorted(f"{ns}.{f}" for ns in self.vocab.namespaces for f in self.declared(ns) or self.vocab.namespaces[ns])

    def declared(self, ns: str) -> Mapping[str, FieldType] | None:
        """The fields `ns.<name>` may name here, or None when any name goes."""
        if ns == "event" and self.event_type is not None:
            fields = self.vocab.trigger_event_fields(self.event_type)
            if fields is not None:
                return fields
        if ns in self.vocab.open_namespaces:
            return None
        return self.vocab.namespaces[ns]

    def unknown_event_attribute(self, name: str, event_type: str | None, fields: Mapping[str, FieldType], prefix: str) -> str:
        """The hint for an event attribute nothing declares where it is read.

        Names are matched without their `event.` prefix, which would make every short name look
        close to every other. A name declared for another type says so first: suggesting a
        near-miss there would hide that the declaration is what is missing.
        """
        elsewhere = self.vocab.types_declaring(name)
        if event_type is not None and name in ("ts", "channel") and name not in fields:
            return f"a trigger's condition sees the event's `type` and attributes, not its `{name}`"
        if event_type is not None and elsewhere:
            return (
                f"`{name}` is declared for {', '.join(f'`{t}`' for t in elsewhere)} events, not `{event_type}`;"
                f" declare it for `{event_type}` under `event_types:`"
            )
        close = difflib.get_close_matches(name, sorted(fields), n=1)
        if close:
            return f"did you mean `{prefix}{close[0]}`?"
        if event_type is None:
            return f"no event type declares `{name}`; declare it under `event_types:`"
        return f"`{event_type}` events declare: {', '.join(sorted(fields))}; declare more under `event_types:`"

    def nested(self, what: str, kind: FieldType | None, chain: list[ast.Attribute]) -> None:
        """Refuse `.x.y` past a declared attribute unless it may hold a record (`any`)."""
        if len(chain) > 1 and kind != "any":
            self.fail(
                f"attribute access is not allowed: `{chain[1].attr}` (`{what}` is a {kind}, not a record)",
                at=self.attr_at(chain[1]),
            )

    def record_access(self, root: ast.Call, spec: FunctionSpec, chain: list[ast.Attribute], attrs: list[str]) -> None:
        """Check `last('<type>').<attr>` against what that event type declares."""
        index = next((i for i, p in enumerate(spec.params) if p.kind == "event_type"), None)
        if index is None or index >= len(root.args):
            return
        arg = root.args[index]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return
        event_type = arg.value
        fields = self.vocab.last_event_fields(event_type)
        if fields is None:
            return
        name = attrs[0]
        call = f"{spec.name}('{event_type}')"
        if name not in fields:
            hint = self.unknown_event_attribute(name, event_type, fields, "")
            self.fail(f"unknown attribute `{name}` of `{call}`", at=self.attr_at(chain[0]), hint=hint)
        self.nested(f"{call}.{name}", fields[name], chain)

    def on_attribute(self, node: ast.Attribute) -> ast.expr:
        chain: list[ast.Attribute] = []
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            chain.append(root)
            root = root.value
        chain.reverse()
        attrs = [a.attr for a in chain]
        for link in chain:
            if link.attr.startswith("_"):
                self.fail(f"attribute access is not allowed: `{link.attr}`", at=self.attr_at(link))
        if isinstance(root, ast.Name) and root.id in self.vocab.namespaces:
            return self.field_access(root, chain, attrs)
        if isinstance(root, ast.Call):
            spec = FUNCTIONS.get(root.func.id) if isinstance(root.func, ast.Name) else None
            if spec is not None and spec.returns_record:
                result = self.visit(root)
                self.record_access(root, spec, chain, attrs)
                for attr in attrs:
                    result = _call("_get", result, ast.Constant(value=attr))
                return result
            self.fail(
                f"attribute access is not allowed: `{attrs[0]}` (only on the result of `last(...)`)",
                at=self.attr_at(chain[0]),
            )
        if isinstance(root, ast.Name):
            name = root.id
            self.refuse_underscore(name, self.start(root))
            if name in FUNCTIONS or name in _BUILTIN_NAMES:
                self.fail(f"attribute access is not allowed: `{attrs[0]}`", at=self.attr_at(chain[0]))
            dotted = ".".join([name, *attrs])
            hint = _did_you_mean(dotted, self.known_fields()) or _did_you_mean(name, sorted(self.vocab.namespaces))
            self.fail(f"unknown namespace `{name}` in `{dotted}`", at=self.start(root), hint=hint)
        self.fail(f"attribute access is not allowed: `{attrs[0]}`", at=self.attr_at(chain[0]))

    def field_access(self, root: ast.Name, chain: list[ast.Attribute], attrs: list[str]) -> ast.expr:
        ns = root.id
        field_name = attrs[0]
        declared = self.declared(ns)
        if declared is not None:
            dotted = f"{ns}.{field_name}"
            if field_name not in declared:
                if ns == "event" and self.vocab.event_attributes is not None:
                    hint = self.unknown_event_attribute(field_name, self.event_type, declared, "event.")
                    if self.event_type is not None:
                        self.fail(f"unknown attribute `{dotted}` of `{self.event_type}` events", self.start(root), hint)
                    self.fail(f"unknown field `{dotted}`", at=self.start(root), hint=hint)
                hint = _did_you_mean(dotted, self.known_fields())
                if hint is None and declared:
                    hint = f"known fields of `{ns}`: " + ", ".join(sorted(declared))
                elif hint is None:
                    hint = f"`{ns}` declares no fields"
                self.fail(f"unknown field `{dotted}`", at=self.start(root), hint=hint)
            if ns == "event":
                self.nested(dotted, declared[field_name], chain)
            elif len(attrs) > 1:
                self.fail(
                    f"attribute access is not allowed: `{attrs[1]}` (`{ns}.{field_name}` is a field, not a namespace)",
                    at=self.attr_at(chain[1]),
                )
        self.names.add(".".join([ns, *attrs]))
        data = ast.Attribute(value=_load("_ctx"), attr="data", ctx=ast.Load())
        namespace = ast.Call(
            func=ast.Attribute(value=data, attr="get", ctx=ast.Load()),
            args=[ast.Constant(value=ns), _load("_E")],
            keywords=[],
        )
        result: ast.expr = ast.Call(
            func=ast.Attribute(value=namespace, attr="get", ctx=ast.Load()),
            args=[ast.Constant(value=field_name)],
            keywords=[],
        )
        for attr in attrs[1:]:
            result = _call("_get", result, ast.Constant(value=attr))
        return result

    def on_call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if not isinstance(func, ast.Name):
            link: ast.expr = func
            while isinstance(link, ast.Attribute):
                if link.attr.startswith("_"):
                    self.fail(f"attribute access is not allowed: `{link.attr}`", at=self.attr_at(link))
                link = link.value
            self.fail(
                f"only condition functions can be called by name, not `{self.snippet(func)}`",
                at=self.start(func),
                hint="functions: " + ", ".join(function_names()),
            )
        name = func.id
        at = self.start(func)
        self.refuse_underscore(name, at)
        spec = FUNCTIONS.get(name)
        if spec is None:
            listing = "functions: " + ", ".join(function_names())
            if name in _BUILTIN_NAMES:
                self.fail(f"built-in `{name}` is not allowed", at, listing)
            self.fail(f"unknown function `{name}`", at, _did_you_mean(name, function_names()) or listing)
        self.functions.add(name)
        args = [self.argument(spec, param, arg) for param, arg in self.positional(spec, node)]
        keywords = [self.keyword_argument(spec, kw) for kw in node.keywords]
        impl_name = f"_f{len(self.globals)}"
        if spec.bind is not None:
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            options = {kw.arg: kw.value.value for kw in keywords if kw.arg and isinstance(kw.value, ast.Constant)}
            self.globals[impl_name] = spec.bind(*values, **options)
            if name in LOOKBACK_FUNCTIONS and values:
                self.lookbacks.add((str(values[0]), window_ms(options.get("days"), options.get("hours"))))
            return ast.Call(func=_load(impl_name), args=[_load("_ctx")], keywords=[])
        self.globals[impl_name] = spec.impl
        return ast.Call(func=_load(impl_name), args=[_load("_ctx"), *args], keywords=keywords)

    def positional(self, spec: FunctionSpec, node: ast.Call) -> list[tuple[Param, ast.expr]]:
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail(f"starred arguments are not allowed: `{self.snippet(arg)}`", self.start(arg))
        expected = len(spec.params)
        if len(node.args) != expected:
            wanted = ", ".join(p.name for p in spec.params)
            self.fail(
                f"`{spec.name}` takes {expected} positional argument(s) ({wanted}), got {len(node.args)}",
                at=self.start(node),
                hint=f"usage: `{spec.signature()}`",
            )
        return list(zip(spec.params, node.args, strict=True))

    def literal(self, spec: FunctionSpec, name: str, node: ast.expr) -> object:
        number = literal_number(node)
        if number is not None:
            self.visit(node)  # applies the literal size limits
            return number
        if isinstance(node, ast.Constant):
            self.visit(node)
            return node.value
        self.fail(
            f"argument `{name}` of `{spec.name}` must be a literal, not `{self.snippet(node)}`",
            at=self.start(node),
        )

    def argument(self, spec: FunctionSpec, param: Param, node: ast.expr) -> ast.expr:
        value = self.literal(spec, param.name, node)
        problem = check_argument(spec, param, value, self.vocab)
        if problem is not None:
            self.fail(problem[0], at=self.start(node), hint=problem[1])
        return ast.Constant(value=value)

    def keyword_argument(self, spec: FunctionSpec, kw: ast.keyword) -> ast.keyword:
        if kw.arg is None:
            self.fail(f"`**` arguments are not allowed: `{self.snippet(kw)}`", at=self.start(kw))
        self.refuse_underscore(kw.arg, self.start(kw))
        param = spec.keyword(kw.arg)
        if param is None:
            allowed = [p.name for p in spec.keywords]
            hint = _did_you_mean(kw.arg, allowed)
            if hint is None:
                hint = "allowed: " + ", ".join(allowed) if allowed else f"usage: `{spec.signature()}`"
            self.fail(f"`{spec.name}` has no keyword argument `{kw.arg}`", self.start(kw), hint)
        value = self.literal(spec, param.name, kw.value)
        problem = check_argument(spec, param, value, self.vocab)
        if problem is not None:
            self.fail(problem[0], at=self.start(kw.value), hint=problem[1])
        return ast.keyword(arg=kw.arg, value=ast.Constant(value=value))

    def on_boolop(self, node: ast.BoolOp) -> ast.expr:
        return ast.BoolOp(op=type(node.op)(), values=[self.visit(v) for v in node.values])

    def on_unaryop(self, node: ast.UnaryOp) -> ast.expr:
        op = node.op
        if isinstance(op, ast.Not):
            return ast.UnaryOp(op=ast.Not(), operand=self.visit(node.operand))
        if isinstance(op, ast.USub | ast.UAdd):
            operand = self.visit(node.operand)
            if isinstance(operand, ast.Constant) and _is_number(operand.value):
                value = operand.value
                return ast.Constant(value=-value if isinstance(op, ast.USub) else value)
            return _call("_neg" if isinstance(op, ast.USub) else "_pos", operand)
        symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
        self.fail(f"operator `{symbol}` is not allowed", at=self.start(node))

    def operator_at(self, node: ast.BinOp, symbol: str) -> tuple[int, int]:
        """Where the operator token sits, so the caret points at `<<` rather than its operand."""
        segment_start = self.end(node.left)
        segment_end = self.start(node.right)
        if segment_start[0] == segment_end[0]:
            line = self.text_lines[segment_start[0] - 1]
            found = line.find(symbol, segment_start[1], segment_end[1])
            if found >= 0:
                return segment_start[0], found
        return self.start(node)

    def on_binop(self, node: ast.BinOp) -> ast.expr:
        helper = ARITHMETIC.get(type(node.op))
        if helper is None:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            self.fail(f"operator `{symbol}` is not allowed", at=self.operator_at(node, symbol))
        if isinstance(node.op, ast.Pow):
            exponent = literal_number(node.right)
            if exponent is None:
                self.fail(
                    f"exponent must be a number literal (at most {MAX_EXPONENT}), not `{self.snippet(node.right)}`",
                    at=self.start(node.right),
                )
            if abs(exponent) > MAX_EXPONENT:
                limit = f"at most {MAX_EXPONENT}" if exponent > 0 else f"absolute value at most {MAX_EXPONENT}"
                self.fail(f"exponent too large: {exponent} ({limit})", at=self.start(node.right))
            return _call(helper, self.visit(node.left), ast.Constant(value=exponent))
        return _call(helper, self.visit(node.left), self.visit(node.right))

    def on_compare(self, node: ast.Compare) -> ast.expr:
        operands = [node.left, *node.comparators]
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot):
                symbol = _OPERATOR_SYMBOLS[type(op)]
                self.fail(
                    f"operator `{symbol}` is not allowed",
                    at=self.start(right),
                    hint="use `==` or `!=`",
                )
        generated = [self.visit(x) for x in operands]
        parts: list[ast.expr] = []
        left = generated[0]
        for i, op in enumerate(node.ops):
            right_first = right_next = generated[i + 1]
            reused = i + 1 < len(node.ops)
            if reused and not isinstance(right_first, ast.Constant):
                temp = f"_t{self.temps}"
                self.temps += 1
                right_first = ast.NamedExpr(target=ast.Name(id=temp, ctx=ast.Store()), value=right_first)
                right_next = _load(temp)
            elif reused:
                right_next = ast.Constant(value=right_first.value)  # type: ignore[attr-defined]
            parts.append(self.comparison(op, left, right_first, operands[i + 1]))
            left = right_next
        if len(parts) == 1:
            return parts[0]
        return ast.BoolOp(op=ast.And(), values=parts)

    def comparison(self, op: ast.cmpop, left: ast.expr, right: ast.expr, source: ast.expr) -> ast.expr:
        if isinstance(op, ast.Eq | ast.NotEq):
            return ast.Compare(left=left, ops=[type(op)()], comparators=[right])
        helper = ORDERING.get(type(op))
        if helper is not None:
            return _call(helper, left, right)
        if isinstance(source, ast.List | ast.Tuple):
            # A literal container is never None and `in` on a tuple only uses `==`: no helper.
            if isinstance(right, ast.List):
                right = ast.Tuple(elts=right.elts, ctx=ast.Load())
            return ast.Compare(left=left, ops=[type(op)()], comparators=[right])
        return _call("_in" if isinstance(op, ast.In) else "_not_in", left, right)

    def on_ifexp(self, node: ast.IfExp) -> ast.expr:
        return ast.IfExp(test=self.visit(node.test), body=self.visit(node.body), orelse=self.visit(node.orelse))

    def on_list(self, node: ast.List) -> ast.expr:
        return ast.List(elts=[self.visit(e) for e in node.elts], ctx=ast.Load())

    def on_tuple(self, node: ast.Tuple) -> ast.expr:
        return ast.Tuple(elts=[self.visit(e) for e in node.elts], ctx=ast.Load())

    # --- assembly ----------------------------------------------------------------------

    def build(self, body: ast.expr) -> Callable[[EvalContext], bool]:
        lam = ast.Lambda(
            args=ast.arguments(
                posonlyargs=[],
                args=[ast.arg(arg="_ctx")],
                vararg=None,
                kwonlyargs=[],
                kw_defaults=[],
                kwarg=None,
                defaults=[],
            ),
            body=_call("_bool", body),
        )
        tree = ast.fix_missing_locations(ast.Expression(body=lam))
        try:
            code = compile(tree, DEFAULT_FILE, "eval")
        except Exception as exc:  # pragma: no cover - generated trees are well formed
            self.fail(f"cannot compile expression: {exc}")
        fn: Callable[[EvalContext], bool] = eval(code, self.globals)
        return fn


_DISPATCH: dict[type[ast.AST], Callable[[_Compiler, Any], ast.expr]] = {
    ast.Constant: _Compiler.on_constant,
    ast.Name: _Compiler.on_name,
    ast.Attribute: _Compiler.on_attribute,
    ast.Call: _Compiler.on_call,
    ast.BoolOp: _Compiler.on_boolop,
    ast.UnaryOp: _Compiler.on_unaryop,
    ast.BinOp: _Compiler.on_binop,
    ast.Compare: _Compiler.on_compare,
    ast.IfExp: _Compiler.on_ifexp,
    ast.List: _Compiler.on_list,
    ast.Tuple: _Compiler.on_tuple,
}


def compile_condition(
    source: str,
    vocab: Vocabulary,
    *,
    pos: SourcePos | None = None,
    source_line: str | None = None,
    event_type: str | None = None,
) -> Condition:
    """Check `source` against `vocab` and compile it; raise ConditionError if refused.

    `pos` is where the expression text starts in its rule file and `source_line` that file
    line, so problems point into the file the marketer edits. `event_type` is given for a
    trigger's `when:`, whose `event.*` is an event of that type, so only its attributes go.
    """
    if not isinstance(source, str):
        where = pos or SourcePos(DEFAULT_FILE, 1, 1)
        raise ConditionError(
            RuleProblem(
                where,
                f"a condition must be text, got {type(source).__name__} `{source!r}`",
                source_line,
                "quote the expression in the rule file",
            )
        )
    text = source.lstrip(" \t\f")
    compiler = _Compiler(source, text, len(source) - len(text), vocab, pos, source_line, event_type)
    if len(source) > MAX_SOURCE_CHARS:
        compiler.fail(
            f"expression too long ({len(source)} characters > {MAX_SOURCE_CHARS})",
            at=(1, -compiler.lead),
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        lineno = min(max(exc.lineno or 1, 1), len(compiler.text_lines))
        if exc.offset is None or exc.offset >= 1:
            compiler.fail(f"syntax error: {exc.msg}", at=(lineno, max((exc.offset or 1) - 1, 0)))
        # The parser gives no column when the text ends too early; point just past the end.
        ending = len(compiler.text_lines[lineno - 1])
        compiler.fail(f"syntax error: {exc.msg} (the expression ends too early?)", at=(lineno, ending))
    except (ValueError, RecursionError, MemoryError, OverflowError, UnicodeError) as exc:
        compiler.fail(f"cannot parse expression: {exc}")
    compiler.check_brackets()
    compiler.check_shape(tree.body)
    body = compiler.visit(tree.body)
    if compiler.faults:
        unique = list(dict.fromkeys(compiler.faults))
        raise ConditionError(*unique)
    fn = compiler.build(body)
    return Condition(
        source=source,
        names=frozenset(compiler.names),
        functions=frozenset(compiler.functions),
        lookbacks=frozenset(compiler.lookbacks),
        _fn=fn,
        _explainer=Planner(text, compiler.generated).build(source, tree.body, compiler.globals),
    )
