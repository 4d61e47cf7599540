"""Webhook delivery of outbound messages, against real Redis and a real HTTP receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.api.webhook import WebhookSender
from engine.state import keys
from engine.state.outbound_store import GROUP, OutboundStore
from tests.webhook_receiver import TRUNCATED, Receiver

pytestmark = pytest.mark.anyio


def emit(redis_sync: Redis, message_id: str, customer_id: str = "alice") -> None:
    message = {"id": message_id, "customer_id": customer_id, "channel": "mobile_app", "treatment": "apology_upgrade"}
    redis_sync.xadd(keys.STREAM_OUTBOUND, {"m": orjson.dumps(message)})


def pending(redis_sync: Redis) -> int:
    return int(redis_sync.xpending(keys.STREAM_OUTBOUND, GROUP)["pending"])


async def sender(redis_async: aioredis.Redis, receiver: Receiver, **options: Any) -> WebhookSender:
    store = OutboundStore(redis_async)
    await store.ensure_group()
    return WebhookSender(store, receiver.url, consumer="test-sender", timeout_s=2.0, **options)


async def test_each_message_is_posted_once_with_its_id_as_idempotency_key(
    redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver
) -> None:
    emit(redis_sync, "before-the-webhook")  # emitted before any sender existed: not meant for it
    s = await sender(redis_async, receiver)
    emit(redis_sync, "flight_delay_apology:alice:e1")
    emit(redis_sync, "flight_delay_apology:bob:e1", "bob")
    assert await s.step() == 2
    # Sent side by side, so in no particular order.
    assert sorted(receiver.ids()) == ["flight_delay_apology:alice:e1", "flight_delay_apology:bob:e1"]
    body, headers = next((b, h) for b, h in receiver.received if b["customer_id"] == "alice")
    assert body["treatment"] == "apology_upgrade" and body["customer_id"] == "alice"
    assert headers["idempotency-key"] == "flight_delay_apology:alice:e1"
    assert headers["content-type"] == "application/json"
    assert pending(redis_sync) == 0, "delivered messages are acknowledged"
    assert await s.step() == 0 and len(receiver.received) == 2, "nothing is sent twice"


async def test_a_failed_post_stays_pending_and_is_sent_again(
    redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver
) -> None:
    s = await sender(redis_async, receiver, retry_after_s=0.0)
    emit(redis_sync, "m1")
    receiver.statuses = [503]
    assert await s.step() == 0
    assert pending(redis_sync) == 1, "not acknowledged after a 503"
    assert await s.step() == 1
    assert receiver.ids() == ["m1", "m1"] and pending(redis_sync) == 0
    assert redis_sync.xlen(keys.STREAM_OUTBOUND_DEAD) == 0


async def test_an_unreachable_receiver_loses_nothing(redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver) -> None:
    store = OutboundStore(redis_async)
    await store.ensure_group()
    down = WebhookSender(store, "http://127.0.0.1:1/hook", consumer="a", timeout_s=0.5, retry_after_s=0.0)
    emit(redis_sync, "m1")
    assert await down.step() == 0 and pending(redis_sync) == 1
    # Another sender (another process, say) takes the message over once it has waited.
    up = WebhookSender(store, receiver.url, consumer="b", retry_after_s=0.0)
    assert await up.step() == 1 and receiver.ids() == ["m1"] and pending(redis_sync) == 0


async def test_a_message_the_receiver_refuses_or_that_runs_out_of_attempts_is_dead_lettered(
    redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver
) -> None:
    s = await sender(redis_async, receiver, retry_after_s=0.0, max_attempts=2)
    emit(redis_sync, "refused")
    receiver.statuses = [400]
    await s.step()
    emit(redis_sync, "flaky")
    receiver.statuses = [500, 500, 200]
    await s.step()
    await s.step()
    assert pending(redis_sync) == 0, "given-up messages do not block the ones behind them"
    dead = {orjson.loads(f[b"m"])["id"]: f for _, f in redis_sync.xrange(keys.STREAM_OUTBOUND_DEAD)}
    assert set(dead) == {"refused", "flaky"}
    assert dead["refused"][b"reason"] == b"HTTP 400"
    assert dead["flaky"][b"attempts"] == b"2" and b"HTTP 500" in dead["flaky"][b"reason"]
    assert receiver.ids() == ["refused", "flaky", "flaky"], "a 400 is not retried; a 500 is, up to the limit"
    assert s.dead == 2


async def test_a_garbled_answer_is_a_failed_attempt_and_the_sender_keeps_going(
    redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver
) -> None:
    s = await sender(redis_async, receiver, retry_after_s=0.0)
    emit(redis_sync, "m1")
    receiver.statuses = [TRUNCATED]
    assert await s.step() == 0 and pending(redis_sync) == 1
    assert await s.step() == 1 and pending(redis_sync) == 0
    assert receiver.ids() == ["m1", "m1"]


async def test_the_sender_loop_survives_a_bug_and_delivers_afterwards(
    redis_async: aioredis.Redis, redis_sync: Redis, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await sender(redis_async, receiver, retry_after_s=0.0)
    real = s.step
    calls = 0

    async def flaky(block_ms: int | None = None) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await real(block_ms=block_ms)

    monkeypatch.setattr(s, "step", flaky)
    stop = asyncio.Event()
    running = asyncio.create_task(s.run(stop, poll_ms=50))
    emit(redis_sync, "after-the-bug")
    for _ in range(100):
        if receiver.received:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await running
    assert receiver.ids() == ["after-the-bug"] and calls >= 2
