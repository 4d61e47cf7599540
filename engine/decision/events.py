"""What an event does to a customer's state, as data (applied by the store in one pipeline).

Every event is validated before any is applied, so a batch with one bad event is refused
whole and nothing is half-written.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from engine.domain import MAX_TS, Event, EventEffects
from engine.equity.config import EquityConfig
from engine.equity.facts import EVENT_TYPES as FACT_EVENT_TYPES
from engine.equity.facts import increments
from engine.errors import InvalidInput, quoted
from engine.rules.vocabulary import Vocabulary, check_types

_NUMBER = (int, float)
MAX_QUANTITY = 10_000
VOICE_KINDS = {"compliment": "liked", "complaint": "disliked", "idea": "ideas"}
MAX_PRICE = 1e9
RESERVED_ATTRIBUTES = ("ts", "type")
"""Names an attribute cannot have: the newest event of a type is kept as `{ts, **attributes}`
(what `last('<type>')` reads) and a trigger sees `{type, **attributes}`, so such an attribute
would pass itself off as the event's time or type."""


def _number(
    attrs: dict[str, Any], name: str, where: str, *, required: bool, minimum: float = 0.0, maximum: float = 1e12
) -> float | None:
    value = attrs.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"`{name}` is required for this event type", field=f"{where}attributes.{name}")
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value) or not minimum <= value <= maximum:
        raise InvalidInput(
            f"`{name}` must be a number from {minimum:g} to {maximum:g}, got {quoted(value)}", field=f"{where}attributes.{name}"
        )
    return float(value)


def _count(attrs: dict[str, Any], name: str, where: str) -> int:
    """A whole quantity: 2.0 is accepted as 2, 1.5 is refused rather than silently cut."""
    value = _number(attrs, name, where, required=False, minimum=1, maximum=MAX_QUANTITY)
    if value is None:
        return 1
    if not value.is_integer():
        raise InvalidInput(f"`{name}` must be a whole number, got {quoted(attrs[name])}", field=f"{where}attributes.{name}")
    return int(value)


def _string(attrs: dict[str, Any], name: str, where: str) -> str:
    value = attrs.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"`{name}` (a non-empty string) is required for this event type", field=f"{where}attributes.{name}")
    return value


def _check_ts(ts: int, where: str) -> None:
    """Day and week keys are named from the event's time, so one outside what a calendar date can
    name would fail in the store rather than be refused here, whichever front end it came by."""
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_TS:
        raise InvalidInput(
            f"`ts` must be milliseconds since the epoch, from 0 to {MAX_TS} (end of year 9999), got {quoted(ts)}",
            field=f"{where}ts",
        )


def _check_attribute_names(attrs: dict[str, Any], where: str) -> None:
    for name in RESERVED_ATTRIBUTES:
        if name in attrs:
            raise InvalidInput(
                f"an attribute cannot be named `{name}`: it is the event's own `{name}`", field=f"{where}attributes.{name}"
            )


def _check_attribute_types(event: Event, vocab: Vocabulary, where: str) -> None:
    """Conditions read declared attributes by type (`event.page`, `last('page_view').page`); one of
    another type would make them silently false. Undeclared attributes pass: nothing reads them."""
    if vocab.event_attributes is not None:
        declared = vocab.event_attributes.get(event.type, {})
        check_types(declared, event.attributes, f"{event.type} attribute", f"{where}attributes.")


def effects_of(event: Event, vocab: Vocabulary, now_ms: int, where: str = "", equity: EquityConfig | None = None) -> EventEffects:
    """Validate one event against its type and work out its effects, value facts included when
    an equity configuration is given.

    `where` prefixes the field paths in errors (`events[3].`) so a batch names the bad event.
    """
    fx = _effects(event, vocab, now_ms, where)
    _check_attribute_types(event, vocab, where)
    if equity is None or event.type not in FACT_EVENT_TYPES:
        return fx
    try:
        facts = increments(event.type, event.attributes, fx.ts, equity)
    except ValueError as exc:
        named = re.search(r"attribute `(\w+)`", str(exc))
        raise InvalidInput(str(exc), field=f"{where}attributes.{named.group(1)}" if named else f"{where}ts") from None
    return replace(fx, facts=facts)


def _effects(event: Event, vocab: Vocabulary, now_ms: int, where: str) -> EventEffects:
    if event.type not in vocab.event_types:
        raise InvalidInput(f"unknown event type {quoted(event.type)}", field=f"{where}type")
    ts = event.ts if event.ts is not None else now_ms
    _check_ts(ts, where)
    attrs = event.attributes
    _check_attribute_names(attrs, where)
    match event.type:
        case "cart_add":
            sku = _string(attrs, "sku", where)
            qty = _count(attrs, "qty", where)
            price = _number(attrs, "price", where, required=False, maximum=MAX_PRICE) or 0.0
            item = {"qty": qty, "price": price, "name": attrs.get("name", sku), "added": ts}
            return EventEffects(event, ts, cart_add={sku: item})
        case "cart_remove":
            return EventEffects(event, ts, cart_remove=(_string(attrs, "sku", where),))
        case "checkout":
            return EventEffects(event, ts, cart_clear=True)
        case "purchase":
            _number(attrs, "amount", where, required=True)
            order_id = attrs.get("order_id")
            order = (str(order_id), "placed") if order_id is not None else None
            return EventEffects(event, ts, cart_clear=bool(attrs.get("clears_cart", True)), order=order)
        case "order_status":
            return EventEffects(event, ts, order=(_string(attrs, "order_id", where), _string(attrs, "status", where)))
        case "flight_delayed":
            _number(attrs, "delay_minutes", where, required=True)
            return EventEffects(event, ts)
        case "complaint" | "compliment" | "idea":
            topic = attrs.get("topic")
            if topic is None:
                return EventEffects(event, ts)
            if not isinstance(topic, str) or len(topic) > 64 or not topic.strip():
                raise InvalidInput(
                    f"`topic` must be a string of 1-64 characters, not all blank, got {quoted(topic)}",
                    field=f"{where}attributes.topic",
                )
            return EventEffects(event, ts, voice=(VOICE_KINDS[event.type], topic.strip().lower()))
        case "question_answered":
            question = _string(attrs, "question", where)
            field = vocab.questions.get(question)
            if field is None:
                raise InvalidInput(f"unknown question {quoted(question)}", field=f"{where}attributes.question")
            if "answer" not in attrs or attrs["answer"] is None:
                raise InvalidInput("`answer` is required", field=f"{where}attributes.answer")
            answer = {field: attrs["answer"]}
            # Profile fields are read as `customer.<field>`: held to their declared types, as
            # a decision's context is.
            vocab.check_fields("customer", answer, f"{where}attributes.", sent_as="answer")
            return EventEffects(event, ts, profile_set=answer)
        case "profile_update":
            if not attrs:
                raise InvalidInput("a profile_update needs at least one attribute", field=f"{where}attributes")
            vocab.check_fields("customer", attrs, f"{where}attributes.")
            return EventEffects(event, ts, profile_set=dict(attrs))
        case _:
            return EventEffects(event, ts)
