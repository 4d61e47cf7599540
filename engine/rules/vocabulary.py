"""What a condition may name: the declared fields of each namespace and the known event types.

Marketers declare customer and context fields in the rule set (`fields:`), so a typo such as
`customer.teir` is refused when the rules load instead of silently evaluating to false for
every customer. Built-in namespaces (`cart`) and event types are declared here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
