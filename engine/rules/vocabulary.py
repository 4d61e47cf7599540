"""What a condition may name: the declared fields of each namespace and the known event types.

Marketers declare customer and context fields in the rule set (`fields:`), so a typo such as
`customer.teir` is refused when the rules load instead of silently evaluating to false for
every customer. Built-in namespaces (`cart`), event types and the attributes of each built-in
event type are declared here; a rule set declares more under `event_types:`, so
`event.delay_minuts` or `last('purchase').amout` are refused the same way.
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

BUILTIN_EVENT_ATTRIBUTES: dict[str, dict[str, FieldType]] = {
    "page_view": {"page": "string"},
    "cart_add": {"sku": "string", "qty": "number", "price": "number", "name": "string"},
    "cart_remove": {"sku": "string"},
    "checkout": {},
    "purchase": {"amount": "number", "order_id": "string", "margin": "number", "clears_cart": "bool"},
    "flight_delayed": {"delay_minutes": "number", "flight": "string"},
    "complaint": {"topic": "string"},
    "compliment": {"topic": "string"},
    "email_received": {"subject": "string"},
    "call_started": {"reason": "string"},
    "profile_update": {},  # every declared customer field, added by `Vocabulary.build`
    "social_mention": {"sentiment": "number"},
    "survey": {"nps": "number", "csat": "number"},
    "referral": {},
    "idea": {"topic": "string"},
    "question_answered": {"question": "string", "answer": "any"},
    "order_status": {"order_id": "string", "status": "string"},
}
"""The attributes the engine itself reads or that integrations are documented to send
(engine.decision.events, engine.equity.facts); a rule set may declare more per type."""

assert set(BUILTIN_EVENT_ATTRIBUTES) == set(BUILTIN_EVENT_TYPES)

TRIGGER_EVENT_FIELDS: dict[str, FieldType] = {"type": "string"}
"""What a trigger's `when:` reads besides the attributes: the trigger sees `{type, **attributes}`
(engine.rules.triggers), so `event.ts` there would always be missing."""
REQUEST_EVENT_FIELDS: dict[str, FieldType] = {"type": "string", "ts": "timestamp", "channel": "string"}
"""What the event sent with a decision request may carry besides the attributes of its type."""
LAST_EVENT_FIELDS: dict[str, FieldType] = {"ts": "timestamp"}
"""What `last('<type>')` holds besides the attributes: it is stored as `{ts, **attributes}`."""

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


def request_event_fields(attributes: Mapping[str, Mapping[str, FieldType]]) -> dict[str, FieldType]:
    """`event.<name>` outside triggers: the decision request's event, whose type is only known
    when the request comes, so any attribute some event type declares, typed `any` when event
    types disagree on its type."""
    fields: dict[str, FieldType] = {}
    for declared in attributes.values():
        for name, kind in declared.items():
            fields[name] = kind if fields.get(name, kind) == kind else "any"
    return {**fields, **REQUEST_EVENT_FIELDS}


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Names a condition may use. `namespaces[ns][field]` is the declared type.

    A namespace listed in `open_namespaces` accepts any field name. `event` is open, and
    `last(...)` records unchecked, unless `event_attributes` says what each event type carries:
    a vocabulary built for a rule set always does (`build`); one made by hand, to compile a
    condition on its own, need not.
    """

    namespaces: Mapping[str, Mapping[str, FieldType]]
    event_types: frozenset[str] = frozenset(BUILTIN_EVENT_TYPES)
    open_namespaces: frozenset[str] = frozenset({"event"})
    event_attributes: Mapping[str, Mapping[str, FieldType]] | None = None
    """Event type -> its declared attributes and their types; None leaves them unchecked."""
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
        event_attributes: Mapping[str, Mapping[str, FieldType]] | None = None,
    ) -> Vocabulary:
        """With `event_attributes` (extra attributes per event type, on top of the built-in ones;
        may be empty), event attributes are checked: `event` is closed to the names some event
        type declares. Without it, they are not (conditions compiled outside a rule set)."""
        event_types = frozenset(BUILTIN_EVENT_TYPES) | frozenset(extra_event_types) | frozenset(event_attributes or {})
        attributes: dict[str, dict[str, FieldType]] | None = None
        event_fields: dict[str, FieldType] = {"type": "string"}
        open_namespaces = frozenset({"event"})
        if event_attributes is not None:
            attributes = {name: dict(BUILTIN_EVENT_ATTRIBUTES.get(name, {})) for name in sorted(event_types)}
            attributes["profile_update"].update(customer or {})
            for name, declared in event_attributes.items():
                attributes[name].update(declared)
            event_fields = request_event_fields(attributes)
            open_namespaces = frozenset()
        return cls(
            namespaces={
                "customer": dict(customer or {}),
                "context": dict(context or {}),
                "cart": dict(CART_FIELDS),
                "value": dict(VALUE_FIELDS),
                "event": event_fields,
            },
            event_types=event_types,
            open_namespaces=open_namespaces,
            event_attributes=attributes,
            flags=frozenset(flags),
            counters=frozenset(counters),
            questions=dict(questions or {}),
        )

    def trigger_event_fields(self, event_type: str) -> Mapping[str, FieldType] | None:
        """What `event.<name>` may be in a trigger on `event_type`, or None when unchecked."""
        if self.event_attributes is None:
            return None
        return {**self.event_attributes.get(event_type, {}), **TRIGGER_EVENT_FIELDS}

    def last_event_fields(self, event_type: str) -> Mapping[str, FieldType] | None:
        """What `last(event_type).<name>` may be, or None when unchecked."""
        if self.event_attributes is None:
            return None
        return {**self.event_attributes.get(event_type, {}), **LAST_EVENT_FIELDS}

    def types_declaring(self, attribute: str) -> list[str]:
        """Event types that declare `attribute`, for hints when another type is named."""
        if self.event_attributes is None:
            return []
        return sorted(t for t, declared in self.event_attributes.items() if attribute in declared)

    def check_fields(self, namespace: str, values: Mapping[str, Any], where: str = "", *, sent_as: str | None = None) -> None:
        """Refuse a value of the wrong type for a declared field of `namespace`, naming the field
        as `<where><name>` (`<where><sent_as>` when the client sent it under another name, as a
        question's `answer`). Undeclared names pass: no condition can read them."""
        check_types(self.namespaces.get(namespace, {}), values, f"{namespace} field", where, sent_as=sent_as)


def check_types(
    declared: Mapping[str, FieldType], values: Mapping[str, Any], what: str, where: str, *, sent_as: str | None = None
) -> None:
    """The one check of client values against declared types (context and profile fields, event
    attributes): InvalidInput `<what> `<name>` <problem>` naming `<where><name>`."""
    for name, value in values.items():
        kind = declared.get(name)
        problem = type_problem(kind, value) if kind is not None else None
        if problem is not None:
            raise InvalidInput(f"{what} `{name}` {problem}", field=f"{where}{sent_as or name}")


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
    lookback: Mapping[str, Sequence[int]] = field(default_factory=dict)
    """Event type -> the times of its events, from its look-back counter, for the types where
    that counter is read instead of the shared history (`recent` then holds none of them)."""
    topics: Mapping[str, int] = field(default_factory=dict)
    """`liked|disliked|ideas:<topic>` -> when the customer last said so."""
