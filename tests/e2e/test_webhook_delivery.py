"""The flight-delay push reaches a webhook: from the served API through a serving process's
sender, and through `nba worker`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from engine.api.http.app import create_app
from engine.cli import seed_customers
from engine.clock import FixedClock
from engine.settings import Settings
from engine.state import keys
from tests.conftest import EXAMPLE_RULES
from tests.e2e.conftest import Channel
from tests.processes import NbaProcess, wait_for
from tests.webhook_receiver import Receiver


@pytest.fixture
def pushed(settings: Settings, clock: FixedClock, redis_sync: Redis, receiver: Receiver) -> Iterator[Channel]:
    """The served app with a webhook configured; its in-process sender posts to `receiver`."""
    configured = settings.model_copy(update={"outbound_webhook_url": receiver.url, "outbound_webhook_retry_s": 0.0})
    asyncio.run(seed_customers(configured, 0, 7, now_ms=clock.now_ms()))
    with TestClient(create_app(configured, clock=clock), raise_server_exceptions=False) as client:
        yield Channel(client, clock)


def test_a_long_flight_delay_is_pushed_to_the_webhook_and_a_short_one_is_not(
    pushed: Channel, receiver: Receiver, redis_sync: Redis
) -> None:
    pushed.event("ben", "flight_delayed", delay_minutes=30, flight="AF1")
    pushed.event("alice", "flight_delayed", delay_minutes=50, flight="AF123")
    wait_for(lambda: receiver.received, timeout_s=10)
    time.sleep(0.3)  # anything else the sender had would have arrived by now
    [(body, headers)] = receiver.received
    assert body["customer_id"] == "alice" and body["treatment"] == "apology_upgrade" and body["channel"] == "push"
    assert headers["idempotency-key"] == body["id"]
    # The same message is on the outbound stream for readers of Redis.
    streamed = [orjson.loads(fields[b"m"])["id"] for _, fields in redis_sync.xrange(keys.STREAM_OUTBOUND)]
    assert streamed == [body["id"]]


def test_nba_worker_sends_outbound_messages_to_the_webhook(
    channel: Channel, redis_url: str, redis_sync: Redis, receiver: Receiver
) -> None:
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(EXAMPLE_RULES), "NBA_OUTBOUND_WEBHOOK_URL": receiver.url}
    with NbaProcess("worker", env=env) as worker:
        worker.wait_output("sending outbound messages", timeout_s=60)
        channel.event("alice", "flight_delayed", delay_minutes=120, flight="AF9")
        wait_for(lambda: receiver.received, timeout_s=20)
        assert worker.stop() == 0
    [(body, _)] = receiver.received
    assert body["customer_id"] == "alice" and body["treatment"] == "apology_upgrade"
    assert int(redis_sync.xpending(keys.STREAM_OUTBOUND, "webhook")["pending"]) == 0
