"""Conditions over many customers at once: the condition language evaluated on columns with NumPy.

`engine.rules.conditions` compiles a condition into a closure called once per customer. A
simulation asks the same question of a million customers, so this module compiles the same
source a second time, into whole-column operations: `customer.age` is a float array with NaN
where the value is missing, `customer.tier` an object array with None, and each comparison or
arithmetic operation is one NumPy call over every customer.

It accepts exactly what the scalar compiler accepts, because it asks that compiler first (the
whitelist and its messages live in one place), and it answers exactly what the scalar evaluator
answers, customer by customer:

* plain numbers are float64, which agrees with Python's int and float arithmetic while operands
  and results stay below 2**53 in magnitude; a row where one does not (or a result overflows)
  is answered by the scalar evaluator instead;
* anything else (strings, booleans, lists, mixed columns) is an object array, evaluated element
  by element with the very helpers the generated scalar code calls (engine.rules.semantics);
* missing values follow the same rules: ordering against one is false, arithmetic with one is
  None, and `== None` tests absence.

History functions read columns: `days_since`/`hours_since` a `last_ts.<type>` column, `flag` a
`flag.<name>` column of expiry times, `counter` a 2-D `counter.<name>` column of increment times,
`count`/`exists` a 2-D `recent_ts.<type>` column, `complained_about` a `topic_ts.<key>` column.
A condition calling anything else (`last(...)`, a function registered later, a built-in one
replaced) is answered by the scalar evaluator for every row, and says why (`fallback`).

Columns (`Frame.columns`) hold one entry per customer; a column that is absent means "absent for
every customer":

| key | array |
|---|---|
| `<namespace>.<field>` | float64, NaN = missing (finite numbers only), or object, None = missing |
| `last_ts.<event type>` | float64: newest event's time (ms), NaN when none or no usable time |
| `recent_ts.<event type>` | float64 [n, k]: recent events' times, NaN padding, −inf for an unusable time |
| `flag.<name>` | float64: expiry (ms), NaN when not set |
| `counter.<name>` | float64 [n, k]: increment times, NaN padding |
| `topic_ts.<key>` | float64: when the customer last said so (`disliked:<topic>`), NaN when never |

`columns_from_contexts` builds them from per-customer `EvalContext`s, and says which rows the
columns cannot represent exactly (`inexact`); those rows always get the scalar evaluator.
"""

from __future__ import annotations

import ast
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.errors import SourcePos
from engine.rules.conditions import ARITHMETIC, ORDERING, Condition, compile_condition, literal_number
from engine.rules.functions import FUNCTIONS, FunctionSpec, window_ms
from engine.rules.semantics import HELPERS
from engine.rules.vocabulary import EvalContext, Vocabulary

EXACT = 2.0**53
"""Integers below this magnitude are exact in float64, so float arithmetic on them is Python's."""

Columns = Mapping[str, np.ndarray]


def last_ts_column(event_type: str) -> str:
    return "last_ts." + event_type


def recent_ts_column(event_type: str) -> str:
    return "recent_ts." + event_type


def flag_column(name: str) -> str:
    return "flag." + name


def counter_column(name: str) -> str:
    return "counter." + name


def topic_column(key: str) -> str:
    return "topic_ts." + key


def complaint_topic(topic: str) -> str:
    """The topics key `complained_about(topic)` reads (engine.rules.functions)."""
    return "disliked:" + topic.strip().lower()


# --- building columns --------------------------------------------------------------------------


def _plain_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return math.isfinite(v) if isinstance(v, float) else abs(v) < EXACT


def column(values: Sequence[Any]) -> np.ndarray:
    """A float column when every value is None or a plain number float64 holds exactly; otherwise
    the values themselves in an object column."""
    if all(v is None or _plain_number(v) for v in values):
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.fromiter(values, dtype=object, count=len(values))


class _Inexact(Exception):
    """This customer's history holds something the float columns cannot stand for."""


def _stamp(v: Any) -> float:
    """A time as float64, exactly (bool counts as a number where the scalar code compares it)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int):
        if abs(v) >= EXACT:
            raise _Inexact
        return float(v)
    if isinstance(v, float):
        return v
    raise _Inexact


def _recent_stamp(v: Any) -> float:
    """An event without a usable time still counts, but never falls inside a window: −inf."""
    try:
        ts = _stamp(v)
    except _Inexact:
        if isinstance(v, int) and not isinstance(v, bool):
            raise
        return -math.inf
    return -math.inf if math.isnan(ts) else ts


class _Collector:
    def __init__(self) -> None:
        self.fields: dict[str, dict[int, Any]] = defaultdict(dict)
        self.stamps: dict[str, dict[int, float]] = defaultdict(dict)
        self.series: dict[str, dict[int, list[float]]] = defaultdict(dict)

    def add(self, i: int, ctx: EvalContext) -> None:
        for ns, values in ctx.data.items():
            if not isinstance(values, Mapping):
                raise _Inexact
            for name, v in values.items():
                self.fields[f"{ns}.{name}"][i] = v
        for event_type, record in ctx.last.items():
            if record is None:
                continue
            if not isinstance(record, Mapping):
                raise _Inexact
            ts = record.get("ts")
            if isinstance(ts, int | float) and not isinstance(ts, bool):
                stamp = _stamp(ts)
                if math.isnan(stamp):
                    raise _Inexact  # days_since would read NaN, not None
                self.stamps[last_ts_column(event_type)][i] = stamp
        for ev in ctx.recent:
            if not isinstance(ev, Mapping):
                raise _Inexact
            event_type = ev.get("type")
            if isinstance(event_type, str):
                self.series[recent_ts_column(event_type)].setdefault(i, []).append(_recent_stamp(ev.get("ts")))
        for event_type, stamps in ctx.lookback.items():  # `recent` holds none of these types then
            self.series[recent_ts_column(event_type)][i] = [_recent_stamp(ts) for ts in stamps]
        for name, expires in ctx.flags.items():
            if expires is not None:
                stamp = _stamp(expires)
                if not math.isnan(stamp):  # NaN never compares greater: as good as unset
                    self.stamps[flag_column(name)][i] = stamp
        for name, stamps in ctx.counters.items():
            if not stamps:
                continue
            if not isinstance(stamps, list | tuple):
                raise _Inexact
            self.series[counter_column(name)][i] = [_recent_stamp(_number(ts)) for ts in stamps]
        for key, ts in ctx.topics.items():
            if ts is not None:
                stamp = _stamp(ts)
                if math.isnan(stamp):
                    raise _Inexact
                self.stamps[topic_column(key)][i] = stamp


def _number(v: Any) -> Any:
    """Counter times are compared with `>=`: anything else would raise in the scalar code."""
    if not isinstance(v, int | float):
        raise _Inexact
    return v


def columns_from_contexts(contexts: Sequence[EvalContext]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The columns of these customers' contexts, and the rows (`inexact`) whose values the
    columns cannot represent exactly (a history time that is not a number, say)."""
    n = len(contexts)
    inexact = np.zeros(n, dtype=bool)
    seen = _Collector()
    for i, ctx in enumerate(contexts):
        try:
            seen.add(i, ctx)
        except _Inexact:
            inexact[i] = True
    out: dict[str, np.ndarray] = {}
    for key, by_row in seen.fields.items():
        out[key] = column([by_row.get(i) for i in range(n)])
    for key, by_row in seen.stamps.items():
        flat = np.full(n, math.nan)
        for i, v in by_row.items():
            flat[i] = v
        out[key] = flat
    for key, rows in seen.series.items():
        grid = np.full((n, max(len(s) for s in rows.values())), math.nan)
        for i, stamps in rows.items():
            grid[i, : len(stamps)] = stamps
        out[key] = grid
    return out, inexact


@dataclass(frozen=True, slots=True)
class Frame:
    """Customers as columns, at one moment; `context_of(row)` is one customer's context, for the
    rows (and conditions) the columns cannot answer."""

    size: int
    columns: Columns
    now_ms: int
    context_of: Callable[[int], EvalContext]
    inexact: np.ndarray | None = None

    @classmethod
    def from_contexts(cls, contexts: Sequence[EvalContext], now_ms: int) -> Frame:
        columns, inexact = columns_from_contexts(contexts)
        return cls(len(contexts), columns, now_ms, contexts.__getitem__, inexact)


# --- values during evaluation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Const:
    value: Any


@dataclass(frozen=True, slots=True)
class _Num:
    a: np.ndarray
    """float64; NaN is None."""


@dataclass(frozen=True, slots=True)
class _Flag:
    a: np.ndarray
    """bool: Python's True and False, which every allowed operation treats as 1 and 0."""


@dataclass(frozen=True, slots=True)
class _Obj:
    a: np.ndarray
    """object: the values the scalar code would see."""
    loose: bool = False
    """Some numbers came from a float column, so whether each was an int is no longer known."""


_V = _Const | _Num | _Flag | _Obj


class _Run:
    """One evaluation: the frame, and the rows to hand to the scalar evaluator."""

    __slots__ = ("doubt", "frame", "n", "reach")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.n = frame.size
        self.doubt = np.zeros(frame.size, dtype=bool)
        self.reach: np.ndarray | None = None

    def suspect(self, rows: np.ndarray) -> None:
        self.doubt |= rows if self.reach is None else rows & self.reach

    @contextmanager
    def only(self, rows: np.ndarray) -> Iterator[None]:
        """Doubts raised inside count only where the scalar code would evaluate this branch."""
        saved = self.reach
        self.reach = rows if saved is None else saved & rows
        try:
            yield
        finally:
            self.reach = saved

    def field(self, key: str) -> _V:
        col = self.frame.columns.get(key)
        if col is None:
            return _Const(None)
        if col.shape != (self.n,):
            raise ValueError(f"column `{key}` has shape {col.shape}, expected ({self.n},)")
        kind = col.dtype.kind
        if kind == "f":
            return _Num(col.astype(np.float64, copy=False))
        if kind == "b":
            return _Flag(col)
        if kind in "iu" and (col.size == 0 or np.abs(col).max() < EXACT):
            return _Num(col.astype(np.float64))
        return _Obj(col.astype(object, copy=False))

    def history(self, key: str, ndim: int) -> np.ndarray | None:
        col = self.frame.columns.get(key)
        if col is None:
            return None
        if col.ndim != ndim or col.shape[0] != self.n or col.dtype.kind != "f":
            raise ValueError(f"column `{key}` must be float with {ndim} dimension(s) and {self.n} rows")
        return col


def _ufunc(fn: Callable[..., Any], nin: int) -> Any:
    return np.frompyfunc(fn, nin, 1)


def _boxed(value: Any) -> np.ndarray:
    """A 0-d object array: broadcasts as one value even when it is a list."""
    box = np.empty((), dtype=object)
    box[()] = value
    return box


def _const_number(value: Any) -> float | None:
    """The float standing exactly for a constant in a float column (NaN for None), or None."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        return float(value) if abs(value) < EXACT else None
    if isinstance(value, float) and not math.isnan(value):
        return value
    return None


def _num(v: _V) -> np.ndarray | float | None:
    if isinstance(v, _Num):
        return v.a
    if isinstance(v, _Flag):
        return v.a.astype(np.float64)
    if isinstance(v, _Const):
        return _const_number(v.value)
    return None


def _obj(v: _V) -> np.ndarray:
    if isinstance(v, _Obj):
        return v.a
    if isinstance(v, _Const):
        return _boxed(v.value)
    if isinstance(v, _Flag):
        return v.a.astype(object)
    out = v.a.astype(object)
    out[np.isnan(v.a)] = None
    return out


def _loose(*values: _V) -> bool:
    return any(isinstance(v, _Num) or (isinstance(v, _Obj) and v.loose) for v in values)


def _truth(v: _V, n: int) -> np.ndarray:
    if isinstance(v, _Const):
        return np.full(n, bool(v.value))
    if isinstance(v, _Flag):
        return v.a.copy()
    if isinstance(v, _Num):
        return ~np.isnan(v.a) & (v.a != 0)
    return _ufunc(bool, 1)(v.a).astype(bool)


def _select(rows: np.ndarray, yes: _V, no: _V) -> _V:
    """`yes` where `rows`, else `no`, keeping the narrowest kind that holds both exactly."""
    if all(isinstance(v, _Flag) or (isinstance(v, _Const) and isinstance(v.value, bool)) for v in (yes, no)):
        return _Flag(np.where(rows, _num(yes), _num(no)).astype(bool))
    x, y = _num(yes), _num(no)
    if x is not None and y is not None:
        return _Num(np.where(rows, x, y))
    return _Obj(np.where(rows, _obj(yes), _obj(no)), loose=_loose(yes, no))


# --- operations --------------------------------------------------------------------------------


def _big(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not abs(v) < EXACT


_BIG = _ufunc(_big, 1)

_NUMERIC: dict[str, Callable[[Any, Any], Any]] = {
    "_add": np.add,
    "_sub": np.subtract,
    "_mul": np.multiply,
    "_div": np.true_divide,
    "_floordiv": np.floor_divide,
    "_mod": np.remainder,
    "_pow": np.power,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "_lt": np.less,
    "_le": np.less_equal,
    "_gt": np.greater,
    "_ge": np.greater_equal,
}


def _arith(run: _Run, helper: str, a: _V, b: _V) -> _V:
    if isinstance(a, _Const) and isinstance(b, _Const):
        return _Const(HELPERS[helper](a.value, b.value))
    x, y = _num(a), _num(b)
    if x is None or y is None:
        oa, ob = _obj(a), _obj(b)
        out = _ufunc(HELPERS[helper], 2)(oa, ob)
        if _loose(a, b):
            run.suspect(np.broadcast_to(_BIG(oa) | _BIG(ob) | _BIG(out), (run.n,)).astype(bool))
        return _Obj(out, loose=_loose(a, b))
    with np.errstate(all="ignore"):
        out = _NUMERIC[helper](x, y)
        none = np.isnan(x) | np.isnan(y)
        if helper in ("_div", "_floordiv", "_mod"):
            none = none | (y == 0)  # ZeroDivisionError
        elif helper == "_pow":
            none = none | ((x == 0) & (y < 0)) | ((x < 0) & (y != np.floor(y)))  # division by zero, complex
        exact = (np.abs(x) < EXACT) & (np.abs(y) < EXACT) & (np.abs(out) < EXACT)
    run.suspect(np.broadcast_to(~none & ~exact, (run.n,)))
    return _Num(np.where(none, math.nan, out))


def _unary(helper: str, a: _V) -> _V:
    if isinstance(a, _Const):
        return _Const(HELPERS[helper](a.value))
    x = _num(a)
    if x is not None:
        return _Num(-x if helper == "_neg" else +x)
    assert isinstance(a, _Obj)
    return _Obj(_ufunc(HELPERS[helper], 1)(a.a), loose=a.loose)


def _order(run: _Run, helper: str, a: _V, b: _V) -> _V:
    if isinstance(a, _Const) and isinstance(b, _Const):
        return _Const(HELPERS[helper](a.value, b.value))
    x, y = _num(a), _num(b)
    if x is not None and y is not None:
        return _Flag(np.broadcast_to(_COMPARE[helper](x, y), (run.n,)).copy())  # NaN compares false
    return _Flag(np.asarray(_ufunc(HELPERS[helper], 2)(_obj(a), _obj(b)), dtype=bool))


def _same(v: Any, w: Any) -> bool:
    """How `in` compares with the members of a literal container."""
    return v is w or bool(v == w)


def _equal(run: _Run, a: _V, b: _V, *, member: bool = False) -> np.ndarray:
    if isinstance(a, _Const) and isinstance(b, _Const):
        same = _same(a.value, b.value) if member else bool(a.value == b.value)
        return np.full(run.n, same)
    x, y = _num(a), _num(b)
    if x is not None and y is not None:
        return np.broadcast_to((x == y) | (np.isnan(x) & np.isnan(y)), (run.n,)).copy()  # None == None
    for o, c in ((a, b), (b, a)):
        if not isinstance(c, _Const):
            continue
        if isinstance(o, _Obj) and (c.value is None or type(c.value) is str):
            return np.asarray(np.equal(o.a, c.value), dtype=bool)
        if isinstance(o, _Num | _Flag) and isinstance(c.value, str | list | tuple):
            return np.zeros(run.n, dtype=bool)  # a number or None is never a string or a container
    fn = _same if member else operator.eq
    return np.asarray(_ufunc(fn, 2)(_obj(a), _obj(b)), dtype=bool)


def _in_literal(run: _Run, left: _V, members: list[_V], negate: bool) -> _V:
    if isinstance(left, _Const) and all(isinstance(m, _Const) for m in members):
        found = left.value in tuple(m.value for m in members)  # type: ignore[union-attr]
        return _Const(found != negate)
    if isinstance(left, _Obj) and members and all(isinstance(m, _Const) for m in members):
        consts = tuple(m.value for m in members)  # type: ignore[union-attr]
        if not all(c is None or type(c) is str for c in consts):
            found = np.asarray(_ufunc(lambda v: v in consts, 1)(left.a), dtype=bool)
            return _Flag(~found if negate else found)
    found = np.zeros(run.n, dtype=bool)
    for m in members:
        found |= _equal(run, left, m, member=True)
    return _Flag(~found if negate else found)


def _in_value(run: _Run, helper: str, a: _V, b: _V) -> _V:
    if isinstance(a, _Const) and isinstance(b, _Const):
        return _Const(HELPERS[helper](a.value, b.value))
    if _num(b) is not None:  # a number or None on the right: a TypeError, or None; false either way
        return _Const(False)
    return _Flag(np.asarray(_ufunc(HELPERS[helper], 2)(_obj(a), _obj(b)), dtype=bool))


def _attribute(v: _V, attr: str) -> _V:
    getter = HELPERS["_get"]
    if isinstance(v, _Const):
        return _Const(getter(v.value, attr))
    if not isinstance(v, _Obj):
        return _Const(None)  # numbers, booleans and None have no fields
    return _Obj(_ufunc(lambda o: getter(o, attr), 1)(v.a), loose=v.loose)


def _container(run: _Run, items: list[_V], make: type) -> _V:
    if all(isinstance(v, _Const) for v in items):
        return _Const(make(v.value for v in items))  # type: ignore[union-attr]
    cols = [np.broadcast_to(_obj(v), (run.n,)) for v in items]
    return _Obj(np.fromiter((make(row) for row in zip(*cols, strict=True)), dtype=object, count=run.n), loose=_loose(*items))


# --- history functions -------------------------------------------------------------------------

_Node = Callable[[_Run], _V]
_Step = Callable[[_Run, _V, Callable[[], _V]], _V]


def _cutoff(run: _Run, window: float | None) -> float | None:
    return None if window is None else run.frame.now_ms - window


def _at_or_after(run: _Run, stamps: np.ndarray, cutoff: float) -> np.ndarray:
    """`stamps >= cutoff` as Python compares them; beyond 2**53 both sides may have been rounded."""
    if abs(cutoff) >= EXACT:
        far = np.isfinite(stamps) & (np.abs(stamps) >= EXACT)
        run.suspect(far.any(axis=1) if far.ndim == 2 else far)
    return stamps >= cutoff


def _since(event_type: str, unit: int) -> _Node:
    key = last_ts_column(event_type)

    def since(run: _Run) -> _V:
        ts = run.history(key, 1)
        if ts is None:
            return _Const(None)
        with np.errstate(invalid="ignore"):
            gap = run.frame.now_ms - ts
            run.suspect(~np.isnan(ts) & ~(np.abs(gap) < EXACT))
            return _Num(np.maximum(gap, 0.0) / unit)

    return since


def _tally(key: str, window: float | None, *, any_: bool) -> _Node:
    def tally(run: _Run) -> _V:
        stamps = run.history(key, 2)
        if stamps is None:
            return _Const(False if any_ else 0)
        cutoff = _cutoff(run, window)
        hits = ~np.isnan(stamps) if cutoff is None else _at_or_after(run, stamps, cutoff)
        return _Flag(hits.any(axis=1)) if any_ else _Num(hits.sum(axis=1).astype(np.float64))

    return tally


def _flag(name: str) -> _Node:
    key = flag_column(name)

    def flag(run: _Run) -> _V:
        expires = run.history(key, 1)
        return _Const(False) if expires is None else _Flag(expires > run.frame.now_ms)

    return flag


def _complained(topic: str, days: float | None = None, hours: float | None = None) -> _Node:
    key = topic_column(complaint_topic(topic))
    window = window_ms(days, hours)

    def complained(run: _Run) -> _V:
        ts = run.history(key, 1)
        if ts is None:
            return _Const(False)
        cutoff = _cutoff(run, window)
        return _Flag(~np.isnan(ts) if cutoff is None else _at_or_after(run, ts, cutoff))

    return complained


_BUILDERS: dict[str, Callable[..., _Node]] = {
    "days_since": lambda t: _since(t, MS_PER_DAY),
    "hours_since": lambda t: _since(t, MS_PER_HOUR),
    "count": lambda t, days=None, hours=None: _tally(recent_ts_column(t), window_ms(days, hours), any_=False),
    "exists": lambda t, days=None, hours=None: _tally(recent_ts_column(t), window_ms(days, hours), any_=True),
    "flag": _flag,
    "counter": lambda name, days=None, hours=None: _tally(counter_column(name), window_ms(days, hours), any_=False),
    "complained_about": _complained,
}
_NATIVE: dict[str, FunctionSpec] = {name: FUNCTIONS[name] for name in _BUILDERS}
"""The specs these columns stand for: a function replaced since is no longer vectorised."""

VECTORISED_FUNCTIONS: tuple[str, ...] = tuple(sorted(_BUILDERS))


# --- planning ----------------------------------------------------------------------------------


class _Unsupported(Exception):
    pass


def _literal(node: ast.expr) -> Any:
    number = literal_number(node)
    if number is not None:
        return number
    assert isinstance(node, ast.Constant)
    return node.value


class _Planner:
    """Turns a checked expression into column operations (the scalar compiler checked it first)."""

    def build(self, node: ast.expr) -> _Node:
        method = getattr(self, "on_" + type(node).__name__.lower(), None)
        if method is None:
            raise _Unsupported(f"`{type(node).__name__}` has no vectorised form")
        result: _Node = method(node)
        return result

    def on_constant(self, node: ast.Constant) -> _Node:
        value = _Const(node.value)
        return lambda run: value

    def on_attribute(self, node: ast.Attribute) -> _Node:
        attrs: list[str] = []
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            attrs.append(root.attr)
            root = root.value
        attrs.reverse()
        if isinstance(root, ast.Name):
            key, rest = f"{root.id}.{attrs[0]}", attrs[1:]
            base: _Node = lambda run: run.field(key)  # noqa: E731
        else:
            base, rest = self.build(root), attrs

        def read(run: _Run) -> _V:
            value = base(run)
            for attr in rest:
                value = _attribute(value, attr)
            return value

        return read

    def on_call(self, node: ast.Call) -> _Node:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name not in _BUILDERS:
            raise _Unsupported(f"`{name}(...)` has no vectorised form")
        if FUNCTIONS.get(name) is not _NATIVE[name]:
            raise _Unsupported(f"`{name}(...)` was registered again, so its columns may not match it")
        args = [_literal(a) for a in node.args]
        kwargs = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
        return _BUILDERS[name](*args, **kwargs)

    def on_boolop(self, node: ast.BoolOp) -> _Node:
        parts = [self.build(v) for v in node.values]
        conjunction = isinstance(node.op, ast.And)

        def boolop(run: _Run) -> _V:
            value = parts[0](run)
            for part in parts[1:]:
                truth = _truth(value, run.n)
                goes_on = truth if conjunction else ~truth
                with run.only(goes_on):
                    value = _select(goes_on, part(run), value)
            return value

        return boolop

    def on_unaryop(self, node: ast.UnaryOp) -> _Node:
        operand = self.build(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda run: _Flag(~_truth(operand(run), run.n))
        helper = "_neg" if isinstance(node.op, ast.USub) else "_pos"
        return lambda run: _unary(helper, operand(run))

    def on_binop(self, node: ast.BinOp) -> _Node:
        helper = ARITHMETIC[type(node.op)]
        left = self.build(node.left)
        if isinstance(node.op, ast.Pow):
            exponent = _Const(literal_number(node.right))
            return lambda run: _arith(run, helper, left(run), exponent)
        right = self.build(node.right)
        return lambda run: _arith(run, helper, left(run), right(run))

    def on_compare(self, node: ast.Compare) -> _Node:
        operands = [self.build(x) for x in (node.left, *node.comparators)]
        steps = [self.comparison(op, right) for op, right in zip(node.ops, node.comparators, strict=True)]

        def compare(run: _Run) -> _V:
            values: dict[int, _V] = {}

            def operand(i: int) -> _V:
                if i not in values:
                    values[i] = operands[i](run)
                return values[i]

            result = steps[0](run, operand(0), lambda: operand(1))
            for i in range(1, len(steps)):  # `a < b < c`: b once, c only where `a < b`
                holds = _truth(result, run.n)
                with run.only(holds):
                    result = _select(holds, steps[i](run, operand(i), lambda i=i: operand(i + 1)), result)
            return result

        return compare

    def comparison(self, op: ast.cmpop, source: ast.expr) -> _Step:
        """One link of a comparison; the right operand is read only when needed (`x in [...]`
        reads the members instead)."""
        if isinstance(op, ast.Eq):
            return lambda run, a, b: _Flag(_equal(run, a, b()))
        if isinstance(op, ast.NotEq):
            return lambda run, a, b: _Flag(~_equal(run, a, b()))
        helper = ORDERING.get(type(op))
        if helper is not None:
            return lambda run, a, b: _order(run, helper, a, b())
        negate = isinstance(op, ast.NotIn)
        if isinstance(source, ast.List | ast.Tuple):
            members = [self.build(e) for e in source.elts]
            return lambda run, a, b: _in_literal(run, a, [m(run) for m in members], negate)
        name = "_not_in" if negate else "_in"
        return lambda run, a, b: _in_value(run, name, a, b())

    def on_ifexp(self, node: ast.IfExp) -> _Node:
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)

        def ifexp(run: _Run) -> _V:
            truth = _truth(test(run), run.n)
            with run.only(truth):
                yes = body(run)
            with run.only(~truth):
                no = orelse(run)
            return _select(truth, yes, no)

        return ifexp

    def on_list(self, node: ast.List) -> _Node:
        items = [self.build(e) for e in node.elts]
        return lambda run: _container(run, [i(run) for i in items], list)

    def on_tuple(self, node: ast.Tuple) -> _Node:
        items = [self.build(e) for e in node.elts]
        return lambda run: _container(run, [i(run) for i in items], tuple)


# --- the compiled twin -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    matches: np.ndarray
    """bool per row: whether the condition holds for that customer."""
    scalar_rows: int
    """How many rows the scalar evaluator answered (all of them for a fallback condition)."""


@dataclass(frozen=True, slots=True)
class VectorCondition:
    """A condition compiled twice: for columns, and (`condition`) for one customer."""

    condition: Condition
    fallback: str | None
    """Why every row goes to the scalar evaluator, or None when the condition is vectorised."""
    _plan: _Node | None

    @property
    def source(self) -> str:
        return self.condition.source

    @property
    def vectorised(self) -> bool:
        return self._plan is not None

    def evaluate(self, frame: Frame) -> Evaluation:
        return evaluate_all([self], frame)[0]

    def __call__(self, frame: Frame) -> np.ndarray:
        return self.evaluate(frame).matches


def compile_vectorised(
    source: str, vocab: Vocabulary, *, pos: SourcePos | None = None, source_line: str | None = None
) -> VectorCondition:
    """Check `source` with the scalar compiler (a refusal raises ConditionError, with its
    position) and compile it for columns too.

    >>> vocab = Vocabulary.build(customer={"age": "number"})
    >>> adult = compile_vectorised("customer.age >= 18", vocab)
    >>> contexts = [EvalContext(data={"customer": {"age": a}}, now_ms=0) for a in (17, 40, None)]
    >>> adult(Frame.from_contexts(contexts, now_ms=0)).tolist()
    [False, True, False]
    """
    condition = compile_condition(source, vocab, pos=pos, source_line=source_line)
    tree = ast.parse(condition.source.lstrip(" \t\f"), mode="eval")
    try:
        return VectorCondition(condition, None, _Planner().build(tree.body))
    except _Unsupported as exc:
        return VectorCondition(condition, str(exc), None)


def vectorise(condition: Condition, vocab: Vocabulary) -> VectorCondition:
    """The vectorised twin of a compiled condition, checked again against `vocab`."""
    return compile_vectorised(condition.source, vocab)


def evaluate_all(conditions: Sequence[VectorCondition], frame: Frame) -> list[Evaluation]:
    """Evaluate several conditions over one frame; a row that needs the scalar evaluator for
    some of them has its context built once."""
    n = frame.size
    inexact = frame.inexact if frame.inexact is not None else np.zeros(n, dtype=bool)
    matches: list[np.ndarray] = []
    needs: list[np.ndarray] = []
    for c in conditions:
        if c._plan is None:
            matches.append(np.zeros(n, dtype=bool))
            needs.append(np.ones(n, dtype=bool))
            continue
        run = _Run(frame)
        with np.errstate(all="ignore"):
            matches.append(_truth(c._plan(run), n))
        needs.append(run.doubt | inexact)
    if needs:
        need = np.stack(needs)
        for row in np.flatnonzero(need.any(axis=0)):
            ctx = frame.context_of(int(row))
            for j in np.flatnonzero(need[:, row]):
                matches[j][row] = conditions[j].condition(ctx)
    return [Evaluation(m, int(w.sum())) for m, w in zip(matches, needs, strict=True)]
