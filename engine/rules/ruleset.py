"""A compiled, immutable rule set: what the decision pipeline reads on every request.

Everything that can be worked out once (conditions, candidate lists per channel and placement,
prior means, which state a decision must read) is worked out when the rules load, so the hot
path only looks things up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from engine.equity.config import EquityConfig
from engine.equity.value import ValueModel
from engine.errors import InvalidInput, quoted
from engine.rules.conditions import Condition
from engine.rules.functions import lookback_counter
from engine.rules.schema import Arbitration, Experiments, FrequencyCapPolicy, SuppressionPolicy
from engine.rules.triggers import CompiledTrigger
from engine.rules.vocabulary import REQUEST_EVENT_FIELDS, Vocabulary, check_types


@dataclass(frozen=True, slots=True)
class CompiledTreatment:
    id: str
    kind: str
    group: str
    channels: frozenset[str]
    placements: frozenset[str]
    value: float
    lever: float
    prior_alpha: float
    prior_beta: float
    cap_per_day: int | None
    cap_per_week: int | None
    cap_total: int | None
    eligibility: Condition | None
    context_weights: tuple[tuple[Condition, float], ...]
    content: Mapping[str, Any]
    description: str | None = None
    target_rank: int = -1
    """Rank of the equity tier this treatment aims at (−1: none), resolved when the rules load."""
    tier_uplift: float = 0.0
    cost_per_show: float = 0.0
    cost_per_accept: float = 0.0
    brand: str | None = None
    campaign: str | None = None

    @property
    def prior_mean(self) -> float:
        return self.prior_alpha / (self.prior_alpha + self.prior_beta)

    def available(self, channel: str, placement: str | None) -> bool:
        """On this channel, and at this placement when the treatment names placements (a request
        without a placement gets only the treatments that are not tied to one)."""
        if channel not in self.channels:
            return False
        return not self.placements or placement in self.placements


HISTORY_FUNCTIONS = frozenset({"count", "exists"})


def _conditions(t: CompiledTreatment) -> list[Condition]:
    conditions = [c for c, _ in t.context_weights]
    if t.eligibility is not None:
        conditions.append(t.eligibility)
    return conditions


def longest_lookbacks(looks: Iterable[tuple[str, float | None]]) -> dict[str, float | None]:
    """Event type -> the longest of its windows (None, all time, is longest)."""
    out: dict[str, float | None] = {}
    for event_type, window in looks:
        if event_type not in out:
            out[event_type] = window
        elif out[event_type] is not None:
            out[event_type] = None if window is None else max(window, out[event_type] or 0)
    return out


def merged_lookbacks(*rule_sets: RuleSet | None) -> dict[str, float | None]:
    """The look-backs of several rule sets at once (a simulation compares two over one read)."""
    return longest_lookbacks(look for r in rule_sets if r is not None for look in r.lookbacks.items())


def _uses_history(t: CompiledTreatment) -> bool:
    return any(c.functions & HISTORY_FUNCTIONS for c in _conditions(t))


@dataclass(slots=True)
class Limits:
    limit: int
    max_per_group: int


@dataclass(frozen=True)
class RuleSet:
    version: str
    treatments: tuple[CompiledTreatment, ...]
    arbitration: Arbitration
    frequency_policies: tuple[FrequencyCapPolicy, ...]
    suppression_policies: tuple[SuppressionPolicy, ...]
    vocabulary: Vocabulary
    source_dir: str = ""
    triggers: tuple[CompiledTrigger, ...] = ()
    equity: EquityConfig = field(default_factory=EquityConfig.default)
    experiments: Experiments = field(default_factory=Experiments)
    _candidates: dict[tuple[str, str | None], tuple[CompiledTreatment, ...]] = field(default_factory=dict, repr=False)
    _history: dict[tuple[str, str | None], bool] = field(default_factory=dict, repr=False)

    @cached_property
    def value_model(self) -> ValueModel:
        """The equity configuration compiled for the kernels (no lifetime model: the service
        adds the fitted one)."""
        return ValueModel(self.equity)

    @cached_property
    def by_id(self) -> Mapping[str, CompiledTreatment]:
        return {t.id: t for t in self.treatments}

    def check_context(self, context: Mapping[str, Any]) -> None:
        """Refuse a decision's context whose declared field has a value of the wrong type
        (InvalidInput naming `context.<name>`); without this, conditions on it are silently false."""
        self.vocabulary.check_fields("context", context, "context.")

    def check_event(self, event: Mapping[str, Any] | None) -> None:
        """Refuse a decision's `event` whose type is unknown or whose attribute has the wrong
        type for it (InvalidInput naming `event.<name>`), as `POST /v1/events` would refuse that
        event: a rule on `event.delay_minutes >= 45` would otherwise read `"50"` as silently false."""
        if not event:
            return
        vocab = self.vocabulary
        check_types(REQUEST_EVENT_FIELDS, event, "event field", "event.")
        kind = event.get("type")
        if kind is not None and kind not in vocab.event_types:
            raise InvalidInput(f"unknown event type {quoted(kind)}", field="event.type")
        by_type = vocab.event_attributes or {}
        declared = by_type.get(kind) if kind is not None else None
        check_types(declared if declared is not None else vocab.namespaces.get("event", {}), event, "event field", "event.")

    def needs_history(self, channel: str, placement: str | None) -> bool:
        """Whether a decision here must read the interaction history (some condition counts events).

        Most placements never look at history, so they skip reading and decoding it.
        """
        key = (channel, placement)
        found = self._history.get(key)
        if found is None:
            found = any(_uses_history(t) for t in (*self.candidates(channel, placement), *self.fallback))
            self._history[key] = found
        return found

    @cached_property
    def triggers_by_event(self) -> Mapping[str, tuple[CompiledTrigger, ...]]:
        by: dict[str, list[CompiledTrigger]] = {}
        for t in self.triggers:
            by.setdefault(t.spec.event, []).append(t)
        return {k: tuple(v) for k, v in by.items()}

    @cached_property
    def timer_cancels(self) -> Mapping[str, tuple[tuple[str, int], ...]]:
        """Event type -> (trigger id, wait ms) of the triggers whose pending timer that event cancels."""
        by: dict[str, list[tuple[str, int]]] = {}
        for t in self.triggers:
            schedule = t.spec.schedule
            if schedule is None:
                continue
            for event_type in schedule.cancel_on:
                by.setdefault(event_type, []).append((t.id, schedule.after.ms))
        return {k: tuple(v) for k, v in by.items()}

    @cached_property
    def triggers_by_id(self) -> Mapping[str, CompiledTrigger]:
        return {t.id: t for t in self.triggers}

    @cached_property
    def counters(self) -> tuple[str, ...]:
        """Every counter a condition may read (their keys are read with the customer)."""
        return tuple(sorted(self.vocabulary.counters))

    @cached_property
    def lookbacks(self) -> Mapping[str, float | None]:
        """Event type -> the longest window any `count` or `exists` looks back over it (None: all
        time): the per-type counters kept of those events (engine.rules.functions.lookback_counter)."""
        return longest_lookbacks(look for t in self.by_id.values() for c in _conditions(t) for look in c.lookbacks)

    def counters_read(self, history: bool) -> tuple[str, ...]:
        """The counters a decision reads: every trigger counter, and with the history (a placement
        whose conditions look back) the per-type look-back counters."""
        return self._counters_with_lookbacks if history else self.counters

    @cached_property
    def _counters_with_lookbacks(self) -> tuple[str, ...]:
        return (*self.counters, *(lookback_counter(t) for t in sorted(self.lookbacks)))

    @cached_property
    def fallback(self) -> tuple[CompiledTreatment, ...]:
        return tuple(self.by_id[t] for t in self.arbitration.fallback)

    def candidates(self, channel: str, placement: str | None) -> tuple[CompiledTreatment, ...]:
        """Treatments offered on this channel and placement (memoised: the set is immutable).

        Fallback treatments are not candidates: they fill an otherwise empty answer only.
        """
        key = (channel, placement)
        found = self._candidates.get(key)
        if found is None:
            reserved = set(self.arbitration.fallback)
            found = tuple(t for t in self.treatments if t.available(channel, placement) and t.id not in reserved)
            self._candidates[key] = found
        return found

    def limits(self, placement: str | None, requested: int | None) -> Limits:
        limit, per_group = self.arbitration.limit, self.arbitration.max_per_group
        override = self.arbitration.placements.get(placement) if placement else None
        if override is not None:
            limit = override.limit or limit
            per_group = override.max_per_group or per_group
        if requested is not None:
            limit = min(limit, requested)
        return Limits(limit, per_group)

    def recent_shown(self, placement: str | None, requested: int | None) -> int:
        """How many interactions to return with a decision here: the request's number, else the placement's."""
        if requested is not None:
            return requested
        override = self.arbitration.placements.get(placement) if placement else None
        return override.recent if override is not None else 0

    def active_suppressions(self, last: Mapping[str, Mapping[str, Any]], now_ms: int) -> dict[str, tuple[str, int]]:
        """Group -> (policy id, until ms) for every suppression in force now."""
        active: dict[str, tuple[str, int]] = {}
        for policy in self.suppression_policies:
            seen = last.get(policy.after_event)
            if not seen:
                continue
            until = int(seen.get("ts", 0)) + int(policy.days * 86_400_000)
            if until <= now_ms:
                continue
            for group in policy.groups:
                if group not in active or active[group][1] < until:
                    active[group] = (policy.id, until)
        return active
