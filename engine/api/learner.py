"""`nba learner`: the learners as a process of their own, beside (or instead of) the in-process one.

Each enabled model is learned under a lease, so any number of these processes (and serving
processes with NBA_LEARNER=true) can run: one learns each model, the others stand by and take
over within the lease time if it dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.api.process import worker_process
from engine.bootstrap import consumer_name, load_models
from engine.clock import SystemClock
from engine.learning.worker import learn_model
from engine.rules.registry import RuleRegistry
from engine.settings import Settings
from engine.state.learning_store import LearningStore


async def run_learners(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    rules = RuleRegistry.from_directory(settings.rules_dir)
    specs = [s for s in load_models(settings, rules).specs if s.enabled]
    async with worker_process(settings) as (client, stop):
        store = LearningStore(client)
        name = consumer_name()
        announce(f"learner {name}: models {', '.join(s.id for s in specs) or '(none)'}; stop with Ctrl-C")
        await asyncio.gather(*(learn_model(store, spec, SystemClock(), name, stop) for spec in specs))
