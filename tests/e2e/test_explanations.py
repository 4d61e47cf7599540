"""Explanations through both front ends: why each candidate was chosen or dropped, in words and as data.

The HTTP app and the gRPC server share one engine (as `nba serve` runs them), and each request is
made from the same seeded state, so the two answers must explain the same things the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest
from google.protobuf import struct_pb2
from grpc import aio
from redis import Redis

from engine.api.grpc.codec import struct_to_dict
from engine.api.grpc.gen import decision_pb2 as pb
from engine.api.grpc.gen.decision_pb2_grpc import DecisionServiceStub
from engine.api.grpc.server import RunningGrpc, start_grpc
from engine.api.http.app import create_app
from engine.bootstrap import Engine
from engine.cli import seed_customers
from engine.clock import FixedClock
from engine.settings import Settings
from tests.conftest import T0

pytestmark = pytest.mark.anyio

Explained = dict[str, dict[str, Any]]


@pytest.fixture
async def stub(engine: Engine) -> AsyncIterator[DecisionServiceStub]:
    running: RunningGrpc = await start_grpc(engine, "127.0.0.1", 0)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield DecisionServiceStub(channel)
    finally:
        await running.stop(grace=0)


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(engine.settings, engine=engine)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://nba.test") as client,
    ):
        yield client


@pytest.fixture
def from_scratch(settings: Settings, clock: FixedClock, redis_sync: Redis) -> Callable[[], Awaitable[None]]:
    """Back to the seeded world: a decision counts towards caps, so each front end starts afresh."""

    async def reset() -> None:
        redis_sync.flushdb()
        await seed_customers(settings, 0, 7, now_ms=T0)
        clock.set(T0)

    return reset


REQUEST: dict[str, Any] = {
    "customer_id": "ben",
    "channel": "web",
    "placement": "event_tickets",
    "context": {"companion": "friends"},
    "explain": True,
}


async def over_http(client: httpx2.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/decisions", json=body)
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


async def over_grpc(stub: DecisionServiceStub, body: dict[str, Any]) -> pb.DecideResponse:
    context = struct_pb2.Struct()
    context.update(body.get("context", {}))
    request = pb.DecideRequest(customer_id=body["customer_id"], channel=body["channel"], context=context)
    if "placement" in body:
        request.placement = body["placement"]
    request.explain = bool(body.get("explain"))
    response: pb.DecideResponse = await stub.Decide(request)
    return response


def http_explained(decision: dict[str, Any]) -> Explained:
    return {
        e["treatment_id"]: {"stage": e["stage"], "reason": e["reason"], "detail": e["detail"], "components": e["components"]}
        for e in decision["explanations"]
    }


def grpc_explained(decision: pb.DecideResponse) -> Explained:
    return {
        e.treatment_id: {
            "stage": e.stage,
            "reason": e.reason,
            "detail": struct_to_dict(e.detail) if e.HasField("detail") else None,
            "components": dict(e.components) or None,
        }
        for e in decision.explanations
    }


async def test_http_and_grpc_carry_the_same_explanations(
    http: httpx2.AsyncClient, stub: DecisionServiceStub, from_scratch: Callable[[], Awaitable[None]]
) -> None:
    await from_scratch()
    by_http = http_explained(await over_http(http, REQUEST))
    await from_scratch()
    by_grpc = grpc_explained(await over_grpc(stub, REQUEST))

    assert by_grpc == by_http
    assert {"chosen", "eligibility"} <= {e["stage"] for e in by_http.values()}
    family = by_http["family_bundle"]
    assert family["stage"] == "eligibility"
    assert family["detail"]["failed"] == [
        {"expression": "context.companion == 'child'", "was": False, "values": {"context.companion": "friends"}},
        {"expression": "customer.segment == 'family'", "was": False, "values": {"customer.segment": "young_adult"}},
    ]


async def test_a_marketer_reads_why_each_offer_was_shown_or_not(http: httpx2.AsyncClient) -> None:
    decision = await over_http(http, REQUEST)
    explained = http_explained(decision)
    shown = [t["id"] for t in decision["treatments"]]
    assert shown and set(shown) <= set(explained)
    for rank, treatment_id in enumerate(shown, start=1):
        entry = explained[treatment_id]
        parts = entry["components"]
        assert entry["stage"] == "chosen" and parts["rank"] == rank
        assert parts["P"] * parts["C"] * parts["V"] * parts["L"] == pytest.approx(parts["priority"], rel=1e-6)
    night_out = explained["night_out_pass"]
    assert night_out["components"]["C"] == pytest.approx(1.3), "the `friends` context weight applied"
    assert night_out["detail"]["context_weights"] == [{"when": "context.companion == 'friends'", "weight": 1.3, "held": True}]
    lounge = explained["lounge_pass"]
    assert lounge["reason"] == "not eligible: customer.tier in ['gold', 'platinum'] was false (customer.tier = 'silver')"


async def test_no_explanations_unless_asked_for(http: httpx2.AsyncClient, stub: DecisionServiceStub) -> None:
    quiet = {**REQUEST, "explain": False}
    assert "explanations" not in await over_http(http, quiet)
    assert len((await over_grpc(stub, quiet)).explanations) == 0
    assert len((await over_grpc(stub, REQUEST)).explanations) > 0
