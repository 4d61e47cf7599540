"""Wire schemas of the HTTP API (a `...Request` / `...Response` family).

They check shape and types; the meaning (known channel, event attributes, ...) is checked once,
in the core, so gRPC refuses the same things with the same messages.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic_core import PydanticCustomError

from engine.domain import CUSTOMER_ID_PATTERN, MAX_RECENT_SHOWN, MAX_TS

CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, examples=["cust-000042"])]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Timestamp = Annotated[int, Field(ge=0, le=MAX_TS, description="Milliseconds since the epoch (up to the end of year 9999).")]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMBER_ERROR = "json_number"
"""Error type of a bad number inside free-form JSON; its `ctx.at` is the path below the field
(`.x`, `.a[2]`), which the error handler appends so the client is told the exact value."""


def _bad_number(value: Any, at: str) -> tuple[str, str] | None:
    """(path below the checked value, why) of the first number the store cannot keep, if any.

    Free-form JSON is stored as JSON by orjson, which refuses integers outside int64 (a 500, and
    too late: a batch's event ids would already be claimed); NaN and Infinity, which pydantic's
    parser reads, would silently come back as null.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            found = _bad_number(item, f"{at}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _bad_number(item, f"{at}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return at, "integer outside the signed 64-bit range"
    elif isinstance(value, float) and not math.isfinite(value):
        return at, "number must be finite"
    return None


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    found = _bad_number(value, "")
    if found is not None:
        raise PydanticCustomError(NUMBER_ERROR, found[1], {"at": found[0]})
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
"""Free-form JSON (attributes, context): any shape, but only numbers the store can keep."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionRequest(Body):
    customer_id: CustomerId
    channel: Literal["web", "mobile_app", "call_center", "email", "sms", "push", "social"]
    placement: str | None = Field(default=None, max_length=64)
    context: JsonObject = Field(default_factory=dict)
    event: JsonObject | None = Field(default=None, description="The event that prompted this decision, if any.")
    limit: int | None = Field(default=None, ge=1, le=50)
    explain: bool = False
    recent: int | None = Field(
        default=None,
        ge=0,
        le=MAX_RECENT_SHOWN,
        description="Also return this many of the customer's latest interactions; unset: the placement's setting in the rules.",
    )


class TreatmentOut(BaseModel):
    id: str
    kind: str
    group: str
    score: float = Field(description="Arbitration priority: propensity x context weight x value x lever.")
    propensity: float = Field(description="Predicted probability that the customer responds positively.")
    content: dict[str, Any]
    selection_probability: float = Field(
        description="Probability that the engine's policy shows this treatment here (for unbiased learning and evaluation)."
    )


class VerdictOut(BaseModel):
    """Why one candidate was chosen or dropped."""

    treatment_id: str
    stage: str = Field(description="eligibility, cap, suppression, policy, arbitration (outranked) or chosen.")
    reason: str = Field(description="The same, in words.")
    detail: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Structured detail. For `eligibility`: `{condition, failed: [{expression, was, values}]}`, "
            "each failed sub-expression with the values it read (null: missing); for a contact "
            "policy: its id; for scored candidates: `{value, tier_gain, context_weights}`."
        ),
    )
    components: dict[str, float] | None = Field(
        default=None,
        description=(
            "For scored candidates: P (propensity), C (context weight), V (value with any expected tier "
            "gain), L (lever) and priority = P × C × V × L; `rank` and `selection_probability` when chosen."
        ),
    )


class AdjustedLine(BaseModel):
    sku: str
    qty: int
    price: float
    discount: float


class CartAdjustment(BaseModel):
    treatment_id: str
    coupon: str | None
    lines: list[AdjustedLine]
    discount: float = Field(description="Total off the cart.")


class CustomerValueOut(BaseModel):
    contribution: float = Field(description="Contribution index, 0-100: spend and margin, recent counting more.")
    perception: float = Field(description="Perception index, 0-100 (50 neutral): compliments, complaints, surveys, mentions.")
    referral: float = Field(description="Referral index, 0-100.")
    loyalty: float = Field(description="Loyalty index, 0-100: tenure, recency, frequency, retention.")
    equity: float = Field(description="The four indices weighed as the rules' equity section says, 0-100.")
    tier: str = Field(description="Equity tier, from the rules' tier bounds.")
    p_alive: float | None = Field(default=None, description="Probability the customer is still active (BG/NBD).")
    expected_purchases: float | None = Field(default=None, description="Purchases expected over the next year.")
    clv: float | None = Field(default=None, description="Discounted margin expected over the next 12 months.")


class DecisionResponse(BaseModel):
    decision_id: str
    customer_id: str
    channel: str
    placement: str | None
    treatments: list[TreatmentOut]
    rules_version: str
    degraded: bool = Field(description="True when state could not be read or written; the answer is a safe default.")
    fallback: bool
    model_version: str | None = Field(default=None, description="`<model>@<version>` that scored the candidates.")
    cart_adjustments: list[CartAdjustment] = Field(
        default_factory=list, description="Chosen coupons as discounts on the cart's lines, for the channel to apply."
    )
    explanations: list[VerdictOut] | None = None
    customer_value: CustomerValueOut | None = Field(default=None, description="The customer's worth when decided.")
    arm: str = Field(default="champion", description="Experiment arm: champion, holdout or challenger:<id>.")
    recent: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The customer's latest interactions across channels, newest first, as many as asked for (`recent`).",
    )


class EventRequest(Body):
    event_id: Id
    customer_id: CustomerId
    type: str = Field(min_length=1, max_length=64)
    ts: Timestamp | None = Field(default=None, description="Milliseconds since the epoch (up to year 9999); default: now.")
    channel: str | None = None
    attributes: JsonObject = Field(default_factory=dict)


class EventBatchRequest(Body):
    events: list[EventRequest] = Field(min_length=1)


def _event_shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "one"


EventsBody = Annotated[
    Annotated[EventRequest, Tag("one")] | Annotated[EventBatchRequest, Tag("batch")],
    Discriminator(_event_shape),
]


class IngestResponse(BaseModel):
    accepted: int
    duplicates: int


class FeedbackRequest(Body):
    feedback_id: Id
    decision_id: Id
    treatment_id: Id
    outcome: Literal["impression", "click", "accept", "reject", "purchase"]
    value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    ts: Timestamp | None = None


class FeedbackResponse(BaseModel):
    accepted: bool
    duplicate: bool


class CustomerResponse(BaseModel):
    customer_id: str
    known: bool
    profile: dict[str, Any]
    cart: dict[str, Any]
    suppressions: list[dict[str, Any]]
    recent: list[dict[str, Any]] = Field(description="Interactions across channels, newest first.")
    responses: dict[str, int]
    purchases: list[dict[str, Any]] = Field(description="Purchase history, newest first.")
    orders: list[dict[str, Any]] = Field(description="Latest status of each order, newest first.")
    value: CustomerValueOut | None = None


class ErrorResponse(BaseModel):
    error: str
    message: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class VoiceTopic(BaseModel):
    topic: str
    liked: int = Field(description="Compliments on this topic.")
    disliked: int = Field(description="Complaints on this topic.")
    ideas: int = Field(description="Ideas on this topic.")


class VoiceResponse(BaseModel):
    days: int
    since: str = Field(description="First day counted (UTC, yyyymmdd).")
    topics: list[VoiceTopic] = Field(description="Most mentioned first.")
