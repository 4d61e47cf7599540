"""What every standalone worker process (`nba learner`, `nba worker`) needs: a Redis client, and
a stop signal on SIGINT/SIGTERM so it finishes its current step and exits cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from redis import asyncio as aioredis

from engine.settings import Settings
from engine.state.connect import open_redis


@contextlib.asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[tuple[aioredis.Redis, asyncio.Event]]:
    client, embedded = open_redis(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield client, stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await client.aclose()
        if embedded is not None:
            embedded.close()
