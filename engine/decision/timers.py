"""Firing durable timers: the "not followed by Y within T" half of triggers.

Timers live in Redis (sharded sorted sets of due times), so they survive restarts and any
number of workers can fire them: a claim moves a timer to an in-flight set with a lease, the
worker applies what the timer does, then completes it; a worker that dies mid-way leaves the
lease to lapse and another fires the timer again. What a timer does is computed from its due
time, not from the clock, so firing twice sets the same flag expiry and emits the same message
id: firing is idempotent (outbound consumers de-duplicate by `id`). A worker that fell behind
catches up: it keeps claiming while anything is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from engine.clock import Clock
from engine.rules.registry import RuleRegistry
from engine.rules.triggers import TriggerEffects, effects_of_timer
from engine.state import keys

log = logging.getLogger("engine.timers")

LEASE_MS = 30_000
POLL_S = 0.2


class TimerStore(Protocol):
    async def claim_timers(
        self, shard: int, now_ms: int, limit: int, lease_ms: int
    ) -> list[tuple[str, dict[str, Any] | None]]: ...

    async def complete_timers(self, shard: int, timer_ids: list[str]) -> None: ...

    async def apply_timer_effects(self, effects: list[tuple[str, TriggerEffects]]) -> None: ...


class TimerWorker:
    def __init__(
        self, store: TimerStore, rules: RuleRegistry, clock: Clock, *, batch: int = 500, lease_ms: int = LEASE_MS
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.batch = batch
        self.lease_ms = lease_ms

    async def fire_due(self) -> int:
        """Fire everything due now, on every shard; returns how many timers fired."""
        now = self.clock.now_ms()
        fired = 0
        for shard in range(keys.TIMER_SHARDS):
            while True:
                claimed = await self.store.claim_timers(shard, now, self.batch, self.lease_ms)
                if not claimed:
                    break
                effects = self._effects(claimed)
                if effects:
                    await self.store.apply_timer_effects(effects)
                await self.store.complete_timers(shard, [tid for tid, _ in claimed])
                fired += len(claimed)
                if len(claimed) < self.batch:
                    break
        return fired

    def _effects(self, claimed: list[tuple[str, dict[str, Any] | None]]) -> list[tuple[str, TriggerEffects]]:
        rules = self.rules.current
        out = []
        for timer_id, payload in claimed:
            if payload is None:
                continue  # cancelled after it was claimed
            trigger = rules.triggers_by_id.get(payload.get("trigger", ""))
            if trigger is None:
                log.warning("timer %s: trigger %r is no longer in the rules; dropped", timer_id, payload.get("trigger"))
                continue
            fx = effects_of_timer(trigger, payload["customer_id"], int(payload["due"]))
            if fx:
                out.append((payload["customer_id"], fx))
        return out

    async def run(self, stop: asyncio.Event, poll_s: float = POLL_S) -> None:
        while not stop.is_set():
            try:
                await self.fire_due()
            except Exception:
                log.exception("firing timers failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
