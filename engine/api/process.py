"""What every standalone worker process (`nba learner`, `nba worker`) needs: a Redis client, and
a stop signal on SIGINT/SIGTERM so it finishes its current step and exits cleanly; and what a
serving process does once it is ready (`settle_heap`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from redis import asyncio as aioredis

from engine.settings import Settings
from engine.state.connect import open_redis

if TYPE_CHECKING:
    from engine.bootstrap import Engine

log = logging.getLogger("engine.process")


def settle_heap(engine: Engine) -> int:
    """Move everything alive once the engine is ready (modules, numba and river internals, rules,
    models: some 225,000 objects with the example rules) out of the garbage collector's sight,
    and space young collections NBA_GC_YOUNG_THRESHOLD allocations apart (0: the interpreter's
    default); returns how many objects were frozen.

    Requests keep some objects alive across a few collections (32 decisions in flight, each
    waiting on Redis), so they reach the oldest generation, and every full collection then
    walked the whole start-up heap: about 120 ms with the process stopped, one or two a second
    under load, which was the benchmark's whole p99. Frozen objects are still freed when their
    last reference goes; only cycles among them are never collected, and start-up objects are
    kept for the life of the process anyway. The same tuning Instagram described for CPython
    servers (`gc.freeze`, Python 3.7+).

    Young collections: serving leaves no cyclic garbage (tests/integration/test_no_cycles.py), so they
    find nothing to free; but with requests in flight the count of live objects swings past
    CPython's 700 every few dozen decisions, and each collection walks every in-flight
    request's objects (about 0.7 ms). At 20,000 they become rare, and what a cycle elsewhere
    leaves behind is still collected.
    """
    gc.collect()
    gc.freeze()
    young_threshold, metrics = engine.settings.gc_young_threshold, engine.metrics
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    frozen = gc.get_freeze_count()
    metrics.gauge("nba_gc_frozen_objects", "Objects alive at start-up, kept out of full garbage collections.").set(frozen)
    metrics.gauge("nba_gc_young_threshold", "Net allocations between young garbage collections.").set(gc.get_threshold()[0])
    log.info("%d start-up objects frozen out of the garbage collector's full collections", frozen)
    return frozen


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
