"""An event the core refuses is refused alike by both front ends: HTTP 422 and gRPC
INVALID_ARGUMENT, naming the same field, and nothing of it is applied.

Both front ends serve one engine over the test Redis, as `nba serve` runs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx2
import pytest
from google.protobuf import struct_pb2
from grpc import aio

from engine.api.grpc.gen import decision_pb2 as pb
from engine.api.grpc.gen.decision_pb2_grpc import DecisionServiceStub
from engine.api.grpc.server import start_grpc
from engine.api.http.app import create_app
from engine.bootstrap import Engine
from engine.domain import MAX_TS
from engine.settings import Settings

pytestmark = pytest.mark.anyio


class Both:
    """Sends one event over HTTP and over gRPC to the same engine."""

    def __init__(self, http: httpx2.AsyncClient, stub: DecisionServiceStub) -> None:
        self.http = http
        self.stub = stub

    async def over_http(self, body: dict[str, Any]) -> httpx2.Response:
        return await self.http.post("/v1/events", json=body)

    async def over_grpc(self, body: dict[str, Any]) -> pb.IngestResponse:
        attributes = struct_pb2.Struct()
        attributes.update(body.get("attributes", {}))
        event = pb.Event(event_id=body["event_id"], customer_id=body["customer_id"], type=body["type"], attributes=attributes)
        if "ts" in body:
            event.ts = body["ts"]
        response: pb.IngestResponse = await self.stub.RecordEvents(pb.RecordEventsRequest(events=[event]))
        return response

    async def recent(self, customer_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/v1/customers/{customer_id}")
        assert response.status_code == 200, response.text
        recent: list[dict[str, Any]] = response.json()["recent"]
        return recent


@pytest.fixture
async def both(engine: Engine, settings: Settings) -> AsyncIterator[Both]:
    running = await start_grpc(engine, "127.0.0.1", 0)
    app = create_app(settings, engine=engine)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://nba.test") as http,
            aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            yield Both(http, DecisionServiceStub(channel))
    finally:
        await running.stop(grace=0)


def body(type_: str, attributes: dict[str, Any] | None = None, *, ts: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": "refused-1", "customer_id": "ben", "type": type_, "attributes": attributes or {}}
    if ts is not None:
        event["ts"] = ts
    return event


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (body("idea", {"topic": "wifi"}, ts=2**62), "ts"),
        (body("idea", {"topic": "wifi"}, ts=MAX_TS + 1), "ts"),
        (body("page_view", ts=2**63 - 1), "ts"),
        (body("page_view", {"page": 5}), "attributes.page"),
        (body("page_view", {"page": "/home", "ts": 1}), "attributes.ts"),
        (body("purchase", {"amount": 5, "type": "refund"}), "attributes.type"),
        (body("compliment", {"topic": "   "}), "attributes.topic"),
        (body("profile_update", {"age": 2**60}), "attributes.age"),
        (body("profile_update", {"age": 1e300}), "attributes.age"),
    ],
    ids=[
        "ts-2**62",
        "ts-past-9999",
        "ts-int64-max",
        "page-number",
        "attr-ts",
        "attr-type",
        "blank-topic",
        "age-2**60",
        "age-1e300",
    ],
)
async def test_an_event_the_core_refuses_is_refused_alike_over_http_and_grpc(
    both: Both, event: dict[str, Any], field: str
) -> None:
    response = await both.over_http(event)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field

    with pytest.raises(aio.AioRpcError) as caught:
        await both.over_grpc(event)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert dict(caught.value.trailing_metadata() or ())["nba-field"] == field

    assert await both.recent("ben") == [], "a refused event leaves no trace"


async def test_the_last_instant_of_year_9999_is_accepted_over_both(both: Both) -> None:
    assert (await both.over_http(body("idea", {"topic": "wifi"}, ts=MAX_TS))).status_code == 202
    second = body("idea", {"topic": "wifi"}, ts=MAX_TS) | {"event_id": "accepted-2"}
    assert await both.over_grpc(second) == pb.IngestResponse(accepted=1)


@pytest.mark.parametrize("ts", [2**62, MAX_TS + 1, -1])
async def test_feedback_with_a_time_out_of_range_is_refused_alike_over_http_and_grpc(both: Both, ts: int) -> None:
    decision = await both.stub.Decide(pb.DecideRequest(customer_id="ben", channel="web"))
    treatment = decision.treatments[0].id
    fields = {"feedback_id": "fb-ts", "decision_id": decision.decision_id, "treatment_id": treatment, "outcome": "click"}
    response = await both.http.post("/v1/feedback", json={**fields, "ts": ts})
    assert response.status_code == 422 and response.json()["field"] == "ts", response.text
    with pytest.raises(aio.AioRpcError) as caught:
        await both.stub.RecordFeedback(pb.RecordFeedbackRequest(**fields, ts=ts))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert dict(caught.value.trailing_metadata() or ())["nba-field"] == "ts"
    # Refused, so not claimed: the same feedback with a good time is taken.
    taken = await both.stub.RecordFeedback(pb.RecordFeedbackRequest(**fields, ts=MAX_TS))
    assert taken.accepted and not taken.duplicate
