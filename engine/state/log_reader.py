"""Reading the decision and feedback streams back, for offline evaluation over what really ran.

The streams can hold millions of entries, so they are paged with XRANGE in bounded chunks
rather than read whole, and bounded in time by the entry ids themselves (an entry id starts with
the milliseconds at which Redis appended it), which keeps a time window an index lookup instead
of a scan. Entry times are when the record was appended, which can differ slightly from the
``ts`` inside it.

Feedback arrives after its decision, often long after, so :func:`read_logs` reads feedback from
the start of the window to the end of the stream and keeps only the entries that answer a
decision it read: memory stays bounded by the decisions asked for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from engine.errors import InvalidInput, StoreUnavailable
from engine.state import keys

__all__ = ["DEFAULT_CHUNK", "LogRead", "iter_stream", "read_decisions", "read_feedback", "read_logs"]

log = logging.getLogger("engine.logs")

DEFAULT_CHUNK = 1_000
_MAX_SEQ = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class LogRead:
    """What :func:`read_logs` found; ``unreadable`` counts entries skipped as not valid JSON records."""

    decisions: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    unreadable: int = 0


def _check(since_ms: int | None, until_ms: int | None, max_count: int | None, chunk: int) -> None:
    if since_ms is not None and since_ms < 0:
        raise InvalidInput(f"since_ms must be >= 0, got {since_ms!r}", field="since_ms")
    if until_ms is not None and until_ms < 0:
        raise InvalidInput(f"until_ms must be >= 0, got {until_ms!r}", field="until_ms")
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise InvalidInput(f"until_ms ({until_ms}) is before since_ms ({since_ms})", field="until_ms")
    if max_count is not None and max_count < 0:
        raise InvalidInput(f"max_count must be >= 0, got {max_count!r}", field="max_count")
    if chunk < 1:
        raise InvalidInput(f"chunk must be >= 1, got {chunk!r}", field="chunk")


def _after(entry_id: str) -> str:
    """The smallest id after ``entry_id``; computed rather than using ``(id`` so Redis < 6.2 works too."""
    ms, _, seq = entry_id.partition("-")
    n = int(seq or 0)
    return f"{int(ms) + 1}-0" if n >= _MAX_SEQ else f"{ms}-{n + 1}"


async def iter_stream(
    client: aioredis.Redis,
    stream: str,
    field: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    max_count: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    skipped: list[int] | None = None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(entry id, parsed JSON of field)`` in stream order, both time bounds inclusive.

    An entry without the field or with unparsable JSON is skipped (and counted in
    ``skipped[0]`` when given) rather than ending the read: one damaged entry should not make a
    month of logs unreadable, but the count lets the caller say that something was left out.
    """
    _check(since_ms, until_ms, max_count, chunk)
    start = "-" if since_ms is None else f"{since_ms}-0"
    end = "+" if until_ms is None else f"{until_ms}-{_MAX_SEQ}"
    wanted = field.encode()
    yielded = 0
    while max_count is None or yielded < max_count:
        count = chunk if max_count is None else min(chunk, max_count - yielded)
        try:
            entries = await client.xrange(stream, min=start, max=end, count=count)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"reading {stream}: {exc}") from exc
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            payload = fields.get(wanted, fields.get(field))
            try:
                parsed = orjson.loads(payload) if payload is not None else None
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                log.warning("%s entry %s has no readable `%s` record; skipped", stream, entry_id, field)
                if skipped is not None:
                    skipped[0] += 1
                continue
            yield entry_id, parsed
            yielded += 1
        if len(entries) < count:
            return
        start = _after(entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else str(entries[-1][0]))


async def read_decisions(
    client: aioredis.Redis,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    max_count: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> AsyncIterator[dict[str, Any]]:
    """Decision records (``StoredDecision`` as dicts) appended within the window."""
    async for _, record in iter_stream(
        client, keys.STREAM_DECISIONS, "d", since_ms=since_ms, until_ms=until_ms, max_count=max_count, chunk=chunk
    ):
        yield record


async def read_feedback(
    client: aioredis.Redis,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    max_count: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> AsyncIterator[dict[str, Any]]:
    """Feedback entries (feedback_id, decision_id, treatment_id, customer_id, outcome, value, ts)."""
    async for _, entry in iter_stream(
        client, keys.STREAM_FEEDBACK, "f", since_ms=since_ms, until_ms=until_ms, max_count=max_count, chunk=chunk
    ):
        yield entry


async def read_logs(
    client: aioredis.Redis,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    max_decisions: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> LogRead:
    """Decisions within the window, and every feedback entry (up to now) that answers one of them."""
    skipped = [0]
    decisions = [
        record
        async for _, record in iter_stream(
            client,
            keys.STREAM_DECISIONS,
            "d",
            since_ms=since_ms,
            until_ms=until_ms,
            max_count=max_decisions,
            chunk=chunk,
            skipped=skipped,
        )
    ]
    ids = {d.get("decision_id") for d in decisions}
    feedback = [
        entry
        async for _, entry in iter_stream(client, keys.STREAM_FEEDBACK, "f", since_ms=since_ms, chunk=chunk, skipped=skipped)
        if entry.get("decision_id") in ids
    ]
    return LogRead(decisions, feedback, skipped[0])
