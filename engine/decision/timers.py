"""Firing durable timers: the "not followed by Y within T" half of triggers.

Timers live in Redis (sharded sorted sets of due times), so they survive restarts and any
number of workers can fire them: a claim moves a timer to an in-flight set with a lease, the
worker applies what the timer does, then completes it; a worker that dies mid-way leaves the
lease to lapse and another fires the timer again. What a timer does is computed from its due
time, not from the clock, so firing twice sets the same flag expiry and emits the same message
id: firing is idempotent (outbound consumers de-duplicate by `id`). A worker that fell behind
catches up: it keeps claiming while anything is due.

A claim is a promise to fire later, and the customer may act in between: a checkout cancels
the abandoned-cart timer, a new cart_add starts it again with a later due time. Whatever the
worker read at claim time is then stale. Cancelling or restarting a timer therefore removes any
claim on it, in the same script on the timer's shard (engine.state.scripts.SCHEDULE_TIMERS), and
just before applying, the worker asks which of its claims it still holds under its lease
(HELD_TIMERS) and applies only those: most stale claims end there, without writing anything.

That check and the effects cannot be one atomic step: the timer's keys and the customer's
(flags, counters) are in different hash slots, so no script may touch both on Redis Cluster.
So every timer also leaves a mark in its customer's slot (keys.timer_mark: its due time), which
a cancelling event deletes and a restart overwrites, before that event's own flag writes; the
effects are applied by a script on the customer's slot that first checks the mark
(FIRE_TIMER). Either the firing comes first, and the event's writes (a checkout's
`clear_flags: [cart_abandoned]`) land after it, or the event comes first, and the timer writes
nothing. A timer cancelled by a later event never sets its flag or sends its message, whatever
the interleaving. A worker that dies after the effects and before completing leaves its claim
to lapse; the mark then reads `fired:<due>`, so the next worker applies the same writes again
and sends the messages with the same ids, unless a cancel came in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Sequence
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
        self, shard: int, now_ms: int, limit: int, lease_until_ms: int
    ) -> list[tuple[str, dict[str, Any] | None]]: ...

    async def held_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> Collection[str]: ...

    async def complete_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> None: ...

    async def apply_trigger_effects(self, effects: Sequence[tuple[str, TriggerEffects]]) -> None: ...

    async def fire_timers(self, timers: Sequence[tuple[str, str, int, TriggerEffects]]) -> list[bool]: ...


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
        lease_until = now + self.lease_ms
        fired = 0
        for shard in range(keys.TIMER_SHARDS):
            while True:
                claimed = await self.store.claim_timers(shard, now, self.batch, lease_until)
                if not claimed:
                    break
                ids = [tid for tid, _ in claimed]
                # As late as possible: what was cancelled or restarted since the claim is left out.
                held = await self.store.held_timers(shard, ids, lease_until)
                marked, unmarked = self._effects([(tid, payload) for tid, payload in claimed if tid in held and payload], now)
                applied = await self.store.fire_timers(marked) if marked else []
                if unmarked:
                    await self.store.apply_trigger_effects(unmarked)
                await self.store.complete_timers(shard, ids, lease_until)
                fired += sum(applied) + len(unmarked)
                if len(claimed) < self.batch:
                    break
        return fired

    def _effects(
        self, live: list[tuple[str, dict[str, Any]]], now: int
    ) -> tuple[list[tuple[str, str, int, TriggerEffects]], list[tuple[str, TriggerEffects]]]:
        """What the timers do: those stored with a mark in their customer's slot (applied only if
        it still holds), and those stored before marks existed (applied as they are)."""
        rules = self.rules.current
        marked, unmarked = [], []
        for timer_id, payload in live:
            if payload.get("kind") == "crossing":  # a threshold's messages, if the count marked it reached
                due = int(payload["due"])
                marked.append((payload["customer_id"], timer_id, due, TriggerEffects(emits=payload["emits"], now_ms=due)))
                continue
            trigger = rules.triggers_by_id.get(payload.get("trigger", ""))
            if trigger is None:
                log.warning("timer %s: trigger %r is no longer in the rules; dropped", timer_id, payload.get("trigger"))
                continue
            customer, due = payload["customer_id"], int(payload["due"])
            fx = effects_of_timer(trigger, customer, due, now)
            if payload.get("marked"):
                marked.append((customer, timer_id, due, fx))
            elif fx:
                unmarked.append((customer, fx))
        return marked, unmarked

    async def run(self, stop: asyncio.Event, poll_s: float = POLL_S) -> None:
        while not stop.is_set():
            try:
                await self.fire_due()
            except Exception:
                log.exception("firing timers failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
