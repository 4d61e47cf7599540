"""The gRPC codec: treatment content converted once per content dict and never confused; Struct input
refused where JSON could not have carried it."""

from __future__ import annotations

import pytest

from engine import domain
from engine.api.grpc import codec
from engine.api.grpc.gen import decision_pb2 as pb
from engine.errors import InvalidInput


def decision(*contents: dict[str, object]) -> domain.Decision:
    treatments = tuple(domain.ChosenTreatment(f"t{i}", "offer", "sales", 1.0, 0.5, content) for i, content in enumerate(contents))
    return domain.Decision(
        decision_id="d1",
        customer_id="c1",
        channel="web",
        placement=None,
        treatments=treatments,
        rules_version="v1",
        ts=0,
    )


def test_content_is_converted_once_and_each_treatment_gets_its_own() -> None:
    upgrade = {"headline": "Sorry", "seats": 2, "tags": ["a", "b"], "nested": {"x": 1.5}}
    coupon = {"code": "WELCOME10", "discount_pct": 10}
    first = codec.decide_response(decision(upgrade, coupon))
    assert [codec.struct_to_dict(t.content) for t in first.treatments] == [upgrade, coupon]
    cached = codec._contents[id(upgrade)][1]
    second = codec.decide_response(decision(coupon, upgrade))
    assert [codec.struct_to_dict(t.content) for t in second.treatments] == [coupon, upgrade]
    assert codec._contents[id(upgrade)][1] is cached, "converted once, copied after"
    # A response owns its copy: changing it leaves the cached Struct and later responses alone.
    second.treatments[1].content["headline"] = "changed"
    assert codec.struct_to_dict(codec.decide_response(decision(upgrade)).treatments[0].content) == upgrade


def test_another_dict_is_never_served_anothers_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "CONTENT_CACHE_LIMIT", 8)
    for i in range(50):  # short-lived dicts; once the cache is cleared their ids are free for later ones
        content = {"n": i}
        response = codec.decide_response(decision(content))
        assert codec.struct_to_dict(response.treatments[0].content) == {"n": i}


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"x": float("nan")}, "context.x"),
        ({"x": float("inf")}, "context.x"),
        ({"outer": {"inner": [1, 2.5, float("-inf")]}}, "context.outer.inner[2]"),
    ],
)
def test_a_non_finite_number_in_a_struct_is_refused_naming_its_place(context: dict[str, object], field: str) -> None:
    """JSON has no NaN or Infinity, so HTTP can never send one; gRPC must not let one in either."""
    msg = pb.DecideRequest(customer_id="c1", channel="web")
    msg.context.update(context)
    with pytest.raises(InvalidInput) as caught:
        codec.decision_request(msg)
    assert caught.value.field == field
    assert "finite" in caught.value.message


def test_non_finite_numbers_are_refused_in_events_and_their_place_in_a_batch_is_named() -> None:
    good, bad = pb.Event(event_id="e1", customer_id="c1", type="page_view"), pb.Event(event_id="e2", customer_id="c1", type="x")
    bad.attributes.update({"price": float("nan")})
    with pytest.raises(InvalidInput) as caught:
        codec.events([good, bad])
    assert caught.value.field == "events[1].attributes.price"
    decide = pb.DecideRequest(customer_id="c1", channel="web")
    decide.event.update({"amount": float("inf")})
    with pytest.raises(InvalidInput) as caught:
        codec.decision_request(decide)
    assert caught.value.field == "event.amount"


def test_finite_numbers_still_pass_and_integral_ones_become_ints() -> None:
    msg = pb.DecideRequest(customer_id="c1", channel="web")
    msg.context.update({"n": 3, "f": 1.5, "big": 1e300, "nested": [{"k": -0.25}]})
    assert codec.decision_request(msg).context == {"n": 3, "f": 1.5, "big": 1e300, "nested": [{"k": -0.25}]}
