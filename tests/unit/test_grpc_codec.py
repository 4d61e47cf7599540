"""The gRPC codec's treatment content: converted once per content dict, and never confused."""

from __future__ import annotations

import pytest

from engine import domain
from engine.api.grpc import codec


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
