"""Every error leaves the gRPC API through `abort_for`: the one mapping from exceptions to status.

Engine errors already carry their gRPC status name (engine/errors.py), so the mapping is a
lookup; the message leads with the field at fault, as the HTTP error body's `field` does, and
the trailing metadata repeats the HTTP body's `error` and `field` for clients that branch on
them. Anything else is a bug: it is logged with its stack trace and the client gets INTERNAL
with a fixed message (an unhandled exception would reach the client as UNKNOWN, with the
exception's text).
"""

from __future__ import annotations

import logging
import re
from typing import NoReturn

import grpc
from grpc import aio

from engine.errors import EngineError

log = logging.getLogger("engine.grpc")

INTERNAL_MESSAGE = "internal error; it has been logged"


class DeadlineExceeded(EngineError):
    """The call's deadline leaves no time to decide, or the decision outran it."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"
    code = "deadline_exceeded"


MAX_DETAILS_BYTES = 1_024
MAX_FIELD_CHARS = 256
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def _capped_details(details: str) -> str:
    """The status message travels percent-encoded in trailing metadata, which the client drops
    whole beyond 8 KB (soft) or 16 KB (hard limit): the call would then end RESOURCE_EXHAUSTED,
    with no word of the field at fault. Messages quote client values shortened at the source
    (engine.errors.quoted); this bounds whatever still slips through, in UTF-8 bytes because
    each non-ASCII byte grows threefold when percent-encoded."""
    encoded = details.encode()
    if len(encoded) <= MAX_DETAILS_BYTES:
        return details
    return encoded[: MAX_DETAILS_BYTES - 3].decode(errors="ignore") + "…"


def _field_value(field: str) -> str:
    """A field path may hold a client's key (`context.<key>`); plain metadata values must be
    printable ASCII, and a long one would be dropped like a long message."""
    safe = _NOT_PRINTABLE_ASCII.sub("?", field)
    return safe if len(safe) <= MAX_FIELD_CHARS else safe[: MAX_FIELD_CHARS - 3] + "..."


def status_for(exc: EngineError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """Status code, message and trailing metadata for an engine error, each short enough to arrive."""
    code = getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.INTERNAL)
    field = _field_value(exc.field) if exc.field else None
    details = _capped_details(f"{field}: {exc.message}" if field else exc.message)
    metadata: tuple[tuple[str, str], ...] = (("nba-error", exc.code),)
    if field:
        metadata += (("nba-field", field),)
    return code, details, metadata


async def abort_for(context: aio.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """End the call with the status `exc` maps to (always raises)."""
    if isinstance(exc, aio.AbortError):
        raise exc  # the handler already chose a status
    if isinstance(exc, EngineError):
        code, details, metadata = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s failed: %s", method, exc.message)
        await context.abort(code, details, metadata)
    log.exception("unhandled error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, (("nba-error", "internal"),))
