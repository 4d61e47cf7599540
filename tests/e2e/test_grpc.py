"""The gRPC API over a real channel, to a real server on a real engine over the test Redis.

The server, the engine's Redis client and the test share one event loop, as in `nba serve`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx2
import orjson
import pytest
from google.protobuf import struct_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from redis import Redis

from engine.api.grpc import servicer as servicer_module
from engine.api.grpc.errors import INTERNAL_MESSAGE
from engine.api.grpc.gen import bench_pb2, bench_pb2_grpc
from engine.api.grpc.gen import decision_pb2 as pb
from engine.api.grpc.gen.decision_pb2_grpc import DecisionServiceStub
from engine.api.grpc.server import DECISION_SERVICE, RunningGrpc, start_grpc
from engine.api.http.app import create_app
from engine.bootstrap import Engine
from engine.cli import seed_customers
from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.domain import Decision, DecisionRequest
from engine.errors import InvalidInput
from engine.settings import Settings
from engine.state import keys
from tests.conftest import T0
from tests.e2e.conftest import held_customer_views

pytestmark = pytest.mark.anyio

_ids = itertools.count(1)


def struct(**fields: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(fields)
    return s


def ev(customer_id: str, type_: str, *, channel: str | None = None, event_id: str | None = None, **attributes: Any) -> pb.Event:
    e = pb.Event(event_id=event_id or f"ev-{next(_ids)}", customer_id=customer_id, type=type_, attributes=struct(**attributes))
    if channel is not None:
        e.channel = channel
    return e


def trailing(err: aio.AioRpcError) -> dict[str, str]:
    return {k: v for k, v in (err.trailing_metadata() or ()) if isinstance(v, str)}


@pytest.fixture
async def server(engine: Engine) -> AsyncIterator[RunningGrpc]:
    running = await start_grpc(engine, "127.0.0.1", 0)
    yield running
    await running.stop(grace=0)


@pytest.fixture
async def grpc_channel(server: RunningGrpc) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(grpc_channel: aio.Channel) -> DecisionServiceStub:
    return DecisionServiceStub(grpc_channel)


async def record(stub: DecisionServiceStub, *events: pb.Event) -> pb.IngestResponse:
    response: pb.IngestResponse = await stub.RecordEvents(pb.RecordEventsRequest(events=events))
    return response


async def offered(stub: DecisionServiceStub, customer_id: str, channel: str, **extra: Any) -> list[str]:
    response = await stub.Decide(pb.DecideRequest(customer_id=customer_id, channel=channel, **extra))
    return [t.id for t in response.treatments]


# -- every RPC ------------------------------------------------------------------------------------


async def test_decide_after_a_delayed_flight_offers_the_apology_upgrade(stub: DecisionServiceStub, clock: FixedClock) -> None:
    assert await record(stub, ev("alice", "flight_delayed", delay_minutes=50, flight="AF123")) == pb.IngestResponse(accepted=1)
    clock.advance(hours=2)
    decision = await stub.Decide(pb.DecideRequest(customer_id="alice", channel="mobile_app"))
    assert decision.treatments[0].id == "apology_upgrade"
    first = decision.treatments[0]
    assert (first.kind, first.group) == ("offer", "service")
    assert 0 < first.propensity < 1 and first.score > 0
    assert first.content["title"] == "We're sorry about the delay"
    assert decision.decision_id and decision.customer_id == "alice" and decision.channel == "mobile_app"
    assert not decision.HasField("placement")
    assert decision.rules_version and not decision.degraded and not decision.fallback
    assert not decision.explanations, "explanations only when asked for"


async def test_decide_explains_on_request_and_carries_placement_and_context(stub: DecisionServiceStub) -> None:
    decision = await stub.Decide(
        pb.DecideRequest(
            customer_id="carla",
            channel="web",
            placement="event_tickets",
            context=struct(companion="child", party_size=2),
            explain=True,
        )
    )
    ids = [t.id for t in decision.treatments]
    assert "family_bundle" in ids and "night_out_pass" not in ids
    assert decision.placement == "event_tickets"
    assert any(e.treatment_id == "night_out_pass" and e.stage == "eligibility" for e in decision.explanations)


async def test_fallback_is_flagged(stub: DecisionServiceStub) -> None:
    decision = await stub.Decide(pb.DecideRequest(customer_id="nobody-known", channel="email"))
    assert [t.id for t in decision.treatments] == ["newsletter_signup"] and decision.fallback


async def test_record_events_counts_a_retry_once_and_keeps_integer_quantities(stub: DecisionServiceStub) -> None:
    add = ev("ben", "cart_add", event_id="retry-1", sku="X", qty=1, price=5)
    assert await record(stub, add) == pb.IngestResponse(accepted=1, duplicates=0)
    assert await record(stub, add) == pb.IngestResponse(accepted=0, duplicates=1)
    again = pb.Event()
    again.CopyFrom(add)
    again.event_id = "retry-2"
    again.attributes["qty"] = 2
    assert await record(stub, add, again) == pb.IngestResponse(accepted=1, duplicates=1)
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="ben"))
    assert view.cart.items == 3 and list(view.cart.skus) == ["X"]
    assert view.cart.lines["X"].qty == 3 and view.cart.lines["X"].price == 5.0
    # Struct numbers travel as doubles; integral ones are stored as integers, as HTTP stores them.
    assert view.recent[0].attributes["qty"] == 2


async def test_stream_events_applies_batches_as_they_arrive_and_answers_totals(
    stub: DecisionServiceStub, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = engine.service.record_events

    async def spy(events: Any) -> Any:
        batches.append(len(events))
        return await real(events)

    monkeypatch.setattr(engine.service, "record_events", spy)

    async def events() -> AsyncIterator[pb.Event]:
        for i in range(1_200):
            yield ev(f"cust-s{i % 40}", "page_view", event_id=f"s-{i}", page="home")
        yield ev("ben", "cart_add", event_id="s-0-cart", sku="TKT-42", price=120.0, qty=2)
        yield ev("cust-s0", "page_view", event_id="s-0", page="home")  # a retry within the stream

    response = await stub.StreamEvents(events())
    assert response == pb.IngestResponse(accepted=1_201, duplicates=1)
    assert sum(batches) == 1_202 and max(batches) <= 500
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="ben"))
    assert view.cart.items == 2


async def test_stream_events_names_a_bad_event_by_its_place_in_the_stream(stub: DecisionServiceStub) -> None:
    async def events() -> AsyncIterator[pb.Event]:
        for i in range(600):
            yield ev("ben", "page_view", event_id=f"p-{i}", page="home")
        yield ev("ben", "purchase", event_id="p-bad", amount="lots")

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.StreamEvents(events())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("events[600].attributes.amount: `amount` must be a number")
    assert trailing(caught.value)["nba-field"] == "events[600].attributes.amount"


async def test_an_empty_stream_is_refused_like_an_empty_batch(stub: DecisionServiceStub) -> None:
    async def nothing() -> AsyncIterator[pb.Event]:
        return
        yield

    for call in (stub.StreamEvents(nothing()), stub.RecordEvents(pb.RecordEventsRequest())):
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "events: no events given"


async def test_a_cart_quantity_beyond_32_bits_reaches_the_coupon_lines_whole(
    stub: DecisionServiceStub, redis_sync: Redis
) -> None:
    """Quantities add up over cart_adds with no ceiling; the answer carries them as the cart holds them."""
    assert await record(stub, ev("visitor-q", "cart_add", sku="TSHIRT", qty=1, price=20)) == pb.IngestResponse(accepted=1)
    redis_sync.hset(keys.cart("visitor-q"), "q:TSHIRT", 3_000_000_000)  # as a long run of cart_adds would leave it
    decision = await stub.Decide(pb.DecideRequest(customer_id="visitor-q", channel="web"))
    [adjustment] = decision.cart_adjustments
    assert [(line.sku, line.qty) for line in adjustment.lines] == [("TSHIRT", 3_000_000_000)]


async def test_feedback_joins_the_decision_and_counts_once(stub: DecisionServiceStub) -> None:
    decision = await stub.Decide(pb.DecideRequest(customer_id="alice", channel="mobile_app"))
    chosen = decision.treatments[0].id
    fb = pb.RecordFeedbackRequest(
        feedback_id="fb-1", decision_id=decision.decision_id, treatment_id=chosen, outcome="purchase", value=99.5
    )
    assert await stub.RecordFeedback(fb) == pb.RecordFeedbackResponse(accepted=True, duplicate=False)
    assert await stub.RecordFeedback(fb) == pb.RecordFeedbackResponse(accepted=False, duplicate=True)
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="alice"))
    assert dict(view.responses) == {f"{chosen}:purchase": 1}


async def test_get_customer_shows_profile_suppressions_and_recent_interactions(stub: DecisionServiceStub) -> None:
    await record(stub, ev("dev", "complaint", channel="social", topic="lost_luggage", text="Still no bag after 3 days"))
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="dev"))
    assert view.customer_id == "dev" and view.known
    assert view.profile["tier"] == "platinum" and view.profile["loyalty_points"] == 240_000
    assert view.profile["email_opt_in"] is True
    assert [(s.group, s.policy) for s in view.suppressions] == [("sales", "complaint_cooldown")]
    assert view.suppressions[0].until > T0
    assert view.recent[0].type == "complaint" and view.recent[0].channel == "social" and view.recent[0].ts == T0
    assert view.recent[0].attributes["topic"] == "lost_luggage"
    unknown = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="nobody"))
    assert not unknown.known and not unknown.profile.fields and not unknown.recent


async def test_customer_value_travels_over_grpc_as_over_http(stub: DecisionServiceStub, engine: Engine) -> None:
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="dev"))
    expected = (await engine.service.customer_view("dev")).value
    assert expected is not None and view.HasField("value")
    assert view.value.tier == expected["tier"] and view.value.equity == pytest.approx(expected["equity"])
    assert 0 <= view.value.contribution <= 100 and 0 <= view.value.loyalty <= 100
    assert not view.value.HasField("clv"), "no lifetime model fitted in this world"
    decision = await stub.Decide(pb.DecideRequest(customer_id="dev", channel="web"))
    assert decision.customer_value.tier == expected["tier"]


# -- every error code -------------------------------------------------------------------------------


async def test_unknown_channel_is_invalid_argument_naming_the_field(stub: DecisionServiceStub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(pb.DecideRequest(customer_id="alice", channel="fax"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("channel: unknown channel 'fax'; expected one of web, mobile_app")
    assert trailing(caught.value) == {"nba-error": "invalid_input", "nba-field": "channel"}


async def test_grpc_calls_count_in_the_engine_metrics_http_serves(stub: DecisionServiceStub, engine: Engine) -> None:
    decisions, errors = engine.metrics.get("nba_decisions_total"), engine.metrics.get("nba_request_errors_total")
    response = await stub.Decide(pb.DecideRequest(customer_id="alice", channel="mobile_app"))
    with pytest.raises(aio.AioRpcError):
        await stub.Decide(pb.DecideRequest(customer_id="alice", channel="fax"))
    with pytest.raises(aio.AioRpcError):  # refused by the codec, before the core
        await record(stub, pb.Event(event_id="e", customer_id="alice", type="page_view", ts=-1))
    fb = pb.RecordFeedbackRequest(feedback_id="f", decision_id="nope", treatment_id="t", outcome="click")
    with pytest.raises(aio.AioRpcError):
        await stub.RecordFeedback(fb)

    result = "fallback" if response.fallback else "treatments"
    assert decisions.value(channel="mobile_app", result=result) == 1
    assert errors.value(operation="decide", error="invalid_input") == 1
    assert errors.value(operation="events", error="invalid_input") == 1
    assert errors.value(operation="feedback", error="not_found") == 1
    assert f'nba_decisions_total{{channel="mobile_app",result="{result}"}} 1' in engine.metrics.render().splitlines()


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([("purchase", {"amount": "lots"})], "attributes.amount"),
        ([("page_view", {}), ("purchase", {"amount": -1})], "events[1].attributes.amount"),
        ([("flight_delayed", {})], "attributes.delay_minutes"),
    ],
)
async def test_bad_event_attribute_is_invalid_argument_and_nothing_is_applied(
    stub: DecisionServiceStub, events: list[tuple[str, dict[str, Any]]], field: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await record(stub, *(ev("ben", type_, **attrs) for type_, attrs in events))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")
    assert trailing(caught.value)["nba-field"] == field
    assert not (await stub.GetCustomer(pb.GetCustomerRequest(customer_id="ben"))).recent


LONG = "x" * 20_000


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda stub: stub.Decide(pb.DecideRequest(customer_id=LONG, channel="web")), "customer_id"),
        (lambda stub: stub.GetCustomer(pb.GetCustomerRequest(customer_id=LONG)), "customer_id"),
        (lambda stub: stub.Decide(pb.DecideRequest(customer_id="alice", channel=LONG)), "channel"),
        (lambda stub: record(stub, ev("ben", "page_view", channel=LONG)), "channel"),
        (lambda stub: record(stub, ev("ben", LONG)), "type"),
        (lambda stub: record(stub, ev("ben", "complaint", topic=LONG)), "attributes.topic"),
        (lambda stub: record(stub, ev("ben", "purchase", amount=LONG)), "attributes.amount"),
    ],
)
async def test_a_long_bad_value_is_invalid_argument_naming_the_field_with_a_short_message(
    stub: DecisionServiceStub, call: Callable[[DecisionServiceStub], Awaitable[object]], field: str
) -> None:
    """Quoting a client's whole value would make the status too long for gRPC to deliver, and the
    client would get RESOURCE_EXHAUSTED (or nothing useful) instead of the field at fault."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call(stub)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert caught.value.details().startswith(f"{field}: ")
    assert len(caught.value.details()) < 300 and "20,000 characters" in caught.value.details()
    assert trailing(caught.value) == {"nba-error": "invalid_input", "nba-field": field}


async def test_an_overlong_error_still_arrives_as_its_own_status_cut_short(
    stub: DecisionServiceStub, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever message a future check writes, the status is bounded: the client gets the code and
    the field, not RESOURCE_EXHAUSTED from its own metadata limits."""

    async def verbose(customer_id: str) -> Any:
        raise InvalidInput("é" * 20_000, field="profile." + "ü" * 20_000)

    monkeypatch.setattr(engine.service, "customer_view", verbose)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetCustomer(pb.GetCustomerRequest(customer_id="alice"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("profile.???") and len(caught.value.details().encode()) <= 1_024
    field = trailing(caught.value)["nba-field"]
    assert field.startswith("profile.???") and len(field) <= 256


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
async def test_a_non_finite_number_is_refused_as_json_would_refuse_it(stub: DecisionServiceStub, bad: float) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web", context=struct(party=[2, bad])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("context.party[1]: ")
    assert trailing(caught.value)["nba-field"] == "context.party[1]"
    with pytest.raises(aio.AioRpcError) as caught:
        await record(stub, ev("ben", "page_view"), ev("ben", "profile_update", score=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(caught.value)["nba-field"] == "events[1].attributes.score"
    assert not (await stub.GetCustomer(pb.GetCustomerRequest(customer_id="ben"))).recent, "nothing applied"


async def test_decide_returns_the_recent_interactions_a_call_center_screen_shows(stub: DecisionServiceStub) -> None:
    await record(stub, ev("carla", "email_received", channel="email", subject="Refund?"))
    await record(stub, ev("carla", "call_started", channel="call_center"))
    response = await stub.Decide(pb.DecideRequest(customer_id="carla", channel="call_center", placement="agent_prompt"))
    assert [(r.type, r.channel) for r in response.recent] == [("call_started", "call_center"), ("email_received", "email")]
    assert response.recent[1].attributes["subject"] == "Refund?"
    view = await stub.GetCustomer(pb.GetCustomerRequest(customer_id="carla"))
    assert list(response.recent) == list(view.recent)
    asked = await stub.Decide(pb.DecideRequest(customer_id="carla", channel="web", recent=1))
    assert [r.type for r in asked.recent] == ["call_started"]
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(pb.DecideRequest(customer_id="carla", channel="web", recent=51))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(caught.value)["nba-field"] == "recent"


async def test_a_decision_event_of_the_wrong_type_is_invalid_argument(stub: DecisionServiceStub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(
            pb.DecideRequest(customer_id="alice", channel="mobile_app", event=struct(type="flight_delayed", delay_minutes="50"))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(caught.value)["nba-field"] == "event.delay_minutes"


async def test_negative_timestamp_is_refused_like_http(stub: DecisionServiceStub) -> None:
    bad = ev("ben", "page_view")
    bad.ts = -1
    with pytest.raises(aio.AioRpcError) as caught:
        await record(stub, bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("ts: ")


async def test_feedback_for_an_unknown_decision_is_not_found(stub: DecisionServiceStub) -> None:
    fb = pb.RecordFeedbackRequest(feedback_id="fb-x", decision_id="nope", treatment_id="apology_upgrade", outcome="click")
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RecordFeedback(fb)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "decision_id: unknown or expired decision 'nope'"
    assert trailing(caught.value) == {"nba-error": "not_found", "nba-field": "decision_id"}


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted(engine: Engine) -> None:
    running = await start_grpc(engine, "127.0.0.1", 0, max_concurrent_rpcs=1)
    with held_customer_views(engine.service) as (entered, release):
        try:
            async with aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
                stub = DecisionServiceStub(ch)
                holder = asyncio.ensure_future(stub.GetCustomer(pb.GetCustomerRequest(customer_id="alice")))
                await asyncio.wait_for(entered.wait(), 5)
                with pytest.raises(aio.AioRpcError) as caught:
                    await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web"))
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "limit of 1 concurrent calls" in caught.value.details()
                assert engine.metrics.get("nba_request_errors_total").value(operation="decide", error="overloaded") == 1
                health = health_pb2_grpc.HealthStub(ch)
                status = await health.Check(health_pb2.HealthCheckRequest(service=DECISION_SERVICE))
                assert status.status == health_pb2.HealthCheckResponse.SERVING, "probes are not counted against the limit"
                release.set()
                assert (await holder).customer_id == "alice"
                assert (await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web"))).treatments
        finally:
            release.set()
            await running.stop(grace=0)


async def test_a_tiny_deadline_is_deadline_exceeded(stub: DecisionServiceStub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web"), timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


class _Aborted(Exception):
    pass


class _ShortOnTime:
    """Just enough of a servicer context to call the servicer directly with a deadline nearly gone."""

    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float:
        return self.remaining_s

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details)
        raise _Aborted


async def test_the_server_refuses_to_decide_with_no_time_left(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[DecisionRequest] = []

    async def decide(req: DecisionRequest) -> Decision:
        calls.append(req)
        raise AssertionError("should not be asked to decide")

    monkeypatch.setattr(engine.service, "decide", decide)
    servicer = servicer_module.DecisionServicer(engine.service, servicer_module.ConcurrencyLimit(10))
    context = _ShortOnTime(0.002)
    with pytest.raises(_Aborted):
        await servicer.Decide(pb.DecideRequest(customer_id="alice", channel="web"), context)  # type: ignore[arg-type]
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not calls


async def test_a_decision_that_outruns_the_deadline_is_abandoned(
    stub: DecisionServiceStub, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    abandoned = asyncio.Event()

    async def slow(req: DecisionRequest) -> Decision:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            abandoned.set()
            raise
        raise AssertionError("not abandoned")

    monkeypatch.setattr(engine.service, "decide", slow)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web"), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Abandoned at the deadline, not when the ten seconds of work would have ended.
    await asyncio.wait_for(abandoned.wait(), 1)


async def test_an_unexpected_error_is_internal_with_no_detail_leaked(
    stub: DecisionServiceStub, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(customer_id: str) -> Any:
        raise RuntimeError("password=hunter2 at line 42")

    monkeypatch.setattr(engine.service, "customer_view", broken)
    with caplog.at_level(logging.ERROR, logger="engine.grpc"), pytest.raises(aio.AioRpcError) as caught:
        await stub.GetCustomer(pb.GetCustomerRequest(customer_id="alice"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == INTERNAL_MESSAGE
    assert "hunter2" not in caught.value.details() and "Traceback" not in (caught.value.debug_error_string() or "")
    assert any("GetCustomer" in r.getMessage() and r.exc_info for r in caplog.records)
    assert engine.metrics.get("nba_request_errors_total").value(operation="customer", error="internal") == 1


# -- health, reflection, the bench service ----------------------------------------------------------


async def health_of(ch: aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service))
    return int(response.status)


async def test_health_is_serving_while_up_and_not_serving_once_stopping(server: RunningGrpc, grpc_channel: aio.Channel) -> None:
    for service in ("", DECISION_SERVICE):
        assert await health_of(grpc_channel, service) == health_pb2.HealthCheckResponse.SERVING
    await server.drain()  # the first step of stop()
    for service in ("", DECISION_SERVICE):
        assert await health_of(grpc_channel, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    stub = DecisionServiceStub(grpc_channel)
    assert (await stub.Decide(pb.DecideRequest(customer_id="alice", channel="web"))).treatments, "still answering while draining"


async def test_health_waits_for_readiness(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ready = False

    async def readiness() -> tuple[bool, dict[str, object]]:
        return ready, {}

    monkeypatch.setattr(engine, "readiness", readiness)
    running = await start_grpc(engine, "127.0.0.1", 0, health_interval_s=0.02)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            assert await health_of(ch, DECISION_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await health_of(ch, "") == health_pb2.HealthCheckResponse.NOT_SERVING
            ready = True
            for _ in range(250):
                if await health_of(ch, DECISION_SERVICE) == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.02)
            assert await health_of(ch, "") == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(grace=0)


async def test_reflection_lists_the_services(grpc_channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = [s.name async for r in stub.ServerReflectionInfo(ask()) for s in r.list_services_response.service]
    assert "nba.v1.DecisionService" in names and "grpc.health.v1.Health" in names
    assert "nba.v1.Bench" not in names, "the bench service only exists when asked for"


async def test_bench_service_only_when_enabled(engine: Engine, grpc_channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await bench_pb2_grpc.BenchStub(grpc_channel).Bare(bench_pb2.BareRequest(customer_id="alice"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED

    engine.settings = engine.settings.model_copy(update={"bench_endpoints": True})
    running = await start_grpc(engine, "127.0.0.1", 0)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = bench_pb2_grpc.BenchStub(ch)
            response = await stub.Bare(bench_pb2.BareRequest(customer_id="alice"))
            assert b'"tier"' in response.profile_json
            pooled = await stub.BareRedisPy(bench_pb2.BareRequest(customer_id="alice"))
            assert orjson.loads(pooled.profile_json) == orjson.loads(response.profile_json), "both baselines read the same"
    finally:
        await running.stop(grace=0)


# -- parity with HTTP -------------------------------------------------------------------------------

Offered = list[list[str]]


async def walk_http(client: httpx2.AsyncClient, clock: FixedClock) -> Offered:
    async def event(customer_id: str, type_: str, channel: str | None = None, **attributes: Any) -> None:
        body: dict[str, Any] = {
            "event_id": f"ev-{next(_ids)}",
            "customer_id": customer_id,
            "type": type_,
            "attributes": attributes,
        }
        if channel:
            body["channel"] = channel
        response = await client.post("/v1/events", json=body)
        assert response.status_code == 202, response.text

    async def decide(customer_id: str, channel: str, **extra: Any) -> list[str]:
        response = await client.post("/v1/decisions", json={"customer_id": customer_id, "channel": channel, **extra})
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["treatments"]]

    walked = []
    await event("alice", "flight_delayed", delay_minutes=50)
    clock.advance(hours=2)
    walked.append(await decide("alice", "mobile_app"))
    walked.append(await decide("dev", "mobile_app"))
    await event("dev", "complaint", channel="social", topic="lost_luggage")
    walked.append(await decide("dev", "mobile_app", explain=True))
    return walked


async def walk_grpc(stub: DecisionServiceStub, clock: FixedClock) -> Offered:
    walked = []
    await record(stub, ev("alice", "flight_delayed", delay_minutes=50))
    clock.advance(hours=2)
    walked.append(await offered(stub, "alice", "mobile_app"))
    walked.append(await offered(stub, "dev", "mobile_app"))
    await record(stub, ev("dev", "complaint", channel="social", topic="lost_luggage"))
    walked.append(await offered(stub, "dev", "mobile_app", explain=True))
    return walked


async def test_http_and_grpc_walk_the_scenarios_to_the_same_treatments(
    engine: Engine, stub: DecisionServiceStub, settings: Settings, clock: FixedClock, redis_sync: Redis
) -> None:
    async def from_scratch(walk: Callable[[], Awaitable[Offered]]) -> Offered:
        redis_sync.flushdb()
        await seed_customers(settings, 0, 7, now_ms=T0)
        clock.set(T0)
        return await walk()

    app = create_app(settings, engine=engine)  # the same engine as the gRPC server: one pool, one rule set
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://nba.test") as client,
    ):
        over_http = await from_scratch(lambda: walk_http(client, clock))
    over_grpc = await from_scratch(lambda: walk_grpc(stub, clock))

    assert over_grpc == over_http
    alice, dev_before, dev_after = over_grpc
    assert alice[0] == "apology_upgrade"
    assert "credit_card_offer" in dev_before
    assert dev_after[0] == "service_recovery" and "credit_card_offer" not in dev_after


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/decisions", {"customer_id": LONG, "channel": "web"}, "customer_id"),
        ("POST", "/v1/decisions", {"customer_id": "alice", "channel": LONG}, "channel"),
        ("GET", f"/v1/customers/{LONG}", None, "path.customer_id"),  # HTTP names where a parameter came from
        ("POST", "/v1/events", {"event_id": "e", "customer_id": "ben", "type": "page_view", "channel": LONG}, "channel"),
        (
            "POST",
            "/v1/events",
            {"event_id": "e", "customer_id": "ben", "type": "complaint", "attributes": {"topic": LONG}},
            "attributes.topic",
        ),
        (
            "POST",
            "/v1/events",
            {"event_id": "e", "customer_id": "ben", "type": "purchase", "attributes": {"amount": LONG}},
            "attributes.amount",
        ),
    ],
)
async def test_http_refuses_long_values_with_the_same_short_messages(
    engine: Engine, settings: Settings, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    app = create_app(settings, engine=engine)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://nba.test") as client,
    ):
        response = await client.request(method, path, json=body)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field
    assert len(response.json()["message"]) < 300, response.json()["message"][:300]


def test_servicer_batches_stay_within_the_core_batch_limit(engine_free_service: DecisionService) -> None:
    servicer = servicer_module.DecisionServicer(engine_free_service, servicer_module.ConcurrencyLimit(1))
    assert servicer.stream_batch == 100


@pytest.fixture
def engine_free_service() -> DecisionService:
    """A service that is never called: only its batch limit is read."""
    return DecisionService(store=None, rules=None, clock=FixedClock(T0), max_batch_events=100)  # type: ignore[arg-type]
