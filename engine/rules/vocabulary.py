"""What a condition may name: the declared fields of each namespace and the known event types.

Marketers declare customer and context fields in the rule set (`fields:`), so a typo such as
`customer.teir` is refused when the rules load instead of silently evaluating to false for
every customer. Built-in namespaces (`cart`) and event types are declared here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import InvalidInput, quoted

FieldType = Literal["number", "string", "bool", "list", "timestamp", "any"]

BUILTIN_EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "cart_add",
    "cart_remove",
    "checkout",
    "purchase",
    "flight_delayed",
    "complaint",
    "compliment",
    "email_received",
    "call_started",
    "profile_update",
    "social_mention",
    "survey",
    "referral",
    "idea",
    "question_answered",
    "order_status",
)

CART_FIELDS: dict[str, FieldType] = {"value": "number", "items": "number", "skus": "list"}
VALUE_FIELDS: dict[str, FieldType] = {
    "equity": "number",
    "tier": "string",
    "contribution": "number",
    "perception": "number",
    "referral": "number",
    "loyalty": "number",
    "clv": "number",
    "p_alive": "number",
}
"""What the engine knows of the customer's worth (engine.equity.value), as `value.<field>`;
`clv` and `p_alive` are absent until a lifetime-value model is fitted."""


MAX_MAGNITUDE = 2.0**53
"""Largest magnitude a declared number may have: up to it float64 holds every integer, so a value
compares the same in a condition evaluated per customer and in the column kernels; no count,
amount or time in ms comes near it, so beyond it is a client bug (such as 1e308 for "unknown")."""

_KIND_WORDS: dict[str, str] = {
    "number": "a number",
    "timestamp": "a time in ms since the epoch",
    "string": "a string",
    "bool": "true/false",
    "list": "a list",
}


def type_problem(kind: FieldType, value: Any) -> str | None:
    """Why `value` cannot fill a field declared as `kind`, or None when it can.

    None always can: it is how a field says it is unknown, which conditions read as missing.
    A value of the wrong type would not fail a condition loudly; it would make it silently
    false (`"many" >= 4` is false, not an error), so it is refused where it comes in.
    """
    if value is None or kind == "any" or kind not in _KIND_WORDS:
        return None
    if kind in ("number", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"is {_KIND_WORDS[kind]}, got {quoted(value)}"
        if not (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE):
            return f"is {_KIND_WORDS[kind]}, finite and of magnitude at most 2**53, got {quoted(value)}"
        return None
    expected = {"string": str, "bool": bool, "list": list | tuple}[kind]
    return None if isinstance(value, expected) else f"is {_KIND_WORDS[kind]}, got {quoted(value)}"


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Names a condition may use. `namespaces[ns][field]` is the declared type.

    A namespace listed in `open_namespaces` accepts any field name (its content is
    free-form, e.g. the attributes of the triggering event).
    """

    namespaces: Mapping[str, Mapping[str, FieldType]]
    event_types: frozenset[str] = frozenset(BUILTIN_EVENT_TYPES)
    open_namespaces: frozenset[str] = frozenset({"event"})
    flags: frozenset[str] = frozenset()
    """Flags some trigger sets: `flag('x')` naming any other is refused when the rules load."""
    counters: frozenset[str] = frozenset()
    """Counters some trigger increments, likewise for `counter('x')`."""
    questions: Mapping[str, str] = field(default_factory=dict)
    """Question id -> the customer field its answer fills (for `question_answered` events)."""

    @classmethod
    def build(
        cls,
        customer: Mapping[str, FieldType] | None = None,
        context: Mapping[str, FieldType] | None = None,
        extra_event_types: Sequence[str] = (),
        flags: Sequence[str] = (),
        counters: Sequence[str] = (),
        questions: Mapping[str, str] | None = None,
    ) -> Vocabulary:
        return cls(
            namespaces={
                "customer": dict(customer or {}),
                "context": dict(context or {}),
                "cart": dict(CART_FIELDS),
                "value": dict(VALUE_FIELDS),
                "event": {"type": "string"},
            },
            event_types=frozenset(BUILTIN_EVENT_TYPES) | frozenset(extra_event_types),
            flags=frozenset(flags),
            counters=frozenset(counters),
            questions=dict(questions or {}),
        )

    def check_fields(self, namespace: str, values: Mapping[str, Any], where: str = "") -> None:
        """Refuse a value of the wrong type for a declared field of `namespace`, naming the field
        as `<where><name>`. Undeclared names pass: no condition can read them."""
        declared = self.namespaces.get(namespace, {})
        for name, value in values.items():
            kind = declared.get(name)
            problem = type_problem(kind, value) if kind is not None else None
            if problem is not None:
                raise InvalidInput(f"{namespace} field `{name}` {problem}", field=f"{where}{name}")


@dataclass(slots=True)
class EvalContext:
    """Everything a condition can see for one customer at one moment.

    `data` maps namespace -> fields (missing fields are simply absent). `last` maps an event
    type to the newest event of that type as `{"ts": ms, **attributes}`; `recent` is the
    bounded interaction history, newest first, each `{"type", "ts", "channel", "attributes"}`.
    """

    data: Mapping[str, Mapping[str, Any]]
    now_ms: int
    last: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    recent: Sequence[Mapping[str, Any]] = ()
    flags: Mapping[str, int] = field(default_factory=dict)
    """Flag name -> the time (ms) it expires; set by triggers."""
    counters: Mapping[str, Sequence[int]] = field(default_factory=dict)
    """Counter name -> the times (ms) it was incremented, within its window."""
    topics: Mapping[str, int] = field(default_factory=dict)
    """`liked|disliked|ideas:<topic>` -> when the customer last said so."""
