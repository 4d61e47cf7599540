"""The functions a condition may call, and how their literal arguments are checked.

Conditions only ever call functions listed here, always with literal arguments, so every
argument can be checked when the rules load (an event type misspelt as `purchse` is refused
then, instead of silently counting nothing for every customer). Implementations run on the
hot path and must never raise: odd or missing history data yields `None`/`0`/`False`.
"""

from __future__ import annotations

import difflib
import keyword
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.rules.vocabulary import EvalContext, Vocabulary

ArgKind = Literal["event_type", "flag", "counter", "string", "number"]

_KIND_WORDS: dict[str, str] = {
    "event_type": "an event type string literal",
    "flag": "a flag name string literal",
    "counter": "a counter name string literal",
    "string": "a string literal",
    "number": "a number literal",
}


@dataclass(frozen=True, slots=True)
class Param:
    """One literal argument of a condition function."""

    name: str
    kind: ArgKind
    non_negative: bool = False


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A callable a condition may use.

    `params` are required and positional; `keywords` are optional and by name only, so a
    rule reads `count('page_view', hours=24)` rather than an opaque `count('page_view', 24)`.
    `returns_record` marks functions whose result is an event dict that conditions may read
    fields from with attribute syntax (`last('purchase').amount`). Since arguments are
    literals, `bind`, when given, receives them once at load time and returns a
    `ctx -> value` callable with the per-call work (window arithmetic, argument passing)
    already done; it must behave exactly like `impl`.
    """

    name: str
    params: tuple[Param, ...]
    impl: Callable[..., Any]
    keywords: tuple[Param, ...] = ()
    returns_record: bool = False
    summary: str = ""
    bind: Callable[..., Callable[[EvalContext], Any]] | None = None

    def keyword(self, name: str) -> Param | None:
        for param in self.keywords:
            if param.name == name:
                return param
        return None

    def signature(self) -> str:
        parts = [p.name for p in self.params] + [f"{p.name}=..." for p in self.keywords]
        return f"{self.name}({', '.join(parts)})"


_REGISTRY: dict[str, FunctionSpec] = {}

FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType(_REGISTRY)
"""Read-only view of every registered function, by name."""


def register(spec: FunctionSpec, *, replace: bool = False) -> FunctionSpec:
    """Add a function conditions may call.

    Names are restricted to plain identifiers not starting with `_`, because the compiler
    refuses underscore names outright and reserves them for its own helpers.
    """
    name = spec.name
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise ValueError(f"invalid condition function name: {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"condition function {name!r} is already registered")
    seen: set[str] = set()
    for param in (*spec.params, *spec.keywords):
        if param.name in seen:
            raise ValueError(f"duplicate parameter {param.name!r} in {name!r}")
        seen.add(param.name)
    _REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a function; rule sets compiled earlier keep the implementation they bound."""
    _REGISTRY.pop(name, None)


def function_names() -> list[str]:
    """Sorted names, for hints and documentation."""
    return sorted(_REGISTRY)


def check_argument(spec: FunctionSpec, param: Param, value: object, vocab: Vocabulary) -> tuple[str, str | None] | None:
    """Return `(message, hint)` when `value` does not fit `param`, else None."""
    if param.kind in ("event_type", "flag", "counter", "string"):
        if not isinstance(value, str):
            return (
                f"argument `{param.name}` of `{spec.name}` must be {_KIND_WORDS[param.kind]}",
                None,
            )
        if param.kind == "event_type" and value not in vocab.event_types:
            return f"unknown event type `{value}`", _event_type_hint(value, vocab)
        for kind, known in (("flag", vocab.flags), ("counter", vocab.counters)):
            if param.kind == kind and value not in known:
                close = difflib.get_close_matches(value, sorted(known), n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"no trigger sets a {kind} of that name"
                return f"unknown {kind} `{value}`", hint
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"argument `{param.name}` of `{spec.name}` must be {_KIND_WORDS['number']}", None
    if param.non_negative and value < 0:
        return f"argument `{param.name}` of `{spec.name}` must not be negative, got {value}", None
    return None


def _event_type_hint(value: str, vocab: Vocabulary) -> str | None:
    close = difflib.get_close_matches(value, sorted(vocab.event_types), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return "known event types: " + ", ".join(sorted(vocab.event_types))


# --- implementations ---------------------------------------------------------------------


def _newest_ts(ctx: EvalContext, event_type: str) -> int | float | None:
    record = ctx.last.get(event_type)
    if record is None:
        return None
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    return ts


LOOKBACK_FUNCTIONS = frozenset({"count", "exists"})
"""Functions that look back over events of one type; the rule set keeps a counter per type they name."""


LOOKBACK_PREFIX = "@"


def lookback_counter(event_type: str) -> str:
    """The counter kept of every event of a type that `count` or `exists` names. The shared
    interaction history holds the latest interactions of all types together, so a customer's
    page views can push last week's email out of it; this one is per type, over the longest window
    the rules look back at it. `@` cannot begin a trigger's counter name, so the two never meet."""
    return LOOKBACK_PREFIX + event_type


def window_ms(days: float | None, hours: float | None) -> float | None:
    """Both windows may be given; they add up (`days=1, hours=6` is 30 hours)."""
    if days is None and hours is None:
        return None
    return (days or 0) * MS_PER_DAY + (hours or 0) * MS_PER_HOUR


def days_since(ctx: EvalContext, event_type: str) -> float | None:
    ts = _newest_ts(ctx, event_type)
    if ts is None:
        return None
    # An event stamped slightly ahead of the engine clock counts as "just now".
    return max(ctx.now_ms - ts, 0) / MS_PER_DAY


def hours_since(ctx: EvalContext, event_type: str) -> float | None:
    ts = _newest_ts(ctx, event_type)
    if ts is None:
        return None
    return max(ctx.now_ms - ts, 0) / MS_PER_HOUR


def count(ctx: EvalContext, event_type: str, days: float | None = None, hours: float | None = None) -> int:
    return _bind_count(event_type, days, hours)(ctx)


def _bind_count(event_type: str, days: float | None = None, hours: float | None = None) -> Callable[[EvalContext], int]:
    window = window_ms(days, hours)
    if window is None:

        def count_all(ctx: EvalContext) -> int:
            stamps = ctx.lookback.get(event_type)
            if stamps is not None:
                return len(stamps)
            n = 0
            for ev in ctx.recent:
                if ev.get("type") == event_type:
                    n += 1
            return n

        return count_all

    def count_window(ctx: EvalContext) -> int:
        cutoff = ctx.now_ms - window
        stamps = ctx.lookback.get(event_type)
        if stamps is not None:
            return sum(1 for ts in stamps if ts >= cutoff)
        n = 0
        for ev in ctx.recent:
            if ev.get("type") == event_type:
                try:
                    if ev.get("ts") >= cutoff:
                        n += 1
                except TypeError:  # no usable timestamp: outside every window
                    pass
        return n

    return count_window


def exists(ctx: EvalContext, event_type: str, days: float | None = None, hours: float | None = None) -> bool:
    return _bind_exists(event_type, days, hours)(ctx)


def _bind_exists(event_type: str, days: float | None = None, hours: float | None = None) -> Callable[[EvalContext], bool]:
    window = window_ms(days, hours)
    if window is None:

        def exists_any(ctx: EvalContext) -> bool:
            if event_type in ctx.lookback:
                return bool(ctx.lookback[event_type])
            return any(ev.get("type") == event_type for ev in ctx.recent)

        return exists_any

    def exists_window(ctx: EvalContext) -> bool:
        cutoff = ctx.now_ms - window
        stamps = ctx.lookback.get(event_type)
        if stamps is not None:
            return any(ts >= cutoff for ts in stamps)
        for ev in ctx.recent:
            if ev.get("type") == event_type:
                try:
                    if ev.get("ts") >= cutoff:
                        return True
                except TypeError:  # no usable timestamp: outside every window
                    pass
        return False

    return exists_window


def last(ctx: EvalContext, event_type: str) -> Mapping[str, Any] | None:
    return ctx.last.get(event_type)


def flag(ctx: EvalContext, name: str) -> bool:
    """Whether a trigger set this flag and it has not expired."""
    expires = ctx.flags.get(name)
    return expires is not None and expires > ctx.now_ms


def counter(ctx: EvalContext, name: str, days: float | None = None, hours: float | None = None) -> int:
    """How many times a trigger incremented this counter (within the window, if given)."""
    stamps = ctx.counters.get(name) or ()
    window = window_ms(days, hours)
    if window is None:
        return len(stamps)
    cutoff = ctx.now_ms - window
    return sum(1 for ts in stamps if ts >= cutoff)


def complained_about(ctx: EvalContext, topic: str, days: float | None = None, hours: float | None = None) -> bool:
    """Whether the customer complained about this topic (within the window, if given): close-the-loop offers.

    Topics are matched as ingested: trimmed and lower-cased.
    """
    ts = ctx.topics.get("disliked:" + topic.strip().lower())
    if ts is None:
        return False
    window = window_ms(days, hours)
    return window is None or ts >= ctx.now_ms - window


_EVENT = Param("event_type", "event_type")
_WINDOW = (Param("days", "number", non_negative=True), Param("hours", "number", non_negative=True))

register(
    FunctionSpec(
        "days_since",
        (_EVENT,),
        days_since,
        summary="days since the newest event of that type, or None if never seen",
    )
)
register(
    FunctionSpec(
        "hours_since",
        (_EVENT,),
        hours_since,
        summary="hours since the newest event of that type, or None if never seen",
    )
)
register(
    FunctionSpec(
        "count",
        (_EVENT,),
        count,
        keywords=_WINDOW,
        bind=_bind_count,
        summary="number of recent events of that type, optionally within a window",
    )
)
register(
    FunctionSpec(
        "exists",
        (_EVENT,),
        exists,
        keywords=_WINDOW,
        bind=_bind_exists,
        summary="whether a recent event of that type exists, optionally within a window",
    )
)
register(
    FunctionSpec(
        "last",
        (_EVENT,),
        last,
        returns_record=True,
        summary="the newest event of that type ({'ts': ms, **attributes}) or None",
    )
)
register(FunctionSpec("flag", (Param("name", "flag"),), flag, summary="whether a trigger set this flag and it is still set"))
register(
    FunctionSpec(
        "counter",
        (Param("name", "counter"),),
        counter,
        keywords=_WINDOW,
        summary="how many times triggers incremented this counter, optionally within a window",
    )
)
register(
    FunctionSpec(
        "complained_about",
        (Param("topic", "string"),),
        complained_about,
        keywords=_WINDOW,
        summary="whether a recent complaint named this topic (to close the loop with the customer)",
    )
)
