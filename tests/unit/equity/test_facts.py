"""Value facts: what each event adds, and forward decay read back against the full event history."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.equity.config import EquityConfig
from engine.equity.facts import (
    EVENT_TYPES,
    FACT_FIELDS,
    INCREMENT_FIELDS,
    LIFETIME_FIELDS,
    N_FACTS,
    SET_IF_GREATER,
    SET_IF_SMALLER,
    decayed,
    facts_row,
    increments,
    merge,
)

CONFIG = EquityConfig.default()
DAY = 86_400_000
NOW = 1_795_428_000_000  # 2026-11-23 10:00 UTC
HALF_LIFE_DAYS = {
    "spend": CONFIG.contribution.half_life_days,
    "margin": CONFIG.contribution.half_life_days,
    "purchases": CONFIG.loyalty.frequency_half_life_days,
    "complaints": CONFIG.perception.half_life_days,
    "compliments": CONFIG.perception.half_life_days,
    "surveys": CONFIG.perception.half_life_days,
    "survey_score": CONFIG.perception.half_life_days,
    "mentions": CONFIG.perception.half_life_days,
    "sentiment": CONFIG.perception.half_life_days,
    "referrals": CONFIG.referral.half_life_days,
}


def _what_it_adds(event_type: str, attrs: dict[str, Any]) -> dict[str, float]:
    """The undecayed amounts each event stands for, written independently of `increments`."""
    if event_type == "purchase":
        margin = attrs.get("margin")
        margin = attrs["amount"] * CONFIG.contribution.default_margin_rate if margin is None else margin
        return {"spend": attrs["amount"], "margin": margin, "purchases": 1.0}
    if event_type in ("complaint", "compliment", "referral"):
        return {f"{event_type}s": 1.0}
    if event_type == "survey":
        if "nps" in attrs:
            promoter, passive = attrs["nps"] >= 9, attrs["nps"] >= 7
            score = 1.0 if promoter else 0.0 if passive else -1.0
        else:
            score = (attrs["csat"] - 3) / 2
        return {"surveys": 1.0, "survey_score": score}
    if event_type == "social_mention":
        return {"mentions": 1.0, "sentiment": attrs["sentiment"]}
    return {}


_purchase = st.builds(
    lambda amount, share: {"amount": amount} if share is None else {"amount": amount, "margin": amount * share},
    st.floats(0, 5_000, allow_nan=False),
    st.none() | st.floats(-1, 1),
)
_event = st.one_of(
    st.tuples(st.just("purchase"), _purchase),
    st.tuples(st.sampled_from(["complaint", "compliment", "referral", "page_view", "cart_add"]), st.just({})),
    st.tuples(st.just("survey"), st.builds(lambda s: {"nps": s}, st.integers(0, 10))),
    st.tuples(st.just("survey"), st.builds(lambda s: {"csat": s}, st.integers(1, 5))),
    st.tuples(st.just("social_mention"), st.builds(lambda s: {"sentiment": s}, st.floats(-1, 1))),
)
# From about five and a half years before NOW (before the landmark) up to NOW.
_history = st.lists(st.tuples(_event, st.integers(0, 2_000 * DAY)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(history=_history, seed=st.integers(0, 2**32 - 1))
def test_forward_decayed_increments_equal_the_decayed_sums_of_the_history(
    history: list[tuple[tuple[str, dict[str, Any]], int]], seed: int
) -> None:
    arrivals = list(history)
    random.Random(seed).shuffle(arrivals)  # late and out-of-order events are counted exactly
    stored: dict[str, float] = {}
    for (event_type, attrs), age in arrivals:
        stored = merge(stored, increments(event_type, attrs, NOW - age, CONFIG))
    read = decayed(stored, NOW, CONFIG)

    for name in FACT_FIELDS[: FACT_FIELDS.index("first_seen_ms")]:
        half_life = HALF_LIFE_DAYS[name] * DAY
        terms = [_what_it_adds(t, a).get(name, 0.0) * math.exp(-math.log(2) * age / half_life) for (t, a), age in history]
        assert read[name] == pytest.approx(math.fsum(terms), rel=1e-9, abs=1e-9 * math.fsum(map(abs, terms)))
    counted = [NOW - age for (t, _), age in history if t in EVENT_TYPES]
    purchases = [NOW - age for (t, _), age in history if t == "purchase"]
    assert read["first_seen_ms"] == (min(counted) if counted else 0.0)
    assert read["last_purchase_ms"] == (max(purchases) if purchases else 0.0)
    # The lifetime fields are plain, undecayed sums and a minimum.
    amounts = [a["amount"] for (t, a), _ in history if t == "purchase"]
    assert stored.get("order_count", 0.0) == len(purchases)
    assert stored.get("spend_total", 0.0) == pytest.approx(math.fsum(amounts), rel=1e-9, abs=1e-9)
    assert stored.get("first_purchase_ms", 0.0) == (min(purchases) if purchases else 0.0)


def test_a_purchase_adds_spend_margin_and_one_purchase_weighted_by_its_age() -> None:
    ts = CONFIG.landmark_ms + 180 * DAY  # one contribution half-life after the landmark
    got = increments("purchase", {"amount": 100.0, "margin": 30.0}, ts, CONFIG)
    assert set(got) == {
        "spend",
        "margin",
        "purchases",
        "first_seen_ms",
        "last_purchase_ms",
        "order_count",
        "spend_total",
        "first_purchase_ms",
    }
    assert got["order_count"] == 1.0 and got["spend_total"] == 100.0 and got["first_purchase_ms"] == ts
    assert got["spend"] == pytest.approx(200.0, rel=1e-12)
    assert got["margin"] == pytest.approx(60.0, rel=1e-12)
    assert got["purchases"] == pytest.approx(2 ** (180 / 365), rel=1e-12)
    assert got["first_seen_ms"] == got["last_purchase_ms"] == ts


def test_a_purchase_without_margin_uses_the_default_margin_rate() -> None:
    got = increments("purchase", {"amount": 80.0}, CONFIG.landmark_ms, CONFIG)
    assert got["spend"] == 80.0
    assert got["margin"] == 80.0 * CONFIG.contribution.default_margin_rate


@pytest.mark.parametrize(
    ("attrs", "score"),
    [
        ({"nps": 10}, 1.0),
        ({"nps": 9}, 1.0),
        ({"nps": 8}, 0.0),
        ({"nps": 7}, 0.0),
        ({"nps": 6}, -1.0),
        ({"nps": 0}, -1.0),
        ({"csat": 5}, 1.0),
        ({"csat": 4}, 0.5),
        ({"csat": 3}, 0.0),
        ({"csat": 1}, -1.0),
    ],
)
def test_survey_answers_map_to_scores_from_minus_one_to_one(attrs: dict[str, Any], score: float) -> None:
    got = increments("survey", attrs, CONFIG.landmark_ms, CONFIG)
    assert got == {"surveys": 1.0, "survey_score": score, "first_seen_ms": CONFIG.landmark_ms}


@pytest.mark.parametrize(
    ("event_type", "attrs", "fields"),
    [
        ("complaint", {"topic": "delay"}, {"complaints"}),
        ("compliment", {}, {"compliments"}),
        ("social_mention", {"sentiment": -0.4}, {"mentions", "sentiment"}),
        ("referral", {"referred": "c-77"}, {"referrals"}),
    ],
)
def test_each_event_type_adds_to_its_own_fields(event_type: str, attrs: dict[str, Any], fields: set[str]) -> None:
    got = increments(event_type, attrs, CONFIG.landmark_ms, CONFIG)
    assert set(got) == fields | {"first_seen_ms"}
    assert all(got[f] != 0.0 for f in fields)


@pytest.mark.parametrize("event_type", ["page_view", "cart_add", "checkout", "flight_delayed", "no_such_event"])
def test_other_events_add_nothing(event_type: str) -> None:
    assert increments(event_type, {"amount": -5, "sentiment": 9}, NOW, CONFIG) == {}


@pytest.mark.parametrize(
    ("event_type", "attrs", "named"),
    [
        ("purchase", {"amount": -1.0}, "amount"),
        ("purchase", {}, "amount"),
        ("purchase", {"amount": True}, "amount"),
        ("purchase", {"amount": "12"}, "amount"),
        ("purchase", {"amount": math.nan}, "amount"),
        ("purchase", {"amount": 10.0, "margin": 11.0}, "margin"),
        ("social_mention", {"sentiment": 1.5}, "sentiment"),
        ("social_mention", {"sentiment": -1.01}, "sentiment"),
        ("social_mention", {}, "sentiment"),
        ("survey", {"nps": 11}, "nps"),
        ("survey", {"nps": -1}, "nps"),
        ("survey", {"csat": 0}, "csat"),
        ("survey", {"csat": 6}, "csat"),
        ("survey", {}, "nps"),
        ("survey", {"nps": 9, "csat": 5}, "csat"),
    ],
)
def test_bad_attribute_values_are_refused_naming_the_attribute(event_type: str, attrs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"`{named}`"):
        increments(event_type, attrs, NOW, CONFIG)


def test_a_timestamp_too_far_past_the_landmark_is_refused() -> None:
    weekly = EquityConfig.model_validate({"perception": {"half_life_days": 7}})
    assert increments("complaint", {}, weekly.landmark_ms + 16 * 365 * DAY, weekly)["complaints"] < 1e261
    with pytest.raises(ValueError, match="landmark"):
        increments("complaint", {}, weekly.landmark_ms + 17 * 365 * DAY, weekly)
    with pytest.raises(ValueError, match="ts_ms"):
        increments("complaint", {}, math.inf, CONFIG)  # type: ignore[arg-type]


def test_merge_sums_increments_and_keeps_the_earliest_first_seen_and_latest_purchase() -> None:
    stored = merge({}, {"spend": 10.0, "first_seen_ms": 500.0, "last_purchase_ms": 500.0})
    stored = merge(stored, {"spend": 5.0, "first_seen_ms": 900.0, "last_purchase_ms": 900.0})
    stored = merge(stored, {"first_seen_ms": 100.0, "last_purchase_ms": 300.0, "referrals": 1.0})
    assert stored == {"spend": 15.0, "first_seen_ms": 100.0, "last_purchase_ms": 900.0, "referrals": 1.0}
    assert merge({"first_seen_ms": 0.0}, {"first_seen_ms": 42.0})["first_seen_ms"] == 42.0  # 0 is "never"
    with pytest.raises(ValueError, match="`bogus`"):
        merge({}, {"bogus": 1.0})


def test_field_kinds_partition_the_stored_fields() -> None:
    stored = set(FACT_FIELDS) | set(LIFETIME_FIELDS)
    assert set(INCREMENT_FIELDS) | set(SET_IF_SMALLER) | set(SET_IF_GREATER) == stored
    assert len(INCREMENT_FIELDS) + len(SET_IF_SMALLER) + len(SET_IF_GREATER) == len(stored)
    assert len(FACT_FIELDS) == N_FACTS and not set(LIFETIME_FIELDS) & set(FACT_FIELDS)


def test_facts_row_reads_a_stored_hash_in_column_order() -> None:
    row = facts_row({b"spend": b"12.5", "referrals": "2", b"first_seen_ms": b"1700000000000", b"not_a_fact": b"9"})
    assert row.dtype == np.float64 and row.shape == (N_FACTS,)
    expected = np.zeros(N_FACTS)
    expected[FACT_FIELDS.index("spend")] = 12.5
    expected[FACT_FIELDS.index("referrals")] = 2.0
    expected[FACT_FIELDS.index("first_seen_ms")] = 1.7e12
    assert np.array_equal(row, expected)
