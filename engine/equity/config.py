"""The marketer-set equity configuration (the `equity:` section of ``rules/equity.yaml``), validated with ``extra="forbid"``.

What each setting means for the indices is written out in :mod:`engine.equity.indices`; the
facts the half-lives apply to are in :mod:`engine.equity.facts`. Weights are written as the
marketer thinks of them (any non-negative numbers, not all zero) and normalised when used.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from engine.validation import Strict

TierName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
HalfLifeDays = Annotated[float, Field(ge=7, le=3650)]
"""At least a week: the forward-decay sums then stay finite for 16 years past the landmark."""
Weight = Annotated[float, Field(ge=0, le=1000)]


def _normalised(values: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(values)
    return tuple(v / total for v in values)


class IndexWeights(Strict):
    """How much each index counts in the equity score; normalised to sum to one."""

    contribution: Weight = 0.35
    perception: Weight = 0.2
    referral: Weight = 0.15
    loyalty: Weight = 0.3

    @model_validator(mode="after")
    def _not_all_zero(self) -> IndexWeights:
        if self.contribution + self.perception + self.referral + self.loyalty <= 0:
            raise ValueError("at least one of contribution, perception, referral, loyalty must be positive")
        return self

    @property
    def normalised(self) -> tuple[float, float, float, float]:
        c, p, r, lo = _normalised((self.contribution, self.perception, self.referral, self.loyalty))
        return c, p, r, lo


class Contribution(Strict):
    """Spend and margin, decayed with one half-life, each saturating at its scale."""

    half_life_days: HalfLifeDays = 180
    spend_scale: float = Field(default=1000.0, gt=0, description="Decayed spend that scores half the spend part.")
    margin_scale: float = Field(default=250.0, gt=0, description="Decayed margin that scores half the margin part.")
    margin_share: float = Field(default=0.5, ge=0, le=1, description="Weight of margin against spend.")
    default_margin_rate: float = Field(default=0.25, ge=0, le=1, description="Margin of a purchase that states none.")


class Perception(Strict):
    """Complaints, compliments, survey answers and social sentiment, pooled as signed evidence."""

    half_life_days: HalfLifeDays = 180
    prior_strength: float = Field(default=2.0, gt=0, le=1000, description="Neutral pseudo-observations.")
    complaint_weight: Weight = 2.0
    compliment_weight: Weight = 1.0
    survey_weight: Weight = 2.0
    mention_weight: Weight = 0.5


class Referral(Strict):
    half_life_days: HalfLifeDays = 365
    scale: float = Field(default=2.0, gt=0, description="Decayed referrals that score 50.")


class LoyaltyWeights(Strict):
    tenure: Weight = 0.2
    recency: Weight = 0.3
    frequency: Weight = 0.3
    retention: Weight = 0.2

    @model_validator(mode="after")
    def _not_all_zero(self) -> LoyaltyWeights:
        if self.tenure + self.recency + self.frequency + self.retention <= 0:
            raise ValueError("at least one of tenure, recency, frequency, retention must be positive")
        return self

    @property
    def normalised(self) -> tuple[float, float, float, float]:
        t, r, f, p = _normalised((self.tenure, self.recency, self.frequency, self.retention))
        return t, r, f, p


class Loyalty(Strict):
    frequency_half_life_days: HalfLifeDays = 365
    frequency_scale: float = Field(default=6.0, gt=0, description="Decayed purchase count that scores half.")
    recency_half_life_days: float = Field(default=90.0, gt=0, le=3650)
    tenure_scale_days: float = Field(default=730.0, gt=0, le=36500, description="Tenure that scores half.")
    weights: LoyaltyWeights = LoyaltyWeights()


class Tier(Strict):
    name: TierName
    min_equity: float = Field(ge=0, lt=100)


MAX_TIERS = 20
DEFAULT_TIERS = (
    Tier(name="bronze", min_equity=0),
    Tier(name="silver", min_equity=35),
    Tier(name="gold", min_equity=55),
    Tier(name="platinum", min_equity=75),
)


class EquityConfig(Strict):
    """Everything the equity kernels need, as one validated, immutable value."""

    landmark: date = Field(default=date(2024, 1, 1), description="Forward-decay landmark (UTC midnight).")
    weights: IndexWeights = IndexWeights()
    contribution: Contribution = Contribution()
    perception: Perception = Perception()
    referral: Referral = Referral()
    loyalty: Loyalty = Loyalty()
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    money_per_point: float = Field(default=20.0, ge=0, le=1e9, description="Money value of one equity point.")

    @field_validator("landmark")
    @classmethod
    def _plausible_landmark(cls, value: date) -> date:
        if not 2000 <= value.year <= 2100:
            raise ValueError(f"the landmark must be a date between 2000 and 2100, got {value.isoformat()}")
        return value

    @field_validator("tiers")
    @classmethod
    def _ordered_tiers(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not 1 <= len(tiers) <= MAX_TIERS:
            raise ValueError(f"between 1 and {MAX_TIERS} tiers are needed, got {len(tiers)}")
        if tiers[0].min_equity != 0:
            raise ValueError(f"the first tier (`{tiers[0].name}`) must start at min_equity 0, got {tiers[0].min_equity:g}")
        seen: set[str] = set()
        for i, tier in enumerate(tiers):
            if tier.name in seen:
                raise ValueError(f"tier name `{tier.name}` appears twice")
            seen.add(tier.name)
            if i and not tier.min_equity > tiers[i - 1].min_equity:
                raise ValueError(
                    f"tiers[{i}].min_equity ({tier.min_equity:g}, `{tier.name}`) must be greater than "
                    f"tiers[{i - 1}].min_equity ({tiers[i - 1].min_equity:g}, `{tiers[i - 1].name}`)"
                )
        return tiers

    @classmethod
    def default(cls) -> EquityConfig:
        """The shipped configuration; ``rules/equity.yaml`` writes the same values out."""
        return cls()

    @property
    def landmark_ms(self) -> int:
        moment = datetime(self.landmark.year, self.landmark.month, self.landmark.day, tzinfo=UTC)
        return int(moment.timestamp()) * 1000

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier_rank(self, name: str) -> int:
        """Position of a tier, lowest first; ``ValueError`` naming the tier if it is not configured."""
        for i, tier in enumerate(self.tiers):
            if tier.name == name:
                return i
        raise ValueError(f"unknown tier `{name}` (configured: {', '.join(self.tier_names)})")
