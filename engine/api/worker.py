"""`nba worker`: fire trigger timers in a process of its own.

Claims are leased in Redis, so any number of workers (and serving processes with
NBA_TIMER_WORKER=true) can run side by side; each timer fires once, and again only if the worker
firing it died before completing it.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.api.process import worker_process
from engine.bootstrap import consumer_name
from engine.clock import SystemClock
from engine.decision.timers import TimerWorker
from engine.rules.registry import RuleRegistry
from engine.settings import Settings
from engine.state.connect import store_for


async def run_timer_worker(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    rules = RuleRegistry.from_directory(settings.rules_dir)
    async with worker_process(settings) as (client, stop):
        store = store_for(client, settings)
        await store.prepare()
        announce(f"timer worker {consumer_name()}: {len(rules.current.triggers)} triggers; stop with Ctrl-C")
        await TimerWorker(store, rules, SystemClock()).run(stop)
