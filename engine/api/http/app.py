"""The HTTP front end: parse, call the decision service, map errors. No decision logic here.

Responses are serialised with orjson straight from the core's dataclasses; FastAPI's default
response path (validate against the model, then encode) would cost more than the decision.
The response models are still declared, so the OpenAPI document at /docs is complete.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from engine import __version__, domain
from engine.api.http import schemas
from engine.api.http.errors import BodySizeLimit, install_error_handlers, json_response
from engine.api.limits import ConcurrencyLimit
from engine.bootstrap import Engine, open_engine
from engine.clock import Clock
from engine.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from engine.reports.run import run_arms, run_roi
from engine.settings import Settings

log = logging.getLogger("engine.http")

ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": schemas.ErrorResponse},
    413: {"model": schemas.ErrorResponse},
    422: {"model": schemas.ErrorResponse},
    503: {"model": schemas.ErrorResponse},
}


async def get_engine(request: Request) -> Engine:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
    # per request for what is an attribute lookup.
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
_Body = TypeVar("_Body")


def _decision_payload(d: domain.Decision) -> dict[str, object]:
    payload: dict[str, object] = {
        "decision_id": d.decision_id,
        "customer_id": d.customer_id,
        "channel": d.channel,
        "placement": d.placement,
        "treatments": d.treatments,
        "rules_version": d.rules_version,
        "degraded": d.degraded,
        "fallback": d.fallback,
        "model_version": d.model_version,
        "cart_adjustments": d.cart_adjustments,
        "arm": d.arm,
        "recent": d.recent,
    }
    if d.verdicts:
        payload["explanations"] = d.verdicts
    if d.customer_value is not None:
        payload["customer_value"] = d.customer_value
    return payload


# Bodies are parsed in one pass by pydantic's JSON validator, not through FastAPI's
# json.loads-then-validate dependency machinery, which cost a measurable share of a decision.
DECISION: TypeAdapter[schemas.DecisionRequest] = TypeAdapter(schemas.DecisionRequest)
EVENTS: TypeAdapter[schemas.EventRequest | schemas.EventBatchRequest] = TypeAdapter(schemas.EventsBody)
FEEDBACK: TypeAdapter[schemas.FeedbackRequest] = TypeAdapter(schemas.FeedbackRequest)


def _json_body(adapter: TypeAdapter[Any]) -> dict[str, object]:
    """Document a body that the endpoint parses itself."""
    schema = adapter.json_schema()  # self-contained: nested models are under its own $defs
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _parse(adapter: TypeAdapter[_Body], raw: bytes) -> _Body:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _event(e: schemas.EventRequest) -> domain.Event:
    return domain.Event(e.event_id, e.customer_id, e.type, e.ts, e.channel, e.attributes)


def _admin_refusal(settings: Settings, authorization: str | None) -> str | None:
    """Why an admin request is refused (None: allowed). A token, when set, is always required."""
    if settings.admin_token is None:
        if settings.env == "development":
            return None
        return "admin endpoints are disabled: set NBA_ADMIN_TOKEN and send `Authorization: Bearer <token>`"
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "admin endpoints need `Authorization: Bearer <token>` (the value of NBA_ADMIN_TOKEN)"
    if not hmac.compare_digest(token.encode(), settings.admin_token.get_secret_value().encode()):
        return "the admin token does not match NBA_ADMIN_TOKEN"
    return None


RELOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The set was swapped (`changed`) or is unchanged: `{ok, version, changed, problems: []}`."},
    403: {"model": schemas.ErrorResponse, "description": "No admin token, or the wrong one."},
    422: {"description": "Refused: `{ok: false, version, problems}`; `version` is the set still serving."},
}


OPERATIONS = {
    "decide": "decide",
    "record_events": "events",
    "record_feedback": "feedback",
    "customer": "customer",
    "voice": "voice",
}
"""The API operation of each endpoint function, for counting errors (engine.decision.service.API_OPERATIONS)."""


def create_app(settings: Settings | None = None, *, engine: Engine | None = None, clock: Clock | None = None) -> FastAPI:
    """Build the app. Pass `engine` to share one already built (tests, or HTTP beside gRPC)."""
    settings = settings or (engine.settings if engine else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.engine = engine or await stack.enter_async_context(open_engine(settings, clock=clock))
            yield

    app = FastAPI(
        title="NBA engine",
        version=__version__,
        description="Next-best-action decisions, events and feedback.",
        lifespan=lifespan,
    )
    install_error_handlers(app, OPERATIONS)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Requests that touch Redis or decide are capped; health, readiness and metrics are not.
    limit = ConcurrencyLimit(settings.max_concurrent_requests)

    if settings.bench_endpoints:

        @app.get("/bench/bare/{customer_id}", include_in_schema=False)
        async def bare(http_request: Request) -> Response:
            # Written like the decision endpoint (no parameter or dependency injection) and routed
            # first, so the baseline is the same stack doing less work, not a slower way of writing
            # an endpoint or a longer route search.
            engine: Engine = http_request.app.state.engine
            customer_id: str = http_request.path_params["customer_id"]
            with limit:
                return Response(await engine.store.bare_read(customer_id), media_type="application/json")

        @app.get("/bench/bare-redis-py/{customer_id}", include_in_schema=False)
        async def bare_redis_py(customer_id: Annotated[str, Path(max_length=64)], engine: EngineDep) -> Response:
            # The conventional bare endpoint, written as Redis-backed endpoints usually are:
            # FastAPI resolves the path parameter and the engine, redis-py's pooled client reads,
            # and the answer is pre-serialised orjson bytes.
            with limit:
                return Response(await engine.store.bare_read_redis_py(customer_id), media_type="application/json")

    @app.post(
        "/v1/decisions",
        response_model=schemas.DecisionResponse,
        responses=ERRORS,
        tags=["decisions"],
        openapi_extra=_json_body(DECISION),
    )
    async def decide(http_request: Request) -> Response:
        """What to show this customer, now, on this channel and placement."""
        body = _parse(DECISION, await http_request.body())
        engine: Engine = http_request.app.state.engine
        request = domain.DecisionRequest(
            body.customer_id, body.channel, body.placement, body.context, body.limit, body.event, body.explain, body.recent
        )
        with limit:
            return json_response(_decision_payload(await engine.service.decide(request)))

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=schemas.IngestResponse,
        responses=ERRORS,
        tags=["events"],
        openapi_extra=_json_body(EVENTS),
    )
    async def record_events(http_request: Request) -> Response:
        """One event, or `{events: [...]}` (a batch is validated whole before any of it is applied)."""
        body = _parse(EVENTS, await http_request.body())
        engine: Engine = http_request.app.state.engine
        events = [_event(e) for e in body.events] if isinstance(body, schemas.EventBatchRequest) else [_event(body)]
        with limit:
            result = await engine.service.record_events(events)
        return json_response({"accepted": result.accepted, "duplicates": result.duplicates}, 202)

    @app.post(
        "/v1/feedback",
        status_code=202,
        response_model=schemas.FeedbackResponse,
        responses=ERRORS,
        tags=["feedback"],
        openapi_extra=_json_body(FEEDBACK),
    )
    async def record_feedback(http_request: Request) -> Response:
        """The customer's response to a treatment of an earlier decision."""
        body = _parse(FEEDBACK, await http_request.body())
        engine: Engine = http_request.app.state.engine
        fb = domain.Feedback(body.feedback_id, body.decision_id, body.treatment_id, body.outcome, body.value, body.ts)
        with limit:
            result = await engine.service.record_feedback(fb)
        return json_response({"accepted": result.accepted, "duplicate": result.duplicate}, 202)

    @app.get("/v1/customers/{customer_id}", response_model=schemas.CustomerResponse, responses=ERRORS, tags=["customers"])
    async def customer(customer_id: Annotated[str, Path(max_length=64)], engine: EngineDep) -> Response:
        """Profile, cart, active suppressions and recent interactions across channels."""
        with limit:
            return json_response(await engine.service.customer_view(customer_id))

    @app.get("/v1/voice", response_model=schemas.VoiceResponse, responses=ERRORS, tags=["customers"])
    async def voice(engine: EngineDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
        """Voice of the customer: per topic, what was liked, disliked and suggested in the last `days` days."""
        with limit:
            return json_response(await engine.service.voice(days))

    @app.get("/v1/reports/roi", responses=ERRORS, tags=["reports"])
    async def roi(engine: EngineDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
        """ROI over the last `days` days at four levels: campaign, brand, customer spend by tier, and
        the change in equity and CLV of treated customers against the holdout (attribution rule:
        see engine.reports.roi)."""
        rules = engine.rules.current
        values = engine.service.values_for(rules)
        report = await run_roi(engine.store.client, rules, values, engine.clock.now_ms(), days)
        return json_response(report.to_dict())

    @app.get("/v1/reports/arms", responses=ERRORS, tags=["reports"])
    async def arms(engine: EngineDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
        """Experiment arms over the last `days` days against the champion: customers, decisions,
        shows, acceptance rate and value per decision, each difference with a 95 % interval."""
        report = await run_arms(engine.store.client, engine.clock.now_ms(), days)
        return json_response(report.to_dict())

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """The process is up (liveness)."""
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["operations"])
    async def readyz(engine: EngineDep) -> Response:
        """Rules loaded and Redis answering (readiness)."""
        ok, detail = await engine.readiness()
        return json_response({"status": "ready" if ok else "not_ready", **detail}, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(engine: EngineDep) -> Response:
        """Prometheus text format: decisions by channel and result and their time, events and feedback
        taken in, errors answered, store failures, model versions served, rule reloads."""
        return Response(engine.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post("/v1/admin/rules/reload", responses=RELOAD_RESPONSES, tags=["admin"])
    async def reload_rules(engine: EngineDep, authorization: Annotated[str | None, Header()] = None) -> Response:
        """Load the rules directory again; the new set serves only if it loads and passes the gate."""
        refusal = _admin_refusal(engine.settings, authorization)
        if refusal is not None:
            log.warning("admin request refused: %s", refusal)
            return json_response({"error": "forbidden", "message": refusal}, 403)
        outcome = await engine.reloader.reload("admin request")
        body = {"ok": outcome.ok, "version": outcome.version, "changed": outcome.changed, "problems": list(outcome.problems)}
        return json_response(body, 200 if outcome.ok else 422)

    return app
