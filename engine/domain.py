"""Plain data shared by every layer: requests, events, feedback and what a decision returns.

These are dataclasses, not pydantic models, so the core stays free of I/O frameworks; the
front ends validate wire input and build these.

Records made for every request (here and the decision's intermediate ones) are slotted but not
frozen, and are never changed once built (`dataclasses.replace` makes a changed copy). A frozen
dataclass sets each field through `object.__setattr__` in `__init__`: about 135 ns a field
against 20, and a decision builds about a hundred fields' worth of records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Channel = Literal["web", "mobile_app", "call_center", "email", "sms", "push", "social"]
CHANNELS: tuple[str, ...] = ("web", "mobile_app", "call_center", "email", "sms", "push", "social")

TreatmentKind = Literal["offer", "prompt", "message", "coupon"]
Outcome = Literal["impression", "click", "accept", "reject", "purchase"]
OUTCOMES: tuple[str, ...] = ("impression", "click", "accept", "reject", "purchase")


@dataclass(slots=True)
class DecisionRequest:
    customer_id: str
    channel: str
    placement: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    event: dict[str, Any] | None = None
    explain: bool = False
    recent: int | None = None
    """How many of the customer's latest interactions to return with the decision (None: the
    placement's setting), so a screen gets its prompts and the history behind them in one call."""


@dataclass(slots=True)
class Event:
    event_id: str
    customer_id: str
    type: str
    ts: int | None = None
    channel: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Feedback:
    feedback_id: str
    decision_id: str
    treatment_id: str
    outcome: str
    value: float | None = None
    ts: int | None = None


@dataclass(slots=True)
class ChosenTreatment:
    id: str
    kind: str
    group: str
    score: float
    propensity: float
    content: Mapping[str, Any]
    """Shared with the rule set: read it, never change it."""
    selection_probability: float = 1.0
    """Probability that the policy shows this treatment (not to be confused with `propensity`)."""


VerdictStage = Literal["eligibility", "cap", "policy", "suppression", "arbitration", "chosen"]


@dataclass(slots=True)
class Verdict:
    """Why a candidate was chosen or dropped: the stage that decided, in words and as data.

    `detail` is structured and depends on the stage: for `eligibility`,
    `{"condition", "failed": [{"expression", "was", "values"}]}`; for scored candidates, what
    the value and context weight are made of. `components` is set for scored candidates (`chosen`,
    `arbitration`, `policy`): `P` (propensity), `C` (context weight), `V` (value, with any
    expected tier gain), `L` (lever) and `priority` = P × C × V × L, plus `rank` and
    `selection_probability` for chosen ones.
    """

    treatment_id: str
    stage: VerdictStage
    reason: str
    detail: dict[str, Any] | None = None
    components: dict[str, float] | None = None


@dataclass(slots=True)
class Decision:
    decision_id: str
    customer_id: str
    channel: str
    placement: str | None
    treatments: tuple[ChosenTreatment, ...]
    rules_version: str
    ts: int
    degraded: bool = False
    fallback: bool = False
    verdicts: tuple[Verdict, ...] = ()
    model_version: str | None = None
    cart_adjustments: tuple[dict[str, Any], ...] = ()
    """Coupons chosen, as discounts on the cart's line items, for the channel to apply."""
    customer_value: dict[str, Any] | None = None
    """The customer's indices, equity, tier and lifetime value at decision time."""
    arm: str = "champion"
    """Experiment arm: `champion`, `holdout` or `challenger:<id>` (engine.decision.arms)."""
    recent: tuple[dict[str, Any], ...] = ()
    """The customer's latest interactions across channels, newest first, when asked for."""


@dataclass(slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class FeedbackResult:
    accepted: bool
    duplicate: bool


MAX_TS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in ms: the last instant a calendar date can name, and the largest
`ts` an event or feedback may carry. A larger one is a unit mistake (µs, ns) or garbage: day and
week keys cannot be named for it, and past 2**63 the store could not even keep it. Both front ends
and the core hold to this one bound, so HTTP and gRPC refuse the same times."""

MAX_RECENT_SHOWN = 50
"""The most interactions a decision may return with it: a screen's worth, not an export."""

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"
"""Customer ids become part of Redis keys inside a `{...}` hash tag, so braces are refused."""


@dataclass(slots=True)
class CustomerState:
    """One customer's state as read in a single round trip; empty for an unknown customer."""

    customer_id: str
    profile: dict[str, Any] = field(default_factory=dict)
    cart: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)
    caps_day: dict[str, int] = field(default_factory=dict)
    caps_week: dict[str, int] = field(default_factory=dict)
    caps_total: dict[str, int] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    counters: dict[str, list[int]] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)
    """Value facts as stored (engine.equity.facts): decayed sums and first/last times."""

    @property
    def known(self) -> bool:
        return bool(self.profile or self.last or self.cart)

    def cart_summary(self) -> dict[str, Any]:
        value = 0.0
        items = 0
        for item in self.cart.values():
            qty = int(item.get("qty", 1))
            items += qty
            value += qty * float(item.get("price", 0.0))
        return {"value": round(value, 2), "items": items, "skus": list(self.cart)}


@dataclass(slots=True)
class StoredDecision:
    """The decision record kept (with a TTL) so feedback can join it, and logged on the stream."""

    decision_id: str
    customer_id: str
    channel: str
    placement: str | None
    ts: int
    rules_version: str
    treatments: list[dict[str, Any]]
    degraded: bool = False
    fallback: bool = False
    policy: str = "greedy"
    """How the list was picked: the exploration policy, or `holdout` (uniformly at random)."""
    model: dict[str, Any] | None = None
    """`{id, version, fingerprint}` of the response model that scored the candidates, if any;
    with `holdout: exempt` when the customer is in that model's holdout but this placement served
    them as it serves everyone (engine.decision.pipeline.assigned_policy)."""
    inputs: dict[str, Any] | None = None
    """The customer and context fields the model read, so learning uses what the model saw."""
    candidates: list[dict[str, Any]] | None = None
    """Every suitable candidate (id, group, kind, multiplier, propensity, prior), so an offline
    evaluator can ask what another policy would have shown from the same choice."""
    limits: dict[str, int] | None = None
    """The slate's limit, max per group and remaining group budgets (`budget:<group>`)."""
    value: dict[str, Any] | None = None
    """`{equity, tier, clv}` of the customer when decided: the ROI report's starting point."""
    arm: str = "champion"
    """Experiment arm the customer was in (engine.decision.arms)."""

    def treatment_ids(self) -> list[str]:
        return [t["id"] for t in self.treatments]

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> StoredDecision:
        """A record as read back, without the fields this version does not know. While a new
        version rolls out, processes of the old one read records the new one wrote; a field
        added to the record must not make them refuse it (and drop the feedback it answers)."""
        return cls(**{k: v for k, v in data.items() if k in _STORED_FIELDS})


_STORED_FIELDS = frozenset(f.name for f in fields(StoredDecision))

_HOLDOUT_KEY, _EXEMPT = "holdout", "exempt"
HOLDOUT_EXEMPT: Mapping[str, str] = {_HOLDOUT_KEY: _EXEMPT}
"""Added to a decision's model entry (StoredDecision.model) when the customer is in that model's
holdout but the placement served them as it serves everyone (engine.decision.pipeline.assigned_policy)."""


def holdout_exempt(model: object) -> bool:
    """Whether a stored decision's model entry says so (HOLDOUT_EXEMPT): the ROI report then
    counts the answer in neither arm."""
    return isinstance(model, Mapping) and model.get(_HOLDOUT_KEY) == _EXEMPT


@dataclass(slots=True)
class EventEffects:
    event: Event
    ts: int
    profile_set: dict[str, Any] = field(default_factory=dict)
    cart_add: dict[str, dict[str, Any]] = field(default_factory=dict)
    cart_remove: tuple[str, ...] = ()
    cart_clear: bool = False
    order: tuple[str, str] | None = None
    """(order id, status) this event reports."""
    voice: tuple[str, str] | None = None
    """(liked | disliked | ideas, topic) for voice-of-the-customer counts."""
    triggers: Any = None
    """The trigger effects (`engine.rules.triggers.TriggerEffects`) this event causes, if any."""
    facts: dict[str, float] = field(default_factory=dict)
    """What the event adds to the customer's value facts (engine.equity.facts.increments)."""

    @property
    def interaction(self) -> dict[str, Any]:
        """The entry kept in the customer's recent interactions and in `last`."""
        e = self.event
        return {"event_id": e.event_id, "type": e.type, "ts": self.ts, "channel": e.channel, "attributes": e.attributes}
