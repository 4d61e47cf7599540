"""The composition root: builds the engine once, for every front end in the process.

HTTP and gRPC share what this builds (one Redis pool, one rule registry, one clock), so both
answer from the same state and the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from redis import asyncio as aioredis

from engine.api.webhook import WebhookSender
from engine.clock import Clock, SystemClock
from engine.decision import exploration
from engine.decision.service import DecisionService
from engine.decision.timers import TimerWorker
from engine.equity import clv
from engine.equity import indices as equity_indices
from engine.equity.value import LifetimeModel
from engine.errors import StoreUnavailable
from engine.learning.serving import ModelRegistry, follow_models
from engine.learning.spec import load_model_specs
from engine.learning.worker import learn_model
from engine.metrics import MetricsRegistry
from engine.rules.registry import RuleRegistry
from engine.rules.reload import Gate, RuleReloader, no_gate, watch_rules
from engine.rules.testing import rule_tests_gate
from engine.scoring import kernels as scoring_kernels
from engine.settings import Settings
from engine.state.connect import open_redis, store_for
from engine.state.embedded import EmbeddedRedis
from engine.state.learning_store import LearningStore
from engine.state.outbound_store import OutboundStore
from engine.state.redis_store import RedisStore
from engine.state.value_store import ValueStore


@dataclass
class Engine:
    settings: Settings
    service: DecisionService
    store: RedisStore
    rules: RuleRegistry
    clock: Clock
    redis_location: str
    models: ModelRegistry
    learning: LearningStore
    timers: TimerWorker
    reloader: RuleReloader
    metrics: MetricsRegistry

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        redis_ok = await self.store.ping()
        detail: dict[str, object] = {
            "redis": "ok" if redis_ok else "unreachable",
            "rules_version": self.rules.current.version,
            "rules": self.rules.status(),  # a refused reload shows here; the last good set still serves
            "treatments": len(self.rules.current.treatments),
            "models": self.models.versions(),
        }
        return redis_ok, detail


def rules_gate(settings: Settings) -> Gate:
    """What a rule set must pass, besides loading, to serve — at start-up and on every reload:
    its test cases (`*_test.yaml`), unless NBA_RULES_TEST_GATE is off."""
    return rule_tests_gate if settings.rules_test_gate else no_gate


def open_rules(settings: Settings, clock: Clock) -> RuleRegistry:
    """The rule set to start on; one that fails to load or to pass the gate refuses to start
    (RuleSetError), before any connection is made."""
    return RuleRegistry.from_directory(settings.rules_dir, gate=rules_gate(settings), now_ms=clock.now_ms())


def watch_rule_files(reloader: RuleReloader, settings: Settings, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Reload on rule file changes until `stop`, when NBA_RULES_WATCH is on (the default)."""
    if not settings.rules_watch:
        return None
    return asyncio.create_task(watch_rules(reloader, stop, debounce_ms=settings.rules_watch_debounce_ms), name="watch-rules")


def load_models(settings: Settings, rules: RuleRegistry) -> ModelRegistry:
    """Model specs checked against the rule set's declared fields; no directory: priors only."""
    if not settings.models_dir.is_dir():
        return ModelRegistry([])
    vocab = rules.current.vocabulary.namespaces
    return ModelRegistry(
        load_model_specs(settings.models_dir, customer_fields=vocab["customer"], context_fields=vocab["context"])
    )


def warm_up_kernels() -> float:
    """Compile (or load from numba's cache) every kernel before the service reports ready."""
    return scoring_kernels.warm_up() + exploration.warm_up() + equity_indices.warm_up() + clv.warm_up()


LIFETIME_POLL_S = 30.0
"""How soon a newly fitted lifetime-value model (`nba clv fit`) reaches every serving process."""


async def refresh_lifetime(service: DecisionService, values: ValueStore) -> None:
    stored = await values.load_lifetime_model()
    current = service.lifetime
    if stored is not None and (current is None or current.version != stored.get("version")):
        service.lifetime = LifetimeModel.from_dict(stored)


async def follow_lifetime(service: DecisionService, values: ValueStore, stop: asyncio.Event) -> None:
    """Keep the service's lifetime model current; Redis being away only delays the next check."""
    while not stop.is_set():
        with contextlib.suppress(StoreUnavailable, ValueError, KeyError):
            await refresh_lifetime(service, values)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LIFETIME_POLL_S)


def publish_model_versions(models: ModelRegistry, metrics: MetricsRegistry) -> None:
    """The version each enabled model serves, read when scraped: a process that stopped picking
    up publications shows as a version behind its peers."""
    gauge = metrics.gauge(
        "nba_model_version", "Version served of each enabled model (0: priors until the first publication).", labels=("model",)
    )

    def collect() -> None:
        for model_id, version in models.versions().items():
            gauge.set(version, model=model_id)

    metrics.collect_with(collect)


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def webhook_sender(client: aioredis.Redis, settings: Settings) -> WebhookSender | None:
    """The outbound webhook sender, when a webhook is configured."""
    if settings.outbound_webhook_url is None:
        return None
    return WebhookSender(
        OutboundStore(client, stream_maxlen=settings.stream_maxlen),
        settings.outbound_webhook_url,
        consumer=consumer_name(),
        timeout_s=settings.outbound_webhook_timeout_s,
        retry_after_s=settings.outbound_webhook_retry_s,
        max_attempts=settings.outbound_webhook_max_attempts,
    )


@asynccontextmanager
async def open_engine(
    settings: Settings, *, clock: Clock | None = None, client: aioredis.Redis | None = None
) -> AsyncIterator[Engine]:
    """Load the rules and models first (a bad set refuses to start before any connection is made)."""
    clock = clock or SystemClock()
    rules = open_rules(settings, clock)
    models = load_models(settings, rules)
    warm_up_kernels()
    embedded: EmbeddedRedis | None = None
    owns_client = client is None
    if client is None:
        client, embedded = open_redis(settings)
    location = embedded.url if embedded else (settings.redis_url or "injected client")
    store = store_for(client, settings)
    rng = np.random.default_rng(settings.random_seed)
    metrics = MetricsRegistry()
    publish_model_versions(models, metrics)
    service = DecisionService(
        store, rules, clock, models=models, rng=rng, max_batch_events=settings.max_batch_events, metrics=metrics
    )
    with contextlib.suppress(StoreUnavailable):
        await store.prepare()  # Redis may come up later; scripts then load on first use
    learning = LearningStore(client)
    values = ValueStore(client)
    with contextlib.suppress(StoreUnavailable, ValueError, KeyError):
        await refresh_lifetime(service, values)
    stop = asyncio.Event()
    follower = asyncio.create_task(follow_models(models, learning, stop), name="follow-models")
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(follow_lifetime(service, values, stop), name="follow-lifetime")]
    timers = TimerWorker(store, rules, clock)
    if settings.timer_worker:
        tasks.append(asyncio.create_task(timers.run(stop), name="timers"))
    if settings.learner:
        tasks += [
            asyncio.create_task(learn_model(learning, spec, clock, consumer_name(), stop), name=f"learn-{spec.id}")
            for spec in models.specs
            if spec.enabled
        ]
    sender = webhook_sender(client, settings)
    if sender is not None:
        # The group exists before the first request is served, so no message emitted from then
        # on can miss the webhook (it is created at the stream's end; see OutboundStore).
        with contextlib.suppress(StoreUnavailable):
            await sender.store.ensure_group()
    # Cancelled at shutdown rather than waited for: it may be blocked reading the stream, and a
    # message it was sending stays pending for the next sender (delivery is at least once).
    sending = asyncio.create_task(sender.run(stop), name="webhook") if sender is not None else None
    reloader = RuleReloader(rules, clock, metrics, gate=rules_gate(settings))
    if (watcher := watch_rule_files(reloader, settings, stop)) is not None:
        tasks.append(watcher)
    try:
        yield Engine(settings, service, store, rules, clock, location, models, learning, timers, reloader, metrics)
    finally:
        stop.set()
        follower.cancel()  # it may be waiting on pub/sub; nothing to finish
        if sending is not None:
            sending.cancel()
        await asyncio.gather(follower, *tasks, *([sending] if sending else []), return_exceptions=True)
        await store.aclose()
        if owns_client:
            await client.aclose()
        if embedded is not None:
            embedded.close()
