"""The timer worker a serving process starts on its own (NBA_TIMER_WORKER=true, the default)
fires due timers without anyone calling it."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from redis import Redis

from engine.api.http.app import create_app
from engine.bootstrap import open_engine
from engine.clock import FixedClock
from engine.settings import Settings
from engine.state import keys

MINUTE = 60_000
DAY = 86_400_000


@pytest.mark.anyio
async def test_the_in_process_timer_worker_fires_a_due_timer(settings: Settings, clock: FixedClock, redis_sync: Redis) -> None:
    served = settings.model_copy(update={"timer_worker": True, "rules_watch": False})
    hour_ago = clock.now_ms() - 60 * MINUTE  # the abandonment timer (30 minutes) is due already
    async with open_engine(served, clock=clock) as engine:
        app = create_app(served, engine=engine)
        app.state.engine = engine  # what the lifespan does when the app starts on its own
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://nba") as client:
            body = {"event_id": "tw1", "customer_id": "ben", "type": "cart_add", "ts": hour_ago, "attributes": {"sku": "A"}}
            assert (await client.post("/v1/events", json=body)).status_code == 202
        for _ in range(100):  # up to 5 s; the worker polls every 0.2 s
            if redis_sync.hexists(keys.flags("ben"), "cart_abandoned"):
                break
            await asyncio.sleep(0.05)
    raw = redis_sync.hget(keys.flags("ben"), "cart_abandoned")
    assert raw is not None, "no timer fired within 5 s"
    assert int(raw) == hour_ago + 30 * MINUTE + 3 * DAY
