"""Triggers: what an event (or a timer it started) does to a customer's flags, counters, timers
and outbound messages.

Offers then wait for the customer's own behaviour instead of going to everyone: a trigger sets
`cart_abandoned` when a cart_add is not followed by a checkout within 30 minutes, and the
sweetener's condition reads `flag('cart_abandoned')`. Everything here is pure: it turns an event
into `TriggerEffects`, which the store applies in the same pipeline as the event itself.

Patterns:
- "X not followed by Y within T": on X schedule a timer `after: T` with `cancel_on: [Y]`; its
  `then` sets a flag. A later X restarts the wait.
- "N of X within T": on X `increment` a counter with `window: T`; conditions test
  `counter('name', days=7) >= 3`, and `at: 3` with `then:` acts when the count gets there.
  The count lives in Redis, so the store counts and acts in one script on the customer's keys:
  of events arriving together exactly one sees the count reach `at`, and the flags of `then`
  change with the count, atomically. Messages go to the outbound stream, on another node of a
  cluster, in the next round trip (`emits_of_crossing`), so a process that dies between the
  two loses the message but never the flag.
- cancellation: `cancel_on` on the timer, or `clear_flags` on the cancelling event's trigger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain import Event
from engine.rules.conditions import Condition
from engine.rules.functions import lookback_counter
from engine.rules.schema import Actions, Trigger
from engine.rules.vocabulary import EvalContext

TIMER_SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    spec: Trigger
    when: Condition | None

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True, slots=True)
class Threshold:
    """An occurrence to count, and what to do if it brings the count within `window_ms` to `at`.
    `then` is worked out up front (it depends only on the event), so the store can apply its
    flags in the same script that counts."""

    trigger: str
    counter: str
    at: int
    ts: int
    window_ms: int
    cause: str
    then: TriggerEffects
    guard: tuple[str, int] | None = None
    """For a `then` that sends messages: the timer (id, due ms) that sends them should the engine
    stop between counting and sending (engine.state.redis_store: the count marks it on the
    crossing, the send cancels it)."""


@dataclass(slots=True)
class TriggerEffects:
    """Writes for one customer: flags to set (name -> expiry ms) or clear, counter increments
    (name, ts, window ms, unique member) and the ones whose count is watched, timers to start
    (id -> (due ms, payload)) or cancel (id -> the latest due it cancels), and outbound messages."""

    flags_set: dict[str, int] = field(default_factory=dict)
    flags_clear: list[str] = field(default_factory=list)
    increments: list[tuple[str, int, int, str]] = field(default_factory=list)
    thresholds: list[Threshold] = field(default_factory=list)
    timers_set: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    timers_cancel: dict[str, int] = field(default_factory=dict)
    """A cancel reaches only a timer due by `ts + wait` of the cancelling event: one started by an
    event no later than it. A checkout sent late, dated before the cart_add that started the
    wait, leaves that wait running; one dated after the wait ended still stops a timer the worker
    has not fired yet (the customer has checked out: no reminder)."""
    emits: list[dict[str, Any]] = field(default_factory=list)
    now_ms: int | None = None
    """The engine's time when these effects were worked out. Counters keep, and thresholds
    count, what lies within their window of it, whatever time an event claims: a backfilled
    event must not complete "3 in 7 days" with two recent ones, nor a future-dated one push
    the real ones out. None: the event's own time."""

    def __bool__(self) -> bool:
        return bool(
            self.flags_set
            or self.flags_clear
            or self.increments
            or self.thresholds
            or self.timers_set
            or self.timers_cancel
            or self.emits
        )


CROSSING_GUARD_MS = 10_000
"""How long after a threshold is reached its messages wait, if the engine did not send them at
once, before the timer worker sends them: far longer than the send takes, retries included."""
LOOKBACK_ALL_TIME_MS = 3650 * 86_400_000
"""The window of a look-back counter that some `count(type)` reads without one: the counter keeps
its newest entries (engine.state.redis_store.MAX_COUNTER_ENTRIES) for up to ten years."""


def timer_id(trigger_id: str, customer_id: str) -> str:
    """One pending timer per trigger and customer: a later event restarts it, a cancel finds it."""
    return f"{trigger_id}{TIMER_SEPARATOR}{customer_id}"


def _apply_actions(
    out: TriggerEffects, actions: Actions, *, trigger: str, customer_id: str, ts: int, cause: str, now_ms: int | None = None
) -> None:
    """`ts` is when the actions happen (the event's time, or the timer's due time), so a retried
    timer computes the same expiry and the same message id: firing is idempotent. The message id
    names the customer because `cause` (an event id, or the due time) is unique for one customer
    only, and consumers de-duplicate across all of them. A message sent with a flag (the upgrade
    waiting in the app) is not sent when that flag has lapsed by `now_ms`, the engine's time: a
    backfilled event, or a timer fired days late, would promise what no decision offers any more."""
    lapsed = actions.set_flag is not None and now_ms is not None and ts + actions.set_flag.expires_after.ms <= now_ms
    if actions.set_flag is not None:
        out.flags_set[actions.set_flag.name] = ts + actions.set_flag.expires_after.ms
    for name in actions.clear_flags:
        out.flags_set.pop(name, None)
        out.flags_clear.append(name)
    if actions.increment is not None:
        inc = actions.increment
        if inc.at is None or inc.then is None:
            out.increments.append((inc.counter, ts, inc.window.ms, cause))
        else:
            then = TriggerEffects()
            # Named after the crossing, so a retried event that crosses again emits the same id.
            crossing = f"{cause}#{inc.counter}@{inc.at}"
            _apply_actions(then, inc.then, trigger=trigger, customer_id=customer_id, ts=ts, cause=crossing, now_ms=now_ms)
            guard = None
            if then.emits:
                due = (now_ms if now_ms is not None else ts) + CROSSING_GUARD_MS
                guard = (f"{timer_id(trigger, customer_id)}#{crossing}", due)
            out.thresholds.append(Threshold(trigger, inc.counter, inc.at, ts, inc.window.ms, cause, then, guard))
    if actions.emit is not None and not lapsed:
        emit = actions.emit
        out.emits.append(
            {
                "id": f"{trigger}:{customer_id}:{cause}",
                "customer_id": customer_id,
                "channel": emit.channel,
                "treatment": emit.treatment,
                "message": emit.message,
                "trigger": trigger,
                "ts": ts,
            }
        )


def effects_of_event(
    event: Event,
    ts: int,
    by_event: Mapping[str, tuple[CompiledTrigger, ...]],
    cancels: Mapping[str, tuple[tuple[str, int], ...]],
    now_ms: int | None = None,
    lookbacks: Mapping[str, float | None] | None = None,
) -> TriggerEffects:
    """`cancels` (RuleSet.timer_cancels): per event type, the triggers whose timers it cancels and
    their waits. `now_ms` is the engine's time as it takes the event in (default: the event's
    own `ts`). `lookbacks` (RuleSet.lookbacks): event types that conditions look back at, counted
    per type."""
    out = TriggerEffects(now_ms=now_ms)
    for trigger_id, wait_ms in cancels.get(event.type, ()):
        out.timers_cancel[timer_id(trigger_id, event.customer_id)] = ts + wait_ms
    if lookbacks and event.type in lookbacks:
        window = lookbacks[event.type]
        out.increments.append((lookback_counter(event.type), ts, int(window or LOOKBACK_ALL_TIME_MS), event.event_id))
    triggers = by_event.get(event.type, ())
    if not triggers:
        return out
    ctx = EvalContext(data={"event": {"type": event.type, **event.attributes}}, now_ms=ts)
    for t in triggers:
        if t.when is not None and not t.when(ctx):
            continue
        _apply_actions(out, t.spec, trigger=t.id, customer_id=event.customer_id, ts=ts, cause=event.event_id, now_ms=now_ms)
        if t.spec.schedule is not None:
            tid = timer_id(t.id, event.customer_id)
            due = ts + t.spec.schedule.after.ms
            out.timers_cancel.pop(tid, None)  # the same event cancels and restarts: it restarts
            # `marked`: the store keeps a mark of this timer in the customer's slot, which its
            # firing checks (engine.state.scripts.FIRE_TIMER); timers stored before marks existed
            # lack it and fire unchecked.
            out.timers_set[tid] = (
                due,
                {"trigger": t.id, "customer_id": event.customer_id, "due": due, "event_id": event.event_id, "marked": True},
            )
    return out


def effects_of_timer(trigger: CompiledTrigger, customer_id: str, due_ms: int, now_ms: int | None = None) -> TriggerEffects:
    """`now_ms`: when the timer is fired (default: on time)."""
    out = TriggerEffects(now_ms=due_ms)
    schedule = trigger.spec.schedule
    if schedule is not None:
        cause = f"timer@{due_ms}"
        _apply_actions(out, schedule.then, trigger=trigger.id, customer_id=customer_id, ts=due_ms, cause=cause, now_ms=now_ms)
    return out


Crossing = tuple[str, tuple[str, int], list[dict[str, Any]]]
"""A threshold just reached, for its messages to be sent: (customer, its guard timer (id, due ms),
the messages)."""


def crossing_payload(customer_id: str, watched: Threshold) -> dict[str, Any]:
    """The stored timer of a threshold's messages: fired only if the count marked the crossing."""
    assert watched.guard is not None
    return {"kind": "crossing", "customer_id": customer_id, "due": watched.guard[1], "emits": watched.then.emits, "marked": True}


def emits_of_crossing(watched: Threshold, count: int) -> list[dict[str, Any]]:
    """The messages a watched counter sends now that the store counted `count` occurrences
    within its window, this one included: its `then`'s, if the count is exactly `at`."""
    return list(watched.then.emits) if count == watched.at else []
