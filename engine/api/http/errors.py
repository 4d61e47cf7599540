"""Every error leaves the HTTP API as JSON naming what was wrong; nothing leaks a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.http.schemas import NUMBER_ERROR
from engine.errors import EngineError

log = logging.getLogger("engine.http")

_TAGS = {"one", "batch", "body"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _field(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if p in _TAGS and not parts:
            continue
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p not in _TAGS:
            parts.append(str(p))
    return ".".join(parts) or "body"


def _error_field(error: Mapping[str, Any]) -> str:
    """The field an error names: its location, and for a value inside free-form JSON (whose
    validator can only report the field as a whole) the path below it, so `attributes.a.b`."""
    field = _field(tuple(error["loc"]))
    if error.get("type") == NUMBER_ERROR:
        field += str((error.get("ctx") or {}).get("at", ""))
    return field


def _validation_error(exc: Exception) -> tuple[str, Response]:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _error_field(e), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    body = {"error": "invalid_input", "message": f"{first['field']}: {first['message']}", "field": first["field"]}
    return "invalid_input", json_response({**body, "errors": errors}, 422)


def _engine_error(exc: Exception) -> tuple[str, Response]:
    assert isinstance(exc, EngineError)
    response = json_response(exc.to_dict(), exc.http_status)
    if exc.http_status == 503:
        # Shed load, Redis away, not ready yet: all pass. A second later is a fair first retry,
        # and saying so keeps clients from hammering a server that is already struggling.
        response.headers["Retry-After"] = "1"
    return exc.code, response


def _unexpected(exc: Exception) -> tuple[str, Response]:
    log.exception("unhandled error", exc_info=exc)
    return "internal", json_response({"error": "internal", "message": "internal error; it has been logged"}, 500)


def install_error_handlers(app: FastAPI, operations: Mapping[str, str]) -> None:
    """Every error a client gets is shaped here and counted by operation and error code;
    `operations` names the operation of each endpoint function (others are not counted)."""

    def handler(shape: Callable[[Exception], tuple[str, Response]]) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def handle(request: Request, exc: Exception) -> Response:
            error, response = shape(exc)
            operation = operations.get(getattr(request.scope.get("endpoint"), "__name__", ""))
            engine = getattr(request.app.state, "engine", None)  # absent only before start-up finished
            if operation is not None and engine is not None:
                engine.service.count_error(operation, error)
            return response

        return handle

    app.add_exception_handler(RequestValidationError, handler(_validation_error))
    app.add_exception_handler(EngineError, handler(_engine_error))
    app.add_exception_handler(Exception, handler(_unexpected))


class BodySizeLimit:
    """Refuses bodies over the limit with 413, by header when declared and by counting when chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = orjson.dumps({"error": "payload_too_large" if status == 413 else "bad_request", "message": message})
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await self._refuse(send, 413, f"request body of {declared} bytes is over the {self.max_bytes}-byte limit")
                    return
        received = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            # Frameworks turn exceptions raised while reading a body into their own 400, so on
            # overflow we answer 413 ourselves and tell the app the client has gone away.
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not refused:
                        refused = True
                        await self._refuse(send, 413, f"request body is over the {self.max_bytes}-byte limit")
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; whatever the app says after that is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
