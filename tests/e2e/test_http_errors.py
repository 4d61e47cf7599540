"""Bad input gets a 4xx naming the field at fault; nothing already accepted is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from engine.api.http.app import create_app
from engine.api.http.schemas import MAX_TS
from engine.bootstrap import open_engine
from engine.clock import FixedClock
from engine.settings import Settings
from tests.conftest import EXAMPLE_RULES
from tests.e2e.conftest import Channel, held_customer_views


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "a", "channel": "fax"}, "channel"),
        ({"customer_id": "a{b}", "channel": "web"}, "customer_id"),
        ({"channel": "web"}, "customer_id"),
        ({"customer_id": "a", "channel": "web", "limit": 0}, "limit"),
        ({"customer_id": "a", "channel": "web", "recent": -1}, "recent"),
        ({"customer_id": "a", "channel": "web", "recent": 51}, "recent"),
        ({"customer_id": "a", "channel": "web", "colour": "red"}, "colour"),
    ],
)
def test_bad_decision_request_names_the_field(http: TestClient, body: dict[str, object], field: str) -> None:
    response = http.post("/v1/decisions", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["error"] == "invalid_input"


def test_malformed_json_is_a_422_not_a_500(http: TestClient) -> None:
    response = http.post("/v1/decisions", content=b'{"customer_id": ', headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_bad_event_in_a_batch_is_named_and_nothing_is_applied(channel: Channel) -> None:
    good = {"event_id": "b1", "customer_id": "ben", "type": "cart_add", "attributes": {"sku": "A", "price": 10}}
    bad = {"event_id": "b2", "customer_id": "ben", "type": "purchase", "attributes": {"amount": "lots"}}
    response = channel.http.post("/v1/events", json={"events": [good, bad]})
    assert response.status_code == 422
    assert response.json()["field"] == "events[1].attributes.amount"
    assert channel.view("ben")["cart"]["items"] == 0
    # The good event was not swallowed as a duplicate: sent again alone, it is applied.
    assert channel.http.post("/v1/events", json=good).json() == {"accepted": 1, "duplicates": 0}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"event_id": "x", "customer_id": "ben", "type": "teleport"}, "type"),
        ({"event_id": "x", "customer_id": "ben", "type": "cart_add", "attributes": {}}, "attributes.sku"),
        ({"event_id": "x", "customer_id": "ben", "type": "cart_add", "attributes": {"sku": "a", "qty": 1e19}}, "attributes.qty"),
        ({"event_id": "x", "customer_id": "ben", "type": "cart_add", "attributes": {"sku": "a", "qty": 1.5}}, "attributes.qty"),
        (
            {"event_id": "x", "customer_id": "b", "type": "cart_add", "attributes": {"sku": "a", "price": 1e30}},
            "attributes.price",
        ),
        (
            {"event_id": "x", "customer_id": "ben", "type": "flight_delayed", "attributes": {"delay_minutes": -5}},
            "attributes.delay_minutes",
        ),
        ({"event_id": "x", "customer_id": "ben", "type": "profile_update", "attributes": {"age": "old"}}, "attributes.age"),
        ({"event_id": "", "customer_id": "ben", "type": "page_view"}, "event_id"),
        ({"event_id": "x", "customer_id": "ben", "type": "page_view", "channel": "pigeon"}, "channel"),
    ],
)
def test_bad_event_names_the_field(http: TestClient, event: dict[str, object], field: str) -> None:
    response = http.post("/v1/events", json=event)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "flight_delayed", "delay_minutes": "50"}, "event.delay_minutes"),
        ({"type": "flight_delayed", "delay_minutes": [50]}, "event.delay_minutes"),
        ({"type": "flight_delayed", "delay_minutes": True}, "event.delay_minutes"),
        ({"type": 7}, "event.type"),
        ({"type": "fligt_delayed", "delay_minutes": 50}, "event.type"),
        ({"delay_minutes": {"m": 50}}, "event.delay_minutes"),  # no type: as any type that declares it
        ({"type": "page_view", "ts": "yesterday"}, "event.ts"),
    ],
)
def test_a_decision_event_is_checked_as_an_event_would_be(channel: Channel, event: dict[str, object], field: str) -> None:
    """Rules read the decision's `event` (`event.delay_minutes >= 45`): a value of the wrong type
    would make them silently false, so it is refused as `POST /v1/events` refuses it."""
    response = channel.http.post("/v1/decisions", json={"customer_id": "alice", "channel": "mobile_app", "event": event})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    fine = {"type": "flight_delayed", "delay_minutes": 50, "gate": "B7"}  # undeclared attributes pass: no rule reads them
    response = channel.http.post("/v1/decisions", json={"customer_id": "alice", "channel": "mobile_app", "event": fine})
    assert response.status_code == 200, response.text


BIG = 10**20
"""An integer JSON allows and int64 does not: the store could not keep it."""


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "ts": BIG}, "ts"),
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "ts": -BIG}, "ts"),
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "ts": 2**63}, "ts"),
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "ts": MAX_TS + 1}, "ts"),
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "attributes": {"x": BIG}}, "attributes.x"),
        ("/v1/events", {"event_id": "x", "customer_id": "ben", "type": "page_view", "attributes": {"x": -BIG}}, "attributes.x"),
        (
            "/v1/events",
            {"event_id": "x", "customer_id": "ben", "type": "page_view", "attributes": {"a": {"b": [1, {"c": BIG}]}}},
            "attributes.a.b[1].c",
        ),
        (
            "/v1/events",
            {"events": [{"event_id": "x", "customer_id": "ben", "type": "page_view", "ts": BIG}]},
            "events[0].ts",
        ),
        ("/v1/decisions", {"customer_id": "ben", "channel": "web", "context": {"device": BIG}}, "context.device"),
        ("/v1/decisions", {"customer_id": "ben", "channel": "web", "context": {"seen": [2, -BIG]}}, "context.seen[1]"),
        ("/v1/decisions", {"customer_id": "ben", "channel": "web", "event": {"type": "page_view", "n": BIG}}, "event.n"),
        ("/v1/feedback", {"feedback_id": "f", "decision_id": "d", "treatment_id": "t", "outcome": "click", "ts": BIG}, "ts"),
        ("/v1/feedback", {"feedback_id": "f", "decision_id": "d", "treatment_id": "t", "outcome": "click", "ts": -1}, "ts"),
    ],
)
def test_numbers_the_store_cannot_keep_are_a_422_naming_the_value(
    http: TestClient, path: str, body: dict[str, object], field: str
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["message"].startswith(f"{field}: ")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    ("path", "template", "field"),
    [
        ("/v1/events", '{"event_id": "x", "customer_id": "ben", "type": "page_view", "attributes": {"x": %s}}', "attributes.x"),
        ("/v1/decisions", '{"customer_id": "ben", "channel": "web", "context": {"device": %s}}', "context.device"),
        ("/v1/decisions", '{"customer_id": "ben", "channel": "web", "event": {"v": [%s]}}', "event.v[0]"),
    ],
)
def test_numbers_that_are_not_finite_are_a_422(http: TestClient, path: str, template: str, field: str, literal: str) -> None:
    response = http.post(path, content=(template % literal).encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_the_largest_int64_and_a_year_9999_ts_are_kept(channel: Channel) -> None:
    event = {"event_id": "big", "customer_id": "ben", "type": "page_view", "ts": MAX_TS, "attributes": {"n": 2**63 - 1}}
    assert channel.http.post("/v1/events", json=event).json() == {"accepted": 1, "duplicates": 0}
    decision = channel.http.post("/v1/decisions", json={"customer_id": "ben", "channel": "web", "context": {"n": -(2**63)}})
    assert decision.status_code == 200, decision.text


def test_a_batch_with_an_unstorable_number_is_refused_whole_and_its_good_events_can_be_retried(channel: Channel) -> None:
    good = {"event_id": "g1", "customer_id": "ben", "type": "complaint", "attributes": {"topic": "legroom"}}
    bad = {"event_id": "g2", "customer_id": "ben", "type": "page_view", "attributes": {"x": BIG}}
    response = channel.http.post("/v1/events", json={"events": [good, bad]})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "events[1].attributes.x"
    assert channel.http.post("/v1/events", json=good).json() == {"accepted": 1, "duplicates": 0}


def test_batch_over_the_limit_is_refused(http: TestClient) -> None:
    events = [{"event_id": f"e{i}", "customer_id": "c", "type": "page_view"} for i in range(1_001)]
    response = http.post("/v1/events", json={"events": events})
    assert response.status_code in (413, 422)


def test_body_over_the_size_limit_is_413(http: TestClient) -> None:
    response = http.post("/v1/decisions", content=b"x" * (65 * 1024), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(100):
            yield b"x" * 1024

    streamed = http.post("/v1/decisions", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_feedback_errors(channel: Channel) -> None:
    unknown = channel.http.post(
        "/v1/feedback", json={"feedback_id": "f", "decision_id": "nope", "treatment_id": "x", "outcome": "click"}
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "decision_id"
    decision = channel.decide("ben", "web")
    wrong = channel.http.post(
        "/v1/feedback",
        json={"feedback_id": "f", "decision_id": decision["decision_id"], "treatment_id": "apology_upgrade", "outcome": "click"},
    )
    assert wrong.status_code == 422 and wrong.json()["field"] == "treatment_id"
    bad_outcome = channel.http.post(
        "/v1/feedback", json={"feedback_id": "f", "decision_id": decision["decision_id"], "treatment_id": "x", "outcome": "love"}
    )
    assert bad_outcome.status_code == 422 and bad_outcome.json()["field"] == "outcome"
    # The refused feedback id was not burnt: the right treatment with the same id is accepted.
    right = decision["treatments"][0]["id"]
    ok = channel.http.post(
        "/v1/feedback",
        json={"feedback_id": "f", "decision_id": decision["decision_id"], "treatment_id": right, "outcome": "click"},
    )
    assert ok.json() == {"accepted": True, "duplicate": False}


def test_health_readiness_and_docs(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["redis"] == "ok" and ready.json()["treatments"] > 5
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/decisions", "/v1/events", "/v1/feedback", "/v1/customers/{customer_id}"} <= set(paths)


@pytest.mark.parametrize("path", ["/bench/bare", "/bench/bare-redis-py"])
def test_bench_endpoints_only_when_enabled(http: TestClient, settings: Settings, clock: FixedClock, path: str) -> None:
    assert http.get(f"{path}/alice").status_code == 404
    assert f"{path}/{{customer_id}}" not in http.get("/openapi.json").json()["paths"]
    with TestClient(create_app(settings.model_copy(update={"bench_endpoints": True}), clock=clock)) as bench:
        assert f"{path}/{{customer_id}}" not in bench.get("/openapi.json").json()["paths"]
        response = bench.get(f"{path}/alice")
        assert response.status_code == 200
        assert "tier" in response.json(), "the bare read returns the stored profile"
        assert response.json() == bench.get("/bench/bare/alice").json(), "both baselines read the same"
        assert bench.get(f"{path}/nobody").json() == {}


def test_redis_down_gives_a_degraded_fallback_answer_and_not_ready(clock: FixedClock) -> None:
    # A port nothing listens on: the engine must still answer, from fallbacks, and say so.
    settings = Settings(redis_url="redis://127.0.0.1:1/0", rules_dir=EXAMPLE_RULES, redis_timeout_s=0.2, learner=False)
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as http:
        assert http.get("/readyz").status_code == 503
        decision = http.post("/v1/decisions", json={"customer_id": "ben", "channel": "web"}).json()
        assert decision["degraded"] is True
        assert [t["id"] for t in decision["treatments"]] == ["newsletter_signup"] and decision["fallback"]
        events = http.post("/v1/events", json={"event_id": "e", "customer_id": "ben", "type": "page_view"})
        assert events.status_code == 503 and events.json()["error"] == "store_unavailable"
        assert events.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_requests_beyond_the_concurrency_limit_get_503_overloaded_and_probes_still_answer(
    settings: Settings, clock: FixedClock, redis_sync: Redis
) -> None:
    async with open_engine(settings, clock=clock) as engine:
        app = create_app(settings.model_copy(update={"max_concurrent_requests": 1}), engine=engine)
        app.state.engine = engine  # what the lifespan does when the app starts on its own
        transport = httpx2.ASGITransport(app=app)
        with held_customer_views(engine.service) as (entered, release):
            async with httpx2.AsyncClient(transport=transport, base_url="http://nba") as client:
                holder = asyncio.ensure_future(client.get("/v1/customers/alice"))
                await asyncio.wait_for(entered.wait(), 5)

                refused = await client.post("/v1/decisions", json={"customer_id": "alice", "channel": "web"})
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert refused.json()["error"] == "overloaded"
                assert "limit of 1 concurrent calls" in refused.json()["message"]
                assert engine.metrics.get("nba_request_errors_total").value(operation="decide", error="overloaded") == 1
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/metrics")).status_code == 200

                release.set()
                assert (await holder).status_code == 200
                # The slot is given back: the next request is served.
                assert (await client.post("/v1/decisions", json={"customer_id": "alice", "channel": "web"})).status_code == 200


def test_a_bug_is_a_500_with_no_detail_leaked_and_is_counted(http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = http.app.state.engine  # type: ignore[attr-defined]

    async def broken(customer_id: str) -> Any:
        raise RuntimeError("password=hunter2 at line 42")

    monkeypatch.setattr(engine.service, "customer_view", broken)
    response = http.get("/v1/customers/alice")

    assert response.status_code == 500
    assert response.json() == {"error": "internal", "message": "internal error; it has been logged"}
    assert "hunter2" not in response.text
    assert engine.metrics.get("nba_request_errors_total").value(operation="customer", error="internal") == 1


def test_a_declared_context_field_of_the_wrong_type_is_refused_naming_it(http: TestClient) -> None:
    for value in ("many", {"adults": 2}, True):
        response = http.post("/v1/decisions", json={"customer_id": "alice", "channel": "web", "context": {"party_size": value}})
        assert response.status_code == 422, value
        assert response.json()["field"] == "context.party_size"
    ok = http.post("/v1/decisions", json={"customer_id": "alice", "channel": "web", "context": {"party_size": 4, "extra": "x"}})
    assert ok.status_code == 200, "a right value, and a field the rules do not declare, pass"


def test_events_and_feedback_that_fail_to_apply_for_any_reason_can_be_retried(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing already accepted is lost, and nothing refused is taken for a duplicate later."""
    store = http.app.state.engine.store  # type: ignore[attr-defined]
    real_events, real_feedback = store.apply_events, store.apply_feedback

    async def fails_once(*args: Any) -> Any:
        monkeypatch.setattr(store, "apply_events", real_events)
        raise RuntimeError("a bug while writing")

    monkeypatch.setattr(store, "apply_events", fails_once)
    event = {"event_id": "once", "customer_id": "ben", "type": "complaint", "attributes": {"topic": "seats"}}
    assert http.post("/v1/events", json=event).status_code == 500
    retried = http.post("/v1/events", json=event)
    assert retried.status_code == 202 and retried.json() == {"accepted": 1, "duplicates": 0}

    decision = http.post("/v1/decisions", json={"customer_id": "ben", "channel": "web"}).json()
    fb = {"feedback_id": "fb-once", "decision_id": decision["decision_id"], "treatment_id": decision["treatments"][0]["id"]}
    fb["outcome"] = "click"

    async def feedback_fails_once(*args: Any) -> Any:
        monkeypatch.setattr(store, "apply_feedback", real_feedback)
        raise RuntimeError("a bug while writing")

    monkeypatch.setattr(store, "apply_feedback", feedback_fails_once)
    assert http.post("/v1/feedback", json=fb).status_code == 500
    again = http.post("/v1/feedback", json=fb)
    assert again.status_code == 202 and again.json() == {"accepted": True, "duplicate": False}
