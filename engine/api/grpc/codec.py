"""Wire messages to and from the core's dataclasses: the gRPC counterpart of `api/http/schemas.py`.

Like the HTTP schemas, this checks only what the wire types cannot express (lengths, ts >= 0);
what a value means (a known channel, an event's attributes) is checked once, in the core, so
gRPC and HTTP refuse the same input with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from engine import domain
from engine.api.grpc.gen import decision_pb2 as pb
from engine.decision.service import CustomerView
from engine.errors import InvalidInput

MAX_PLACEMENT_CHARS = 64  # as the HTTP schema
_MAX_EXACT_INT = 2**53  # beyond this a double no longer holds every integer
MAX_KEY_CHARS_QUOTED = 64  # a client's key in an error's field path is cut after this


# -- Struct <-> plain data ----------------------------------------------------------------------


class _NotFinite(Exception):
    """A NaN or infinity inside a Struct; `struct_to_dict` finds where and names it."""


def _plain(value: struct_pb2.Value) -> Any:
    """A Struct value as the JSON decoder would give it.

    Struct numbers are doubles, so a client's `delay_minutes: 50` arrives as 50.0. Integral
    values go back to int: what the engine stores (recent interactions, `last`, profile fields)
    then reads the same whichever front end wrote it, and counts such as `qty` stay integers.
    NaN and infinities are refused: JSON cannot carry them, so HTTP never lets one in, and
    stored they would break every JSON reader of the customer's state.
    """
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        if n.is_integer() and -_MAX_EXACT_INT <= n <= _MAX_EXACT_INT:
            return int(n)
        if not math.isfinite(n):
            raise _NotFinite
        return n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _dict(value.struct_value)
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    return None  # null_value, or a Value with nothing set


def _dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {k: _plain(v) for k, v in struct.fields.items()}


def _key(key: str) -> str:
    return key if len(key) <= MAX_KEY_CHARS_QUOTED else key[:MAX_KEY_CHARS_QUOTED] + "…"


def _non_finite_at(value: struct_pb2.Value, path: str) -> str | None:
    """The path of the first NaN or infinity in `value` (walked only once one is known to be there)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return None if math.isfinite(value.number_value) else path
    if kind == "struct_value":
        items = ((f"{path}.{_key(k)}", v) for k, v in value.struct_value.fields.items())
    elif kind == "list_value":
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value.list_value.values))
    else:
        return None
    return next((found for p, v in items if (found := _non_finite_at(v, p)) is not None), None)


def struct_to_dict(struct: struct_pb2.Struct, field: str = "") -> dict[str, Any]:
    """`field` names the struct in the error that refuses a NaN or infinity in it (`context.x`)."""
    try:
        return _dict(struct)
    except _NotFinite:
        outer = struct_pb2.Value()
        outer.struct_value.CopyFrom(struct)
        where = _non_finite_at(outer, field) or field
        raise InvalidInput("must be a finite number (JSON has no NaN or Infinity)", field=where.lstrip(".")) from None


def _fill(struct: struct_pb2.Struct, data: Mapping[str, Any]) -> None:
    if data:
        struct.update(data)


CONTENT_CACHE_LIMIT = 4096
_contents: dict[int, tuple[Mapping[str, Any], struct_pb2.Struct]] = {}


def _content(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """A treatment's content as a Struct, converted once per content dict and then copied: the
    dict is the rule set's own and never changes (see domain.ChosenTreatment), and copying a
    built Struct costs a fraction of converting the dict again for every decision. Keyed by
    identity; the entry holds the dict, so its id cannot pass to another while cached."""
    found = _contents.get(id(data))
    if found is None:
        struct = struct_pb2.Struct()
        _fill(struct, data)
        if len(_contents) >= CONTENT_CACHE_LIMIT:
            _contents.clear()
        _contents[id(data)] = found = (data, struct)
    return found[1]


# -- requests -------------------------------------------------------------------------------------


def _ts(value: int, field: str) -> int:
    if value < 0:
        raise InvalidInput(f"must be milliseconds since the epoch (>= 0), got {value}", field=field)
    return value


def decision_request(msg: pb.DecideRequest) -> domain.DecisionRequest:
    placement = msg.placement if msg.HasField("placement") else None
    if placement is not None and len(placement) > MAX_PLACEMENT_CHARS:
        raise InvalidInput(f"placement must be at most {MAX_PLACEMENT_CHARS} characters", field="placement")
    return domain.DecisionRequest(
        customer_id=msg.customer_id,
        channel=msg.channel,
        placement=placement,
        context=struct_to_dict(msg.context, "context"),
        limit=msg.limit if msg.HasField("limit") else None,
        event=struct_to_dict(msg.event, "event") if msg.HasField("event") else None,
        explain=msg.explain,
        recent=msg.recent if msg.HasField("recent") else None,
    )


def event(msg: pb.Event, where: str = "") -> domain.Event:
    """`where` prefixes field names in errors (`events[3].`), as the core does for a batch."""
    return domain.Event(
        event_id=msg.event_id,
        customer_id=msg.customer_id,
        type=msg.type,
        ts=_ts(msg.ts, f"{where}ts") if msg.HasField("ts") else None,
        channel=msg.channel if msg.HasField("channel") else None,
        attributes=struct_to_dict(msg.attributes, f"{where}attributes"),
    )


def events(msgs: Any) -> list[domain.Event]:
    """A repeated Event field; a single event is named without an index, as the core names it."""
    if len(msgs) == 1:
        return [event(msgs[0])]
    return [event(m, f"events[{i}].") for i, m in enumerate(msgs)]


def feedback(msg: pb.RecordFeedbackRequest) -> domain.Feedback:
    return domain.Feedback(
        feedback_id=msg.feedback_id,
        decision_id=msg.decision_id,
        treatment_id=msg.treatment_id,
        outcome=msg.outcome,
        value=msg.value if msg.HasField("value") else None,
        ts=_ts(msg.ts, "ts") if msg.HasField("ts") else None,
    )


# -- responses ------------------------------------------------------------------------------------


def decide_response(d: domain.Decision) -> pb.DecideResponse:
    out = pb.DecideResponse(
        decision_id=d.decision_id,
        customer_id=d.customer_id,
        channel=d.channel,
        rules_version=d.rules_version,
        degraded=d.degraded,
        fallback=d.fallback,
        arm=d.arm,
    )
    if d.placement is not None:
        out.placement = d.placement
    if d.model_version is not None:
        out.model_version = d.model_version
    for t in d.treatments:
        item = out.treatments.add(
            id=t.id,
            kind=t.kind,
            group=t.group,
            score=t.score,
            propensity=t.propensity,
            selection_probability=t.selection_probability,
        )
        item.content.CopyFrom(_content(t.content))
    for adj in d.cart_adjustments:
        item = out.cart_adjustments.add(
            treatment_id=adj["treatment_id"], coupon=adj.get("coupon") or "", discount=adj["discount"]
        )
        for line in adj["lines"]:
            item.lines.add(sku=line["sku"], qty=line["qty"], price=line["price"], discount=line["discount"])
    for v in d.verdicts:
        item = out.explanations.add(treatment_id=v.treatment_id, stage=v.stage, reason=v.reason, components=v.components)
        if v.detail is not None:
            item.detail.update(v.detail)
    if d.customer_value is not None:
        _value(out.customer_value, d.customer_value)
    for r in d.recent:
        _interaction(out.recent.add(), r)
    return out


def ingest_response(result: domain.IngestResult) -> pb.IngestResponse:
    return pb.IngestResponse(accepted=result.accepted, duplicates=result.duplicates)


def feedback_response(result: domain.FeedbackResult) -> pb.RecordFeedbackResponse:
    return pb.RecordFeedbackResponse(accepted=result.accepted, duplicate=result.duplicate)


def _interaction(item: pb.Interaction, r: Mapping[str, Any]) -> None:
    item.event_id = str(r.get("event_id", ""))
    item.type = str(r.get("type", ""))
    item.ts = int(r.get("ts") or 0)
    if r.get("channel") is not None:
        item.channel = r["channel"]
    _fill(item.attributes, r.get("attributes") or {})


def customer_response(view: CustomerView) -> pb.GetCustomerResponse:
    out = pb.GetCustomerResponse(customer_id=view.customer_id, known=view.known)
    _fill(out.profile, view.profile)
    cart = view.cart
    out.cart.value = float(cart.get("value", 0.0))
    out.cart.items = int(cart.get("items", 0))
    out.cart.skus.extend(str(s) for s in cart.get("skus", ()))
    for sku, line in cart.get("lines", {}).items():
        entry = out.cart.lines[sku]
        entry.qty = int(line.get("qty", 1))
        entry.price = float(line.get("price") or 0.0)
        entry.name = str(line.get("name", sku))
        entry.added = int(line.get("added") or 0)
    for s in view.suppressions:
        out.suppressions.add(group=s["group"], policy=s["policy"], until=int(s["until"]))
    for r in view.recent:
        _interaction(out.recent.add(), r)
    for key, count in view.responses.items():
        out.responses[key] = count
    for p in view.purchases:
        _interaction(out.purchases.add(), p)
    for o in view.orders:
        out.orders.add(order_id=o["order_id"], status=str(o.get("status", "")), ts=int(o.get("ts") or 0))
    if view.value is not None:
        _value(out.value, view.value)
    return out


def _value(out: pb.CustomerValue, value: Mapping[str, Any]) -> None:
    for name in ("contribution", "perception", "referral", "loyalty", "equity"):
        setattr(out, name, float(value[name]))
    out.tier = str(value["tier"])
    for name in ("p_alive", "expected_purchases", "clv"):
        if value.get(name) is not None:
            setattr(out, name, float(value[name]))
