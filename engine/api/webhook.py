"""Outbound messages POSTed to a webhook, for push, email and SMS senders that do not read Redis.

Every message a trigger emits (engine.rules.triggers) is appended to the outbound stream. With
NBA_OUTBOUND_WEBHOOK_URL set, serving processes and `nba worker` also POST each one there as
JSON, sharing the stream through a consumer group so each message is sent by one of them.

Delivery is at least once: a message is acknowledged only after a 2xx answer, so a failed POST,
a timeout or a sender that dies leaves it pending, and it is sent again once it has waited
`retry_after_s`. Every POST carries the message id as `Idempotency-Key` (the same id however
often the message is sent or emitted), so the receiver can drop repeats. A 4xx answer other
than 408, 425 or 429 says the receiver will never take the message, and so does running out of
attempts; either way the message goes to the dead-letter stream (`s:outbound:dead`) with the
reason, where an operator can see and replay it, instead of blocking the ones behind it.
Messages are sent side by side, so a receiver must not rely on their order (a retried one
arrives after later ones anyway).

The POST itself uses the standard library in a worker thread: messages are few (one per trigger
firing), and a thread per request in flight costs less than another HTTP client dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

import orjson

from engine import __version__
from engine.errors import StoreUnavailable
from engine.state.outbound_store import OutboundEntry, OutboundStore

log = logging.getLogger("engine.webhook")

RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    permanent: bool
    """The receiver refused the message for good: sending it again cannot help."""
    detail: str


def post(url: str, body: bytes, idempotency_key: str, timeout_s: float) -> Delivery:
    """One POST, blocking (run it in a thread). The URL is the operator's setting, never a rule
    file's: marketers cannot make the engine call arbitrary addresses."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "User-Agent": f"nba-engine/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return Delivery(True, False, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX
        return Delivery(False, permanent, f"HTTP {exc.code}")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        # Anything the network or a misbehaving receiver can throw (a refused connection, a
        # truncated or garbled answer) is a failed attempt to retry, never the sender's end.
        return Delivery(False, False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")


class WebhookSender:
    def __init__(
        self,
        store: OutboundStore,
        url: str,
        *,
        consumer: str,
        timeout_s: float = 2.0,
        retry_after_s: float = 5.0,
        max_attempts: int = 8,
        batch: int = 50,
    ) -> None:
        self.store = store
        self.url = url
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.retry_after_ms = int(retry_after_s * 1000)
        self.max_attempts = max_attempts
        self.batch = batch
        self.sent = 0
        self.failed = 0
        self.dead = 0

    async def step(self, block_ms: int | None = None) -> int:
        """Send what waited long enough for another try, then what is new (waiting up to
        `block_ms` for it); returns how many messages were delivered."""
        entries = await self.store.claim_stale(self.consumer, self.retry_after_ms, self.batch)
        if len(entries) < self.batch:
            entries += await self.store.read_new(self.consumer, self.batch - len(entries), block_ms)
        if not entries:
            return 0
        results = await asyncio.gather(*(self._send(e) for e in entries))
        delivered = [e.entry_id for e, d in zip(entries, results, strict=True) if d.ok]
        await self.store.ack(delivered)
        for entry, result in zip(entries, results, strict=True):
            if result.ok:
                continue
            self.failed += 1
            if result.permanent or entry.attempts >= self.max_attempts:
                reason = result.detail if result.permanent else f"{entry.attempts} attempts; last: {result.detail}"
                await self.store.dead_letter(entry, reason)
                self.dead += 1
                log.warning("outbound message %s given up (%s); kept on the dead-letter stream", entry.message.get("id"), reason)
            else:
                log.warning("outbound message %s not delivered (%s); retrying", entry.message.get("id"), result.detail)
        self.sent += len(delivered)
        return len(delivered)

    async def _send(self, entry: OutboundEntry) -> Delivery:
        body = orjson.dumps(entry.message)
        return await asyncio.to_thread(post, self.url, body, str(entry.message.get("id", entry.entry_id)), self.timeout_s)

    async def run(self, stop: asyncio.Event, poll_ms: int = 1_000) -> None:
        """Send until `stop` is set; a Redis outage is waited out, not fatal."""
        while not stop.is_set():
            try:
                await self.store.ensure_group()
                break
            except StoreUnavailable as exc:
                log.warning("webhook sender waiting for Redis: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_ms / 1000)
        while not stop.is_set():
            try:
                await self.step(block_ms=poll_ms)
            except StoreUnavailable as exc:
                log.warning("webhook sender: %s; retrying", exc)
            except Exception:
                # A bug must not stop delivery for good (nor, in `nba worker`, the timers beside
                # it): what was not acknowledged is sent again on the next round.
                log.exception("webhook sender failed; retrying")
            else:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_ms / 1000)
