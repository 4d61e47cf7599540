"""`nba worker`: fire trigger timers, and send outbound messages to the webhook when one is
configured (NBA_OUTBOUND_WEBHOOK_URL), in a process of its own.

Claims are leased in Redis, so any number of workers (and serving processes with
NBA_TIMER_WORKER=true) can run side by side; each timer fires once, and again only if the worker
firing it died before completing it.

A timer does what its trigger in the rules says when it fires, so the worker follows rule
changes like a serving process does: a new set that loads and passes the gate goes live, and
the worker says so on its output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.api.process import worker_process
from engine.bootstrap import consumer_name, open_rules, rules_gate, watch_rule_files, webhook_sender
from engine.clock import SystemClock
from engine.decision.timers import TimerWorker
from engine.metrics import MetricsRegistry
from engine.rules.reload import RuleReloader
from engine.settings import Settings
from engine.state.connect import store_for


async def run_timer_worker(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    clock = SystemClock()
    rules = open_rules(settings, clock)
    reloader = RuleReloader(
        rules,
        clock,
        MetricsRegistry(),
        gate=rules_gate(settings),
        on_change=lambda outcome: announce(f"rules reloaded: now {outcome.version}, {len(rules.current.triggers)} triggers"),
    )
    async with worker_process(settings) as (client, stop):
        store = store_for(client, settings)
        await store.prepare()
        watcher = watch_rule_files(reloader, settings, stop)
        sender = webhook_sender(client, settings)
        if sender is not None:
            await sender.store.ensure_group()  # before saying so: what is emitted from then on is sent
        sending = f"; sending outbound messages to {settings.outbound_webhook_url}" if sender else ""
        announce(f"timer worker {consumer_name()}: {len(rules.current.triggers)} triggers{sending}; stop with Ctrl-C")
        await asyncio.gather(TimerWorker(store, rules, clock).run(stop), *([sender.run(stop)] if sender else []))
        if watcher is not None:
            await watcher
