"""Every error leaves the HTTP API as JSON naming what was wrong; nothing leaks a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import EngineError, Overloaded

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


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return json_response(
        {"error": "invalid_input", "message": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors},
        422,
    )


async def _engine_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    response = json_response(exc.to_dict(), exc.http_status)
    if isinstance(exc, Overloaded):
        response.headers["Retry-After"] = "1"  # load is shed in bursts; a second later is a fair first retry
    return response


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return json_response({"error": "internal", "message": "internal error; it has been logged"}, 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(Exception, _unexpected)


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
