"""Per-customer value facts: what an event adds to the one hash of numbers the indices read.

Every field of :data:`FACT_FIELDS` is a float in one hash per customer. Most are decayed sums
kept with **forward decay** (Cormode, Shkapenyuk, Srivastava, Xu, ICDE 2009): an event of value
``v`` at time ``t`` adds ``v · g(t)`` with ``g(t) = exp(ln2 · (t − L) / h)``, where ``L`` is the
fixed landmark of the configuration and ``h`` the field's half-life. The stored sum is then read
at any ``now`` as

    decayed(now) = stored · exp(−ln2 · (now − L) / h) = Σ v_i · exp(−ln2 · (now − t_i) / h),

the exponentially decayed sum, with no read before a write: every update is an atomic
increment (``HINCRBYFLOAT``), and events arriving late or out of order are counted exactly.

``g`` grows with time, so it must stay finite: :func:`increments` refuses an event whose
exponent ``ln2 · (t − L) / h`` exceeds :data:`MAX_EXPONENT` (600; with the shortest allowed
half-life, a week, that is 16 years past the landmark). Before then, move the landmark to
``L'`` by multiplying every stored decayed field by ``exp(−ln2 · (L' − L) / h)``.

Increment fields (summed; value · g(t) per event):

==================  =========================================  ==============================
field               added by                                   half-life
==================  =========================================  ==============================
``spend``           purchase: ``amount``                       contribution.half_life_days
``margin``          purchase: ``margin`` (default: amount ×    contribution.half_life_days
                    contribution.default_margin_rate)
``purchases``       purchase: 1                                loyalty.frequency_half_life_days
``complaints``      complaint: 1                               perception.half_life_days
``compliments``     compliment: 1                              perception.half_life_days
``surveys``         survey: 1                                  perception.half_life_days
``survey_score``    survey: the answer mapped to [−1, 1]       perception.half_life_days
``mentions``        social_mention: 1                          perception.half_life_days
``sentiment``       social_mention: ``sentiment`` in [−1, 1]   perception.half_life_days
``referrals``       referral: 1                                referral.half_life_days
==================  =========================================  ==============================

Plain fields (epoch milliseconds, not decayed; 0 or absent means never):

* ``first_seen_ms`` — **set if smaller**: the time of the earliest event listed above;
* ``last_purchase_ms`` — **set if greater**: the time of the latest purchase;
* ``first_purchase_ms`` — **set if smaller**: the time of the first purchase.

Undecayed sums for the lifetime-value model: ``order_count`` (1 per purchase) and
``spend_total`` (``amount``).

Survey answers: attribute ``nps`` (0–10, Net Promoter classes: 9–10 promoter → +1, 7–8 passive
→ 0, 0–6 detractor → −1) or ``csat`` (1–5, linear: ``(csat − 3) / 2``), exactly one of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.equity.config import EquityConfig
from engine.errors import quoted

LN2 = 0.6931471805599453
DAY_MS = 86_400_000
MAX_EXPONENT = 600.0
MAX_AMOUNT = 1e12

FACT_FIELDS: tuple[str, ...] = (
    "spend",
    "margin",
    "purchases",
    "complaints",
    "compliments",
    "surveys",
    "survey_score",
    "mentions",
    "sentiment",
    "referrals",
    "first_seen_ms",
    "last_purchase_ms",
)
"""Column order of the facts matrix the kernels read."""
(
    SPEND,
    MARGIN,
    PURCHASES,
    COMPLAINTS,
    COMPLIMENTS,
    SURVEYS,
    SURVEY_SCORE,
    MENTIONS,
    SENTIMENT,
    REFERRALS,
    FIRST_SEEN_MS,
    LAST_PURCHASE_MS,
) = range(len(FACT_FIELDS))
N_FACTS = len(FACT_FIELDS)
_COLUMN: dict[str | bytes, int] = {name: col for col, name in enumerate(FACT_FIELDS)}
_COLUMN.update({name.encode(): col for col, name in enumerate(FACT_FIELDS)})

LIFETIME_FIELDS: tuple[str, ...] = ("order_count", "spend_total", "first_purchase_ms")
"""Undecayed purchase history in the same hash, for the lifetime-value model (BG/NBD needs the
number of repeat purchases and their span, Gamma-Gamma the mean spend); the indices ignore them."""

INCREMENT_FIELDS: tuple[str, ...] = (*FACT_FIELDS[:FIRST_SEEN_MS], "order_count", "spend_total")
SET_IF_SMALLER: tuple[str, ...] = ("first_seen_ms", "first_purchase_ms")
SET_IF_GREATER: tuple[str, ...] = ("last_purchase_ms",)
EVENT_TYPES: tuple[str, ...] = ("purchase", "complaint", "compliment", "survey", "social_mention", "referral")
"""The event types that change a customer's facts; any other gives no increments."""


def half_lives_ms(config: EquityConfig) -> tuple[float, ...]:
    """Half-life of each column of :data:`FACT_FIELDS` in milliseconds; 0 for the plain fields."""
    c = config.contribution.half_life_days * DAY_MS
    f = config.loyalty.frequency_half_life_days * DAY_MS
    p = config.perception.half_life_days * DAY_MS
    r = config.referral.half_life_days * DAY_MS
    return (c, c, f, p, p, p, p, p, p, r, 0.0, 0.0)


def _growth(ts_ms: float, landmark_ms: float, half_life_ms: float) -> float:
    exponent = LN2 * (ts_ms - landmark_ms) / half_life_ms
    if exponent > MAX_EXPONENT:
        latest = landmark_ms + MAX_EXPONENT * half_life_ms / LN2
        when = datetime.fromtimestamp(latest / 1000, UTC).date().isoformat()
        # Said to the client who sent the time (it is almost always a wrong one), with what an
        # operator would do about it if the time were right.
        raise ValueError(
            f"ts {int(ts_ms)} is later than {when}, the latest time value facts with a {half_life_ms / DAY_MS:g}-day "
            "half-life can be kept for (an operator can move the landmark, rescaling the stored sums)"
        )
    return math.exp(exponent)


def _number(attributes: Mapping[str, Any], name: str, lo: float, hi: float, *, required: bool = True) -> float | None:
    value = attributes.get(name)
    if value is None:
        if required:
            raise ValueError(f"attribute `{name}` is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"attribute `{name}` must be a number from {lo:g} to {hi:g}, got {quoted(value)}")
    return float(value)


def _survey_score(attributes: Mapping[str, Any]) -> float:
    has_nps, has_csat = attributes.get("nps") is not None, attributes.get("csat") is not None
    if has_nps == has_csat:
        raise ValueError("attribute `nps` (0-10) or `csat` (1-5) is required, exactly one of them")
    if has_nps:
        nps = _number(attributes, "nps", 0.0, 10.0)
        assert nps is not None
        return 1.0 if nps >= 9.0 else 0.0 if nps >= 7.0 else -1.0
    csat = _number(attributes, "csat", 1.0, 5.0)
    assert csat is not None
    return (csat - 3.0) / 2.0


def increments(event_type: str, attributes: Mapping[str, Any], ts_ms: int, config: EquityConfig) -> dict[str, float]:
    """The fields this event changes and by how much (see the module docstring for how to apply them).

    Raises ``ValueError`` naming the attribute for a bad value, and for a timestamp that is not a
    finite number or lies too far past the landmark.
    """
    if event_type not in EVENT_TYPES:
        return {}
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int | float) or not math.isfinite(ts_ms):
        raise ValueError(f"ts_ms must be a finite number of epoch milliseconds, got {ts_ms!r}")
    landmark = config.landmark_ms
    half = half_lives_ms(config)
    seen = {"first_seen_ms": float(ts_ms)}
    match event_type:
        case "purchase":
            amount = _number(attributes, "amount", 0.0, MAX_AMOUNT)
            assert amount is not None
            margin = _number(attributes, "margin", -MAX_AMOUNT, amount, required=False)
            if margin is None:
                margin = amount * config.contribution.default_margin_rate
            g_money = _growth(ts_ms, landmark, half[SPEND])
            return {
                "spend": amount * g_money,
                "margin": margin * g_money,
                "purchases": _growth(ts_ms, landmark, half[PURCHASES]),
                **seen,
                "last_purchase_ms": float(ts_ms),
                "order_count": 1.0,
                "spend_total": amount,
                "first_purchase_ms": float(ts_ms),
            }
        case "complaint" | "compliment":
            return {f"{event_type}s": _growth(ts_ms, landmark, half[COMPLAINTS]), **seen}
        case "survey":
            score = _survey_score(attributes)
            g = _growth(ts_ms, landmark, half[SURVEYS])
            return {"surveys": g, "survey_score": score * g, **seen}
        case "social_mention":
            sentiment = _number(attributes, "sentiment", -1.0, 1.0)
            assert sentiment is not None
            g = _growth(ts_ms, landmark, half[MENTIONS])
            return {"mentions": g, "sentiment": sentiment * g, **seen}
        case _:  # referral
            return {"referrals": _growth(ts_ms, landmark, half[REFERRALS]), **seen}


def merge(stored: Mapping[str, float], update: Mapping[str, float]) -> dict[str, float]:
    """Apply an update the way the store does: sum the increments, min/max the plain fields.

    The plain-Python statement of the store's semantics, for the simulator and the tests.
    """
    out = dict(stored)
    for name, value in update.items():
        old = out.get(name)
        if name in SET_IF_SMALLER:
            out[name] = value if old is None or old <= 0 else min(old, value)
        elif name in SET_IF_GREATER:
            out[name] = value if old is None else max(old, value)
        elif name in INCREMENT_FIELDS:
            out[name] = (old or 0.0) + value
        else:
            raise ValueError(f"`{name}` is not a fact field")
    return out


def decayed(stored: Mapping[str, float], now_ms: int, config: EquityConfig) -> dict[str, float]:
    """Every fact as of ``now_ms``: decayed sums read back, plain fields as stored (missing: 0)."""
    landmark = config.landmark_ms
    out = {}
    for name, half in zip(FACT_FIELDS, half_lives_ms(config), strict=True):
        value = float(stored.get(name, 0.0))
        out[name] = value * math.exp(-LN2 * (now_ms - landmark) / half) if half > 0 else value
    return out


def facts_row(stored: Mapping[Any, Any]) -> np.ndarray:
    """One customer's stored hash (``str`` or ``bytes`` keys and values) as float64[N_FACTS].

    Missing fields are 0; unknown fields are ignored, so adding a fact later needs no migration.
    """
    values = [0.0] * N_FACTS
    for key, value in stored.items():
        col = _COLUMN.get(key)
        if col is not None:
            values[col] = float(value)
    return np.array(values, dtype=np.float64)
