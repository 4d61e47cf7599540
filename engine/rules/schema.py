"""The shape of rule files, validated by pydantic with `extra="forbid"` so a typo fails loudly.

A rule set is a directory of YAML files; each file may hold any of these sections and the
loader merges them. Conditions stay strings here; the loader compiles them.

`event_types:` lists event types beyond the built-in ones and the attributes conditions may read
from events, so a misspelt `event.delay_minuts` is refused when the rules load:

    event_types:
      - survey_sent                                   # a new type, no attributes
      - {name: booking, attributes: {nights: number, hotel: string}}
      - {name: flight_delayed, attributes: {gate: string}}   # adds to a built-in type

Every event also has `type`; a decision's event may carry `ts` and `channel`, and `last(...)`
records have `ts`. Declarations from several files merge; one attribute must keep one type.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from engine.domain import CHANNELS, MAX_RECENT_SHOWN
from engine.equity.config import EquityConfig
from engine.validation import Strict

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ChannelName = Literal["web", "mobile_app", "call_center", "email", "sms", "push", "social"]
FieldTypeName = Literal["number", "string", "bool", "list", "timestamp", "any"]
AttributeName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]

assert set(ChannelName.__args__) == set(CHANNELS)  # type: ignore[attr-defined]


class Caps(Strict):
    """Per-treatment frequency caps per customer, counted on calendar days and ISO weeks (UTC)."""

    per_day: int | None = Field(default=None, ge=1)
    per_week: int | None = Field(default=None, ge=1)
    total: int | None = Field(default=None, ge=1, description="Ever, per customer (a free sample, once).")


class Prior(Strict):
    """Beta prior on the response rate; its mean is the propensity until models learn."""

    alpha: float = Field(default=1.0, gt=0)
    beta: float = Field(default=19.0, gt=0)


class ContextWeight(Strict):
    """Multiplies the priority when `when` holds, e.g. favour an offer on mobile."""

    when: str
    weight: float = Field(gt=0, le=100)


class Cost(Strict):
    """What showing and what an acceptance cost, for the ROI report (a coupon's discount, say)."""

    per_show: float = Field(default=0.0, ge=0)
    per_accept: float = Field(default=0.0, ge=0)


class Treatment(Strict):
    id: Identifier
    kind: Literal["offer", "prompt", "message", "coupon"]
    description: str | None = None
    channels: list[ChannelName] = Field(min_length=1)
    placements: list[Identifier] = Field(default_factory=list, description="Empty: any placement.")
    group: Identifier = "general"
    value: float = Field(default=1.0, ge=0)
    lever: float = Field(default=1.0, ge=0)
    prior: Prior = Prior()
    caps: Caps = Caps()
    eligibility: str | None = None
    context_weights: list[ContextWeight] = Field(default_factory=list)
    content: dict[str, Any] = Field(default_factory=dict)
    target_tier: Identifier | None = Field(
        default=None, description="The equity tier this treatment aims to move the customer up to (see equity.tiers)."
    )
    tier_uplift: float = Field(default=0.2, ge=0, le=1, description="Chance that a customer who accepts reaches target_tier.")
    cost: Cost = Cost()
    brand: Identifier | None = Field(default=None, description="Brand the ROI report rolls this treatment up to.")
    campaign: Identifier | None = Field(default=None, description="Campaign for the ROI report (default: the treatment id).")

    @model_validator(mode="after")
    def _coupon_has_code(self) -> Treatment:
        if self.kind == "coupon" and "code" not in self.content:
            raise ValueError("a coupon treatment needs `content.code`")
        return self


class FrequencyCapPolicy(Strict):
    """At most N treatments of a group per customer per day/week, across channels."""

    type: Literal["frequency_cap"]
    id: Identifier
    description: str | None = None
    group: Identifier
    max_per_day: int | None = Field(default=None, ge=0)
    max_per_week: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_a_limit(self) -> FrequencyCapPolicy:
        if self.max_per_day is None and self.max_per_week is None:
            raise ValueError("a frequency_cap needs `max_per_day` or `max_per_week`")
        return self


class SuppressionPolicy(Strict):
    """No treatment of these groups for a while after an event (e.g. sales after a complaint)."""

    type: Literal["suppression"]
    id: Identifier
    description: str | None = None
    after_event: Identifier
    groups: list[Identifier] = Field(min_length=1)
    days: float = Field(gt=0, le=3650)


ContactPolicy = Annotated[FrequencyCapPolicy | SuppressionPolicy, Field(discriminator="type")]


class PlacementArbitration(Strict):
    limit: int | None = Field(default=None, ge=1, le=50)
    max_per_group: int | None = Field(default=None, ge=1, le=50)
    recent: int = Field(
        default=0,
        ge=0,
        le=MAX_RECENT_SHOWN,
        description="Latest interactions returned with every decision here (a request's `recent` overrides it).",
    )


class Arbitration(Strict):
    limit: int = Field(default=3, ge=1, le=50)
    max_per_group: int = Field(default=1, ge=1, le=50)
    placements: dict[Identifier, PlacementArbitration] = Field(default_factory=dict)
    fallback: list[Identifier] = Field(default_factory=list, description="Shown when nothing else survives.")


class Holdout(Strict):
    """A control group: these customers get no treatment, or a uniformly random eligible one."""

    share: float = Field(default=0.0, ge=0, le=0.5)
    treatment: Literal["none", "random"] = "none"


class Challenger(Strict):
    """Another rule set or another response model, on a share of customers (sticky per customer)."""

    id: Identifier
    share: float = Field(gt=0, le=0.5)
    rules: str | None = Field(
        default=None, description="Challenger rule set directory, relative to the rules directory and outside it (../challenger)."
    )
    model: Identifier | None = Field(default=None, description="Response model (models/<id>.yaml) that scores this arm.")

    @model_validator(mode="after")
    def _one_change(self) -> Challenger:
        if (self.rules is None) == (self.model is None):
            raise ValueError("a challenger names either `rules` or `model`")
        return self


class Experiments(Strict):
    """Arms a customer is assigned to by a hash of their id and `salt` (change it to reshuffle)."""

    salt: str = "experiments-1"
    holdout: Holdout = Holdout()
    placements: dict[Identifier, Holdout] = Field(default_factory=dict, description="Holdout per placement.")
    challengers: list[Challenger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shares_fit(self) -> Experiments:
        ids = [c.id for c in self.challengers]
        if len(set(ids)) != len(ids):
            raise ValueError("challenger ids must be unique")
        for where, holdout in [("holdout", self.holdout), *((f"placements.{p}", h) for p, h in self.placements.items())]:
            total = holdout.share + sum(c.share for c in self.challengers)
            if total > 0.9:
                raise ValueError(
                    f"{where}: holdout and challengers take {total:.0%} of customers; leave the champion at least 10%"
                )
        return self

    def holdout_for(self, placement: str | None) -> Holdout:
        return self.placements.get(placement, self.holdout) if placement is not None else self.holdout


class Fields(Strict):
    """Declared decision-context fields, so conditions naming anything else are refused."""

    customer: dict[Identifier, FieldTypeName] = Field(default_factory=dict)
    context: dict[Identifier, FieldTypeName] = Field(default_factory=dict)


class Duration(Strict):
    """A span of time written the way marketers say it: `{minutes: 30}`, `{days: 3}`."""

    days: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    minutes: float = Field(default=0, ge=0)
    seconds: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if self.ms <= 0:
            raise ValueError("a duration must be longer than zero")
        if self.ms > 3650 * 86_400_000:
            raise ValueError("a duration must be at most ten years")
        return self

    @property
    def ms(self) -> int:
        return int((((self.days * 24 + self.hours) * 60 + self.minutes) * 60 + self.seconds) * 1000)


class SetFlag(Strict):
    name: Identifier
    expires_after: Duration


class Increment(Strict):
    """Count occurrences; only those within `window` are kept (`counter('x', days=7)` in conditions).

    With `at` and `then`, the count is also acted on ("3 complaints in 7 days"): `then` runs when
    an occurrence brings the count within the window to exactly `at`, so once per crossing, and
    again only after older occurrences have left the window and the count comes back up. `then`
    may set or clear flags and emit a message; it may not count (no chains of thresholds).
    """

    counter: Identifier
    window: Duration
    at: int | None = Field(default=None, ge=1, le=1_000)  # a counter keeps at most 1,000 occurrences
    then: Actions | None = None

    @model_validator(mode="after")
    def _at_with_then(self) -> Increment:
        if (self.at is None) != (self.then is None):
            raise ValueError("`at` and `then` go together: `then` runs when the count reaches `at`")
        if self.then is not None and self.then.increment is not None:
            raise ValueError("a threshold's `then` may set or clear flags and emit, not increment another counter")
        return self


class Emit(Strict):
    """A message on the `outbound` stream, for push, email and SMS senders to act on."""

    channel: ChannelName
    treatment: Identifier | None = None
    message: str | None = Field(default=None, max_length=1000)


class Actions(Strict):
    set_flag: SetFlag | None = None
    clear_flags: list[Identifier] = Field(default_factory=list)
    increment: Increment | None = None
    emit: Emit | None = None


Increment.model_rebuild()  # `then` refers to Actions, defined after it


class Schedule(Strict):
    """A durable timer: `then` runs `after` the event unless an event in `cancel_on` comes first.

    A later event of the trigger's type restarts the timer (the wait counts from the last one).
    """

    after: Duration
    cancel_on: list[Identifier] = Field(default_factory=list)
    then: Actions


class Trigger(Actions):
    """On an event (optionally when a condition holds): act now, and/or schedule a timer.

    The condition sees `event.*` (the event's attributes and `type`); triggers fire as events
    arrive, so reading other state would cost every event a read.
    """

    id: Identifier
    description: str | None = None
    event: Identifier
    when: str | None = None
    schedule: Schedule | None = None


class Question(Strict):
    """A question the company wants answered, asked through the call-center agent's screen.

    It is offered as a `prompt` only while the customer's `field` is unanswered; among the
    unanswered ones the engine prefers the highest `value` (what knowing the field is worth)
    times its `relevance` now (multipliers whose conditions hold, like context weights). The
    agent records the answer with a `question_answered` event, and it lands in the profile.
    """

    id: Identifier
    field: Identifier
    text: str = Field(min_length=1, max_length=500)
    value: float = Field(gt=0)
    relevance: list[ContextWeight] = Field(default_factory=list)
    channels: list[ChannelName] = Field(default_factory=lambda: ["call_center"], min_length=1)
    placements: list[Identifier] = Field(default_factory=lambda: ["agent_prompt"])


class EventTypeDeclaration(Strict):
    """An event type and the attributes conditions may read from it (`event.<attr>` in a trigger
    on it or in a decision, `last('<type>').<attr>`), each with its type.

    Naming a built-in type adds attributes to the ones the engine declares for it. The plain
    form, a bare name, declares a type without attributes: conditions then read only `type`
    (and `ts`) of it, because an undeclared attribute would be silently missing, not an error.
    """

    name: Identifier
    attributes: dict[AttributeName, FieldTypeName] = Field(default_factory=dict)


def _named_only(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


EventTypeEntry = Annotated[EventTypeDeclaration, BeforeValidator(_named_only)]


class RuleFile(Strict):
    """One YAML file of a rule set; every section is optional."""

    fields: Fields | None = None
    event_types: list[EventTypeEntry] = Field(
        default_factory=list,
        description="Event types beyond the built-in ones, and attributes of any type: `- survey_sent` or "
        "`- {name: flight_delayed, attributes: {gate: string}}`.",
    )
    arbitration: Arbitration | None = None
    equity: EquityConfig | None = None
    experiments: Experiments | None = None
    contact_policies: list[ContactPolicy] = Field(default_factory=list)
    treatments: list[Treatment] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
