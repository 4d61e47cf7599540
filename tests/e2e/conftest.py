"""The served HTTP app over real Redis, with the example rule set and a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from redis import Redis

from engine.api.http.app import create_app
from engine.bootstrap import Engine, open_engine
from engine.cli import seed_customers
from engine.clock import FixedClock
from engine.decision.service import DecisionService
from engine.settings import Settings
from tests.conftest import EXAMPLE_MODELS, EXAMPLE_RULES


class Channel:
    """Talks to the API the way a channel does, and remembers nothing but an id counter."""

    _ids = itertools.count(1)

    def __init__(self, http: TestClient, clock: FixedClock) -> None:
        self.http = http
        self.clock = clock

    def event(self, customer_id: str, type_: str, *, channel: str | None = None, **attributes: Any) -> dict[str, Any]:
        body = {"event_id": f"ev-{next(self._ids)}", "customer_id": customer_id, "type": type_, "attributes": attributes}
        if channel:
            body["channel"] = channel
        response = self.http.post("/v1/events", json=body)
        assert response.status_code == 202, response.text
        return body

    def decide(self, customer_id: str, channel: str, **extra: Any) -> dict[str, Any]:
        response = self.http.post("/v1/decisions", json={"customer_id": customer_id, "channel": channel, **extra})
        assert response.status_code == 200, response.text
        return response.json()

    def offered(self, customer_id: str, channel: str, **extra: Any) -> list[str]:
        return [t["id"] for t in self.decide(customer_id, channel, **extra)["treatments"]]

    def fire_timers(self) -> int:
        """Fire every timer due at the test clock's time, as the timer worker would."""
        engine = self.http.app.state.engine  # type: ignore[attr-defined]
        return int(self.http.portal.call(engine.timers.fire_due))  # type: ignore[union-attr]

    def view(self, customer_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/customers/{customer_id}")
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.contextmanager
def held_customer_views(service: DecisionService) -> Iterator[tuple[asyncio.Event, asyncio.Event]]:
    """Within the block, a customer view sets `entered` and then waits for `release`: a request
    held in flight, for tests of what happens beside it."""
    entered, release = asyncio.Event(), asyncio.Event()
    real = service.customer_view

    async def held(customer_id: str) -> Any:
        entered.set()
        await release.wait()
        return await real(customer_id)

    service.customer_view = held  # type: ignore[method-assign]
    try:
        yield entered, release
    finally:
        service.customer_view = real  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def greedy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model specs, but greedy and without a holdout, so scenarios are deterministic.

    Exploration and the holdout have tests of their own; here a scenario's expected offer must
    not depend on a random draw.
    """
    directory = tmp_path_factory.mktemp("models")
    for path in EXAMPLE_MODELS.glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        spec["exploration"] = {"default": {"policy": "greedy"}}
        spec["holdout_share"] = 0.0
        (directory / path.name).write_text(yaml.safe_dump(spec))
    return directory


@pytest.fixture
def settings(redis_url: str, greedy_models: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        rules_dir=EXAMPLE_RULES,
        models_dir=greedy_models,
        learner=False,
        timer_worker=False,  # tests fire timers explicitly, after moving the clock
        random_seed=7,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def http(settings: Settings, clock: FixedClock, redis_sync: Redis) -> Iterator[TestClient]:
    """The app, with the named demo customers (alice, ben, carla, dev) seeded as `nba seed` does."""
    asyncio.run(seed_customers(settings, 0, 7, now_ms=clock.now_ms()))
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def channel(http: TestClient, clock: FixedClock) -> Channel:
    return Channel(http, clock)


@pytest.fixture
async def engine(settings: Settings, clock: FixedClock, redis_sync: Redis) -> AsyncIterator[Engine]:
    """The engine over the (emptied) test Redis, with the named demo customers seeded as `nba seed` does."""
    await seed_customers(settings, 0, 7, now_ms=clock.now_ms())
    async with open_engine(settings, clock=clock) as engine:
        yield engine
