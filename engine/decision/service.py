"""The decision service: the one place that orchestrates a decision, an event batch or feedback.

Front ends call these methods and nothing else. Each method validates its input (so both
HTTP and gRPC refuse the same things with the same words), reads state once, runs pure
logic, and writes once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.clock import Clock
from engine.decision.arms import HOLDOUT, Arm, assign
from engine.decision.coupons import cart_adjustments
from engine.decision.events import EventEffects, effects_of
from engine.decision.exploration import ExplorationPolicy
from engine.decision.pipeline import decide
from engine.domain import (
    CHANNELS,
    CUSTOMER_ID_PATTERN,
    MAX_RECENT_SHOWN,
    MAX_TS,
    OUTCOMES,
    CustomerState,
    Decision,
    DecisionRequest,
    Event,
    Feedback,
    FeedbackResult,
    IngestResult,
    StoredDecision,
)
from engine.equity.value import LifetimeModel, ValueModel
from engine.errors import InvalidInput, NotFound, RuleSetError, StoreUnavailable, quoted
from engine.learning.serving import ModelRegistry
from engine.metrics import CounterChild, MetricsRegistry
from engine.rules.loader import load_ruleset
from engine.rules.registry import RuleRegistry
from engine.rules.ruleset import RuleSet
from engine.rules.triggers import Crossing, effects_of_event, emits_of_crossing
from engine.state import keys
from engine.state.store import Store

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def check_customer_id(value: str, field: str = "customer_id") -> str:
    if not isinstance(value, str) or not _CUSTOMER_ID.match(value):
        raise InvalidInput(f"customer id must be 1-64 characters of letters, digits and _.:@-, got {quoted(value)}", field=field)
    return value


def _check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"id must be 1-128 characters of letters, digits and _.:@-, got {quoted(value)}", field=field)
    return value


class _RandomBlocks:
    """Random bytes from the OS in blocks: one system call per 256 decision ids instead of one
    each, which showed in profiles. A forked child starts a fresh block, so it never repeats
    its parent's ids."""

    BLOCK = 4096

    def __init__(self) -> None:
        self.buffer = b""
        self.pos = 0
        self.lock = threading.Lock()  # decisions may come from several threads (simulations, tests)
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.buffer, self.pos, self.lock = b"", 0, threading.Lock()

    def take(self, n: int) -> bytes:
        with self.lock:
            if self.pos + n > len(self.buffer):
                self.buffer, self.pos = os.urandom(self.BLOCK), 0
            out = self.buffer[self.pos : self.pos + n]
            self.pos += n
            return out


_RANDOM = _RandomBlocks()


def new_nonce() -> str:
    """128 random bits from the OS's CSPRNG as 32 hex characters (decision ids must not be
    guessable: feedback names a decision by its id)."""
    return _RANDOM.take(16).hex()


log = logging.getLogger("engine.decisions")


@dataclass(frozen=True, slots=True)
class CustomerView:
    """What a call-center screen shows: who this is, what is in the cart, what happened lately."""

    customer_id: str
    known: bool
    profile: dict[str, Any]
    cart: dict[str, Any]
    suppressions: list[dict[str, Any]]
    recent: list[dict[str, Any]]
    responses: dict[str, int]
    purchases: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    value: dict[str, Any] | None = None
    """Indices, equity score and tier, and the lifetime value once a model is fitted."""


API_OPERATIONS = ("decide", "events", "feedback", "customer", "voice")
API_ERRORS = ("invalid_input", "not_found", "overloaded", "deadline_exceeded", "store_unavailable", "not_ready", "internal")
"""The `error` codes a client of the API can get (engine.errors, and `internal` for a bug)."""

DECISION_RESULTS = ("treatments", "fallback", "none", "degraded")
"""How a decision ended: treatments chosen by the rules and scoring, fallback treatments only,
nothing shown (a no-treatment holdout, or no fallback for the placement), or degraded (the
customer could not be read, or the decision not written back)."""


def _counter(metrics: MetricsRegistry, name: str, help: str, **labels: Sequence[str]) -> dict[Any, CounterChild]:
    """A counter, bound up front to every combination of its labels' values: the children keyed
    by their values (by the value alone for a counter with one label)."""
    counter = metrics.counter(name, help, labels=tuple(labels))
    return {key if len(key) > 1 else key[0]: counter.child(*key) for key in itertools.product(*labels.values())}


class _Meters:
    """The service's metrics, bound to every label value up front: on the hot path an update is
    then a dict update. Label values come from closed sets (channels, outcomes, results), never
    from request data, so no client can make the series grow."""

    def __init__(self, metrics: MetricsRegistry) -> None:
        self.decisions = _counter(
            metrics,
            "nba_decisions_total",
            f"Decisions answered, by channel and result ({', '.join(DECISION_RESULTS)}).",
            channel=CHANNELS,
            result=DECISION_RESULTS,
        )
        seconds = metrics.histogram(
            "nba_decision_seconds",
            "Time a decision takes in the engine's core, by channel: the customer read, the logic and the write-back.",
            labels=("channel",),
        )
        self.seconds = {c: seconds.child(c) for c in CHANNELS}
        taken = ("accepted", "duplicate")
        self.events = _counter(metrics, "nba_events_total", "Events taken in, by result (accepted, duplicate).", result=taken)
        self.feedback = _counter(
            metrics,
            "nba_feedback_total",
            "Feedback taken in, by outcome and result (accepted, duplicate).",
            outcome=OUTCOMES,
            result=taken,
        )
        self.errors = _counter(
            metrics,
            "nba_request_errors_total",
            "API requests answered with an error, by operation and the error the client sees "
            "(an HTTP body's `error`, a gRPC status's `nba-error` trailer).",
            operation=API_OPERATIONS,
            error=API_ERRORS,
        )
        self.store_errors = _counter(
            metrics,
            "nba_store_errors_total",
            "Redis calls that failed or ran out of time, by operation: decisions are then answered degraded, writes refused.",
            operation=("read_customer", "write_decision", "record_events", "record_feedback"),
        )

    def decided(self, d: Decision, seconds: float) -> None:
        result = "degraded" if d.degraded else "fallback" if d.fallback else "treatments" if d.treatments else "none"
        self.decisions[(d.channel, result)].inc()
        self.seconds[d.channel].observe(seconds)


def _crossings(applied: Sequence[EventEffects], counts: Sequence[tuple[int, ...]]) -> list[Crossing]:
    """The messages of the thresholds these events brought their counters to, with the guard
    timers that would send them otherwise."""
    out: list[Crossing] = []
    for fx, watched_counts in zip(applied, counts, strict=True):
        if not watched_counts:
            continue
        for watched, count in zip(fx.triggers.thresholds, watched_counts, strict=True):
            emits = emits_of_crossing(watched, count)
            if emits and watched.guard is not None:
                out.append((fx.event.customer_id, watched.guard, emits))
    return out


THRESHOLD_EMIT_ATTEMPTS = 3


class DecisionService:
    def __init__(
        self,
        store: Store,
        rules: RuleRegistry,
        clock: Clock,
        *,
        models: ModelRegistry | None = None,
        rng: np.random.Generator | None = None,
        new_id: Callable[[], str] = new_nonce,
        max_batch_events: int = 1_000,
        metrics: MetricsRegistry | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.models = models
        self.rng = rng if rng is not None else np.random.default_rng()
        self.new_id = new_id
        self.max_batch_events = max_batch_events
        self.lifetime: LifetimeModel | None = None
        """The fitted lifetime-value model, if any; kept current by engine.bootstrap."""
        self._values: tuple[RuleSet, LifetimeModel | None, ValueModel] | None = None
        self._challengers: dict[tuple[str, str], RuleSet] = {}
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self._meters = _Meters(self.metrics)

    def count_error(self, operation: str, error: str) -> None:
        """For the front ends' error mapping, which sees every error a client gets, including
        requests its own schema refuses before they reach this service. An operation or error
        outside the closed sets (admin endpoints, say) is not counted."""
        meter = self._meters.errors.get((operation, error))
        if meter is not None:
            meter.inc()

    # -- customer value ----------------------------------------------------------------------

    def values_for(self, rules: RuleSet) -> ValueModel:
        """The rule set's value model with the fitted lifetime model; rebuilt only when either changes."""
        lifetime = self.lifetime
        cached = self._values
        if cached is None or cached[0] is not rules or cached[1] is not lifetime:
            values = rules.value_model.with_lifetime(lifetime) if lifetime is not None else rules.value_model
            self._values = cached = (rules, lifetime, values)
        return cached[2]

    # -- experiments -------------------------------------------------------------------------

    def _challenger_rules(self, champion: RuleSet, arm: Arm) -> RuleSet:
        """A challenger's rule set, loaded once per champion version (a reload may change it).
        One that fails to load serves the champion's rules, and says so in the log once."""
        key = (champion.version, arm.rules or "")
        found = self._challengers.get(key)
        if found is None:
            directory = Path(champion.source_dir) / (arm.rules or "")
            try:
                found = load_ruleset(directory)
            except RuleSetError as exc:
                log.warning("challenger rules in %s refused; serving the champion's: %s", directory, exc)
                found = champion
            self._challengers = {k: v for k, v in self._challengers.items() if k[0] == champion.version}
            self._challengers[key] = found
        return found

    # -- decisions -------------------------------------------------------------------------

    def _check_request(self, req: DecisionRequest) -> None:
        check_customer_id(req.customer_id)
        if req.channel not in CHANNELS:
            raise InvalidInput(f"unknown channel {quoted(req.channel)}; expected one of {', '.join(CHANNELS)}", field="channel")
        if req.limit is not None and not 1 <= req.limit <= 50:
            raise InvalidInput(f"limit must be between 1 and 50, got {req.limit}", field="limit")
        if req.recent is not None and not 0 <= req.recent <= MAX_RECENT_SHOWN:
            raise InvalidInput(f"recent must be between 0 and {MAX_RECENT_SHOWN}, got {req.recent}", field="recent")

    async def decide(self, req: DecisionRequest) -> Decision:
        started = time.perf_counter()
        self._check_request(req)
        champion = self.rules.current  # one rule set for the whole decision, even across a reload
        arm = assign(req.customer_id, req.placement, champion.experiments)
        rules = self._challenger_rules(champion, arm) if arm.rules is not None else champion
        rules.check_context(req.context)
        rules.check_event(req.event)
        now = self.clock.now_ms()
        degraded = False
        shown = rules.recent_shown(req.placement, req.recent)
        history = rules.needs_history(req.channel, req.placement)
        try:
            state = await self.store.read_customer(
                req.customer_id, now, with_recent=shown > 0 or history, counters=rules.counters_read(history)
            )
        except StoreUnavailable:
            # Answer from an empty state (fallbacks, unconditional offers) rather than leave a screen blank.
            state, degraded = CustomerState(req.customer_id), True
            self._meters.store_errors["read_customer"].inc()
        model = self.models.for_placement(req.placement) if self.models else None
        if arm.model is not None and self.models:
            model = self.models.get(arm.model) or model
        plan = decide(
            state,
            req,
            rules,
            now,
            model=model,
            rng=self.rng,
            fallback_only=degraded,
            values=self.values_for(rules),
            # Logged as `holdout` either way, so the ROI report's treated-against-holdout level finds them.
            policy=ExplorationPolicy.holdout() if arm.name == HOLDOUT else None,
            show_nothing=arm.name == HOLDOUT and not arm.random,
        )
        value = plan.value
        decision = Decision(
            decision_id=keys.new_decision_id(self.new_id(), req.customer_id),
            customer_id=req.customer_id,
            channel=req.channel,
            placement=req.placement,
            treatments=plan.treatments,
            rules_version=rules.version,
            ts=now,
            degraded=degraded,
            fallback=plan.fallback,
            verdicts=plan.verdicts if req.explain else (),
            model_version=f"{plan.model['id']}@{plan.model['version']}" if plan.model else None,
            cart_adjustments=tuple(cart_adjustments(plan.treatments, state.cart)),
            customer_value=value.as_dict() if value is not None and not degraded else None,
            arm=arm.name,
            recent=tuple(state.recent[:shown]),
        )
        record = StoredDecision(
            decision_id=decision.decision_id,
            customer_id=req.customer_id,
            channel=req.channel,
            placement=req.placement,
            ts=now,
            rules_version=rules.version,
            treatments=[
                {
                    "id": t.id,
                    "kind": t.kind,
                    "group": t.group,
                    "score": t.score,
                    "propensity": t.propensity,
                    "selection_probability": t.selection_probability,
                }
                for t in plan.treatments
            ],
            degraded=degraded,
            fallback=plan.fallback,
            policy=plan.policy,
            model=plan.model,
            inputs=plan.inputs,
            candidates=list(plan.candidates),
            limits=plan.limits,
            value={"equity": value.equity, "tier": value.tier, "clv": value.clv} if value is not None else None,
            arm=arm.name,
        )
        if not degraded:
            try:
                await self.store.write_decision(record, plan.counter_fields)
            except StoreUnavailable:
                self._meters.store_errors["write_decision"].inc()
                decision = replace(decision, degraded=True)
        self._meters.decided(decision, time.perf_counter() - started)
        return decision

    # -- events ----------------------------------------------------------------------------

    async def record_events(self, events: Sequence[Event]) -> IngestResult:
        now = self.clock.now_ms()
        effects = self._effects(events, self.rules.current, now)
        # A batch may repeat an id; the first occurrence wins, like a retry would.
        ids = [(e.customer_id, e.event_id) for e in events]
        try:
            fresh = await self.store.claim_events(ids)
            new = [fx for fx, is_new in zip(effects, fresh, strict=True) if is_new]
            claimed = [k for k, is_new in zip(ids, fresh, strict=True) if is_new]
            if new:
                try:
                    counts = await self.store.apply_events(new, now)
                except Exception:
                    # Whatever failed, the client's retry must not be taken for a duplicate.
                    await self.store.release_events(claimed)
                    raise
                await self._send_crossings(_crossings(new, counts))
        except StoreUnavailable:
            self._meters.store_errors["record_events"].inc()
            raise
        duplicates = len(events) - len(new)
        self._meters.events["accepted"].inc(len(new))
        self._meters.events["duplicate"].inc(duplicates)
        return IngestResult(accepted=len(new), duplicates=duplicates, event_ids=tuple(e.event_id for e in events))

    async def _send_crossings(self, crossings: list[Crossing]) -> None:
        """Send the messages of thresholds just reached. The events are written by now, so a
        failure here must not hand their ids back (a retry would apply them twice); it is tried
        again a few times, then logged and counted. The messages are not lost: each crossing's
        guard timer, marked with the count, sends them within seconds (CROSSING_GUARD_MS)."""
        for attempt in range(1, THRESHOLD_EMIT_ATTEMPTS + 1):
            if not crossings:
                return
            try:
                await self.store.send_crossings(crossings)
                return
            except StoreUnavailable as exc:
                self._meters.store_errors["record_events"].inc()
                if attempt == THRESHOLD_EMIT_ATTEMPTS:
                    ids = [m["id"] for _, _, messages in crossings for m in messages]
                    log.warning("threshold messages left to their guard timers (%s): %s", exc, ", ".join(ids))
                    return
                await asyncio.sleep(0.05 * attempt)

    def _effects(self, events: Sequence[Event], rules: RuleSet, now: int) -> list[EventEffects]:
        """Each event checked and turned into what it does to state. The first event at fault
        refuses the whole batch, before anything is applied, named by its place in the batch."""
        if not events:
            raise InvalidInput("no events given", field="events")
        if len(events) > self.max_batch_events:
            raise InvalidInput(f"at most {self.max_batch_events} events per batch, got {len(events)}", field="events")
        vocab = rules.vocabulary
        single = len(events) == 1
        effects: list[EventEffects] = []
        for i, e in enumerate(events):
            prefix = "" if single else f"events[{i}]."
            _check_id(e.event_id, f"{prefix}event_id")
            check_customer_id(e.customer_id, f"{prefix}customer_id")
            if e.channel is not None and e.channel not in CHANNELS:
                raise InvalidInput(f"unknown channel {quoted(e.channel)}", field=f"{prefix}channel")
            fx = effects_of(e, vocab, now, prefix, rules.equity)
            triggers = effects_of_event(e, fx.ts, rules.triggers_by_event, rules.timer_cancels, now, rules.lookbacks)
            effects.append(replace(fx, triggers=triggers) if triggers else fx)
        return effects

    # -- feedback --------------------------------------------------------------------------

    async def record_feedback(self, fb: Feedback) -> FeedbackResult:
        try:
            result = await self._record_feedback(fb)
        except StoreUnavailable:
            self._meters.store_errors["record_feedback"].inc()
            raise
        self._meters.feedback[(fb.outcome, "duplicate" if result.duplicate else "accepted")].inc()
        return result

    async def _record_feedback(self, fb: Feedback) -> FeedbackResult:
        _check_id(fb.feedback_id, "feedback_id")
        _check_id(fb.decision_id, "decision_id")
        if fb.outcome not in OUTCOMES:
            raise InvalidInput(f"unknown outcome {quoted(fb.outcome)}; expected one of {', '.join(OUTCOMES)}", field="outcome")
        if fb.value is not None and (not math.isfinite(fb.value) or fb.value < 0):
            raise InvalidInput(f"value must be a finite number >= 0, got {fb.value!r}", field="value")
        if fb.ts is not None and not 0 <= fb.ts <= MAX_TS:
            raise InvalidInput(f"ts must be milliseconds since the epoch, from 0 to {MAX_TS}, got {fb.ts}", field="ts")
        record, is_new = await self.store.claim_feedback(fb.feedback_id, fb.decision_id)
        if record is None:
            raise NotFound(f"unknown or expired decision {quoted(fb.decision_id)}", field="decision_id")
        if fb.treatment_id not in record.treatment_ids():
            if is_new:
                await self.store.release_feedback(fb.feedback_id)
            raise InvalidInput(
                f"treatment {quoted(fb.treatment_id)} was not part of decision {quoted(fb.decision_id)} "
                f"(it returned {', '.join(record.treatment_ids()) or 'nothing'})",
                field="treatment_id",
            )
        if not is_new:
            return FeedbackResult(accepted=False, duplicate=True)
        try:
            await self.store.apply_feedback(fb, record.customer_id, fb.ts if fb.ts is not None else self.clock.now_ms())
        except Exception:
            await self.store.release_feedback(fb.feedback_id)  # whatever failed, so the retry is not a duplicate
            raise
        return FeedbackResult(accepted=True, duplicate=False)

    # -- voice of the customer ----------------------------------------------------------------

    async def voice(self, days: int) -> dict[str, Any]:
        """Per topic over the last `days` days: what customers liked, disliked, and their ideas."""
        if not 1 <= days <= 366:
            raise InvalidInput(f"days must be between 1 and 366, got {days}", field="days")
        now = self.clock.now_ms()
        day_names = [keys.day_of(now - i * 86_400_000) for i in range(days)]
        totals = await self.store.voice_counts(day_names)
        topics: dict[str, dict[str, int]] = {}
        for field, n in totals.items():
            kind, _, topic = field.partition(":")
            topics.setdefault(topic, {"liked": 0, "disliked": 0, "ideas": 0})[kind] = n
        rows = [{"topic": t, **counts} for t, counts in topics.items()]
        rows.sort(key=lambda r: (-(r["liked"] + r["disliked"] + r["ideas"]), r["topic"]))
        return {"days": days, "since": day_names[-1], "topics": rows}

    # -- customer view ---------------------------------------------------------------------

    async def customer_view(self, customer_id: str) -> CustomerView:
        check_customer_id(customer_id)
        rules = self.rules.current
        now = self.clock.now_ms()
        state = await self.store.read_customer(customer_id, now, with_recent=True, counters=rules.counters)
        purchases, orders, responses = await self.store.read_history(customer_id)
        suppressions = [
            {"group": group, "policy": policy_id, "until": until}
            for group, (policy_id, until) in sorted(rules.active_suppressions(state.last, now).items())
        ]
        cart = {**state.cart_summary(), "lines": state.cart}
        order_rows = sorted(({"order_id": k, **v} for k, v in orders.items()), key=lambda o: -int(o.get("ts", 0)))
        value = self.values_for(rules).evaluate(state.facts, now)
        return CustomerView(
            customer_id,
            state.known,
            state.profile,
            cart,
            suppressions,
            state.recent,
            responses,
            purchases,
            order_rows,
            value.as_dict(),
        )
