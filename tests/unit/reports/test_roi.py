"""The ROI report: hand arithmetic on a small world, rollups, the value comparison and its interval."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from engine.errors import InvalidInput
from engine.reports.roi import RoiReport, TreatmentEconomics, roi_report
from engine.reports.roi_tables import render
from engine.reports.welch import t_quantile, welch_difference

T0 = 1_795_428_000_000
DAY = 86_400_000
SINCE, UNTIL = T0, T0 + DAY

ECONOMICS = {
    "spring_banner": TreatmentEconomics(cost_per_show=0.10, cost_per_accept=2.0, brand="acme", campaign="spring"),
    "spring_coupon": TreatmentEconomics(cost_per_show=0.05, cost_per_accept=5.0, brand="acme", campaign="spring"),
    "loyalty_msg": TreatmentEconomics(brand="zenith"),  # free to show and to accept
}
# "old_offer" was removed from the rule set since it was shown.
IN_NEITHER_ARM = "in neither arm (only fallback, empty or holdout-exempt answers)"


def decision(
    decision_id: str,
    customer_id: str,
    ts: int,
    treatments: list[str],
    *,
    policy: str | None = "greedy",
    value: Mapping[str, Any] | None = None,
    fallback: bool = False,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "decision_id": decision_id,
        "customer_id": customer_id,
        "channel": "web",
        "placement": "home",
        "ts": ts,
        "treatments": [
            {"id": t, "kind": "offer", "group": "g", "score": 0.5, "propensity": 0.1, "selection_probability": 1.0}
            for t in treatments
        ],
        "fallback": fallback,
        "degraded": False,
    }
    if policy is not None:
        d["policy"] = policy
    if value is not None:
        d["value"] = value
    if model is not None:
        d["model"] = model
    return d


def fb(
    n: int, decision_id: str, treatment_id: str, outcome: str, value: float | None = None, customer_id: str = ""
) -> dict[str, Any]:
    return {
        "feedback_id": f"f{n}",
        "decision_id": decision_id,
        "treatment_id": treatment_id,
        "customer_id": customer_id
        or {"d1": "alice", "d2": "alice", "d3": "bob", "d4": "carol", "d5": "dave"}.get(decision_id, "x"),
        "outcome": outcome,
        "value": value,
        "ts": T0 + 10_000 + n,
    }


DECISIONS = [
    decision("d1", "alice", T0 + 1000, ["spring_banner", "spring_coupon"], value={"equity": 100.0, "tier": "gold", "clv": 500.0}),
    decision("d2", "alice", T0 + 2000, ["spring_banner"], value={"equity": 110.0, "tier": "silver", "clv": 510.0}),
    decision(
        "d3",
        "bob",
        T0 + 3000,
        ["spring_coupon", "loyalty_msg"],
        policy="holdout",
        value={"equity": 50.0, "tier": "silver", "clv": None},
    ),
    decision("d4", "carol", T0 + 4000, ["old_offer"], policy="epsilon_greedy"),  # an older record: no value
    decision("d5", "dave", T0 - 1, ["spring_banner"]),  # just before the window
    decision("d6", "erin", UNTIL + 1, ["spring_banner"]),  # just after it
]
FEEDBACK = [
    fb(1, "d1", "spring_banner", "impression"),
    fb(2, "d1", "spring_banner", "accept"),
    fb(3, "d1", "spring_banner", "purchase", 40.0),
    fb(4, "d1", "spring_banner", "purchase", 10.0),
    fb(5, "d1", "spring_coupon", "accept", 30.0),  # priced accept, no purchase: counts as revenue
    fb(6, "d2", "spring_banner", "click"),
    fb(7, "d3", "spring_coupon", "purchase", 20.0),
    fb(8, "d3", "spring_coupon", "accept", 99.0),  # the purchase was priced: this value does not count
    fb(9, "d3", "loyalty_msg", "accept"),
    fb(10, "d4", "old_offer", "purchase", 15.0),
    fb(11, "d5", "spring_banner", "purchase", 1000.0),  # its decision is outside the window
    fb(12, "d1", "loyalty_msg", "accept", 7.0),  # d1 never showed loyalty_msg
]
CURRENT = {"alice": (130.0, 520.0), "bob": (55.0, 80.0), "carol": (10.0, None)}


@pytest.fixture(scope="module")
def report() -> RoiReport:
    return roi_report(DECISIONS, FEEDBACK, ECONOMICS, CURRENT, since_ms=SINCE, until_ms=UNTIL)


def by_campaign(report: RoiReport) -> dict[str, Any]:
    return {c.campaign: c for c in report.campaigns}


# --- level 1: campaigns -----------------------------------------------------------------------


def test_campaign_cost_revenue_and_roi_match_hand_arithmetic(report: RoiReport) -> None:
    spring = by_campaign(report)["spring"]
    banner, coupon = spring.treatments
    assert (banner.treatment_id, coupon.treatment_id) == ("spring_banner", "spring_coupon")
    # banner: shown in d1 and d2, accepted in d1; purchases 40 + 10.
    assert (banner.spend.shows, banner.spend.accepts) == (2, 1)
    assert banner.spend.cost == pytest.approx(2 * 0.10 + 1 * 2.0)
    assert banner.spend.revenue == pytest.approx(50.0)
    assert banner.spend.roi == pytest.approx((50.0 - 2.2) / 2.2)
    assert banner.spend.acceptance_rate == pytest.approx(0.5)
    # coupon: shown in d1 and d3, accepted in both; 30 (priced accept) + 20 (purchase, not the 99 accept).
    assert (coupon.spend.shows, coupon.spend.accepts) == (2, 2)
    assert coupon.spend.cost == pytest.approx(2 * 0.05 + 2 * 5.0)
    assert coupon.spend.revenue == pytest.approx(50.0)
    # the campaign is the sum of its treatments
    assert (spring.spend.shows, spring.spend.accepts) == (4, 3)
    assert spring.spend.cost == pytest.approx(12.3)
    assert spring.spend.revenue == pytest.approx(100.0)
    assert spring.spend.roi == pytest.approx((100.0 - 12.3) / 12.3)
    assert spring.spend.acceptance_rate == pytest.approx(0.75)


def test_a_pair_accepted_and_purchased_twice_is_one_accept_whose_purchases_add_up() -> None:
    decisions = [decision("d1", "alice", T0, ["spring_banner"])]
    feedback = [
        fb(1, "d1", "spring_banner", "accept", 5.0),
        fb(2, "d1", "spring_banner", "purchase", 40.0),
        fb(3, "d1", "spring_banner", "purchase", 10.0),
    ]
    spend = roi_report(decisions, feedback, ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL).total
    assert spend.accepts == 1
    assert spend.revenue == pytest.approx(50.0)  # the accept's 5 does not add to the purchases


def test_the_largest_accept_value_counts_when_no_purchase_was_priced() -> None:
    decisions = [decision("d1", "alice", T0, ["spring_banner"])]
    feedback = [
        fb(1, "d1", "spring_banner", "accept", 12.0),
        fb(2, "d1", "spring_banner", "accept", 30.0),
        fb(3, "d1", "spring_banner", "purchase"),  # reported without a value
    ]
    r = roi_report(decisions, feedback, ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL)
    assert r.total.accepts == 1
    assert r.total.revenue == pytest.approx(30.0)
    assert "1 purchases without a value (accepts with no revenue)" in r.notes


def test_roi_is_none_when_cost_is_zero(report: RoiReport) -> None:
    loyalty = by_campaign(report)["loyalty_msg"]  # campaign defaults to the treatment id
    assert loyalty.spend.cost == 0.0
    assert (loyalty.spend.shows, loyalty.spend.accepts) == (1, 1)
    assert loyalty.spend.roi is None
    assert loyalty.spend.acceptance_rate == pytest.approx(1.0)


# --- level 2: brands --------------------------------------------------------------------------


def test_brands_roll_up_their_campaigns(report: RoiReport) -> None:
    brands = {b.brand: b for b in report.brands}
    assert list(brands) == ["acme", "unbranded", "zenith"]
    acme = brands["acme"]
    assert acme.campaigns == 1
    assert (acme.spend.shows, acme.spend.accepts) == (4, 3)
    assert acme.spend.cost == pytest.approx(12.3)
    assert acme.spend.revenue == pytest.approx(100.0)
    assert brands["unbranded"].spend.revenue == pytest.approx(15.0)  # old_offer has no brand any more
    assert brands["zenith"].spend.roi is None
    assert sum(b.spend.revenue for b in report.brands) == pytest.approx(report.total.revenue)


def test_a_brand_counts_each_of_its_campaigns_once() -> None:
    economics = {
        "a1": TreatmentEconomics(cost_per_show=1.0, brand="acme", campaign="spring"),
        "a2": TreatmentEconomics(cost_per_show=1.0, brand="acme", campaign="spring"),
        "a3": TreatmentEconomics(cost_per_show=1.0, brand="acme", campaign="summer"),
    }
    decisions = [decision("d1", "alice", T0, ["a1", "a2", "a3"])]
    r = roi_report(decisions, [], economics, {}, since_ms=SINCE, until_ms=UNTIL)
    (acme,) = r.brands
    assert (acme.campaigns, acme.spend.shows, acme.spend.cost) == (2, 3, pytest.approx(3.0))
    assert acme.spend.roi == pytest.approx(-1.0)  # all cost, no revenue


# --- level 3: customer tiers ------------------------------------------------------------------


def test_tiers_use_the_tier_at_each_customers_first_decision(report: RoiReport) -> None:
    tiers = {t.tier: t for t in report.tiers}
    assert list(tiers) == ["gold", "silver", "unknown"]  # unknown last
    # alice (gold at d1, silver by d2): shows .10 + .05 + .10, accepts 2 + 5; revenue 50 + 30
    gold = tiers["gold"]
    assert gold.customers == 1
    assert gold.spend.cost == pytest.approx(7.25)
    assert gold.spend.revenue == pytest.approx(80.0)
    assert gold.spend.roi == pytest.approx((80.0 - 7.25) / 7.25)
    # bob: coupon shown and accepted (.05 + 5), loyalty free; revenue 20
    silver = tiers["silver"]
    assert (silver.customers, silver.spend.cost, silver.spend.revenue) == (1, pytest.approx(5.05), pytest.approx(20.0))
    assert silver.revenue_per_customer == pytest.approx(20.0)
    # carol's record carries no value; her treatment is no longer priced
    unknown = tiers["unknown"]
    assert (unknown.customers, unknown.spend.cost, unknown.spend.revenue, unknown.spend.roi) == (1, 0.0, 15.0, None)
    assert sum(t.spend.cost for t in report.tiers) == pytest.approx(report.total.cost)


def test_first_decision_is_the_earliest_even_when_logged_out_of_order() -> None:
    decisions = [
        decision("late", "alice", T0 + 5000, ["spring_banner"], value={"equity": 90.0, "tier": "silver", "clv": None}),
        decision("early", "alice", T0 + 1000, ["spring_banner"], value={"equity": 80.0, "tier": "gold", "clv": None}),
    ]
    r = roi_report(decisions, [], ECONOMICS, {"alice": (100.0, None)}, since_ms=SINCE, until_ms=UNTIL)
    assert [t.tier for t in r.tiers] == ["gold"]
    assert r.value.treated.equity_change == pytest.approx(20.0)


def test_revenue_per_customer_divides_by_the_tiers_customers() -> None:
    gold = {"equity": 1.0, "tier": "gold", "clv": None}
    decisions = [decision(f"d{i}", f"c{i}", T0 + i, ["spring_banner"], value=gold) for i in range(4)]
    feedback = [fb(1, "d0", "spring_banner", "purchase", 30.0, "c0"), fb(2, "d1", "spring_banner", "purchase", 10.0, "c1")]
    (row,) = roi_report(decisions, feedback, ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL).tiers
    assert (row.customers, row.spend.revenue) == (4, pytest.approx(40.0))
    assert row.revenue_per_customer == pytest.approx(10.0)


# --- window, unknown treatments, notes ---------------------------------------------------------


def test_only_decisions_in_the_window_and_their_feedback_count(report: RoiReport) -> None:
    # d5 (a millisecond early) and d6 (a millisecond late) are out, with dave's 1000 purchase.
    assert report.counts.decisions_read == 6
    assert report.counts.decisions_in_window == 4
    assert report.total.revenue == pytest.approx(50.0 + 50.0 + 15.0)
    assert report.total.shows == 6
    assert "1 feedback for decisions outside the window" in report.notes


def test_both_ends_of_the_window_are_included() -> None:
    decisions = [decision("a", "alice", SINCE, ["spring_banner"]), decision("b", "bob", UNTIL, ["spring_banner"])]
    r = roi_report(decisions, [], ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL)
    assert r.counts.decisions_in_window == 2


def test_feedback_naming_a_treatment_not_shown_is_not_attributed(report: RoiReport) -> None:
    assert "1 feedback naming a treatment its decision did not show (not attributed)" in report.notes
    loyalty = by_campaign(report)["loyalty_msg"]
    assert loyalty.spend.revenue == 0.0  # the 7.0 reported against d1 went nowhere
    assert report.counts.feedback_joined == 10


def test_unknown_treatments_count_at_zero_cost_and_are_named_in_the_notes(report: RoiReport) -> None:
    (old,) = by_campaign(report)["old_offer"].treatments
    assert not old.priced
    assert (old.brand, old.spend.cost, old.spend.revenue) == ("unbranded", 0.0, 15.0)
    assert "treatments no longer in the rule set, counted at zero cost: old_offer" in report.notes


def test_a_repeated_decision_id_counts_once() -> None:
    d = decision("d1", "alice", T0, ["spring_banner"])
    r = roi_report([d, d], [], ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL)
    assert r.total.shows == 1
    assert "1 repeated decision ids (the first one counts)" in r.notes


def test_a_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidInput, match="before since_ms"):
        roi_report([], [], ECONOMICS, {}, since_ms=UNTIL, until_ms=SINCE)


def test_negative_costs_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cost_per_accept"):
        TreatmentEconomics(cost_per_accept=-1.0)


def test_decisions_are_read_to_the_end_before_feedback_is_started() -> None:
    order: list[str] = []

    def decisions() -> Iterator[dict[str, Any]]:
        for d in DECISIONS:
            order.append("decision")
            yield d

    def feedback() -> Iterator[dict[str, Any]]:
        for f in FEEDBACK:
            order.append("feedback")
            yield f

    r = roi_report(decisions(), feedback(), ECONOMICS, CURRENT, since_ms=SINCE, until_ms=UNTIL)
    assert order == ["decision"] * len(DECISIONS) + ["feedback"] * len(FEEDBACK)
    assert r.total.revenue == pytest.approx(115.0)  # one-shot iterators give the same report


# --- level 4: customer value ------------------------------------------------------------------


def test_value_change_compares_treated_with_holdout_and_notes_who_was_left_out(report: RoiReport) -> None:
    v = report.value
    # alice treated: 130 - 100 = 30, CLV 520 - 500 = 20; bob holdout: 55 - 50 = 5, no CLV at his first decision.
    assert (v.treated.customers, v.treated.equity_change) == (1, pytest.approx(30.0))
    assert (v.treated.clv_customers, v.treated.clv_change) == (1, pytest.approx(20.0))
    assert (v.holdout.customers, v.holdout.equity_change) == (1, pytest.approx(5.0))
    assert (v.holdout.clv_customers, v.holdout.clv_change) == (0, None)
    assert v.equity_difference.estimate == pytest.approx(25.0)
    assert v.equity_difference.ci_low is None  # one customer per arm: no interval
    assert v.clv_difference.estimate is None
    # carol was treated, but her first decision recorded no value
    assert "1 customers left out of the value comparison: no value recorded at their first decision" in report.notes


def test_treated_minus_holdout_interval_on_a_constructed_example() -> None:
    changes = {"t1": 10.0, "t2": 12.0, "t3": 14.0, "h1": 4.0, "h2": 6.0}
    decisions = [
        decision(f"d_{c}", c, T0, ["spring_banner"], policy="holdout" if c[0] == "h" else "thompson", value={"equity": 100.0})
        for c in changes
    ]
    current = {c: (100.0 + x, None) for c, x in changes.items()}
    d = roi_report(decisions, [], ECONOMICS, current, since_ms=SINCE, until_ms=UNTIL).value.equity_difference
    # means 12 and 5; variances 4/3 and 2/2; Welch df = (7/3)² / ((4/3)²/2 + 1²/1) = 2.882;
    # t(0.975, 2.882) = 3.25721 (table); half width 3.25721 · √(7/3).
    assert (d.n_a, d.n_b) == (3, 2)
    assert d.estimate == pytest.approx(7.0)
    assert d.df == pytest.approx(2.8823529, rel=1e-6)
    assert d.ci_low == pytest.approx(2.0245324, rel=1e-6)
    assert d.ci_high == pytest.approx(11.9754676, rel=1e-6)


def test_fallback_answers_do_not_move_a_customer_out_of_the_holdout() -> None:
    v0 = {"equity": 0.0}
    decisions = [
        # hana: holdout, plus a fallback answer -> holdout
        decision("a", "hana", T0, ["spring_coupon"], policy="holdout", value=v0),
        decision("b", "hana", T0 + 1, ["loyalty_msg"], policy="fallback", fallback=True, value=v0),
        # ivan: only fallback answers -> in neither arm
        decision("c", "ivan", T0, ["loyalty_msg"], policy="fallback", fallback=True, value=v0),
        # jo: holdout, plus an old record without a policy -> arm unknown, left out
        decision("d", "jo", T0, ["spring_coupon"], policy="holdout", value=v0),
        decision("e", "jo", T0 + 1, ["spring_banner"], policy=None, value=v0),
        # kim: a policy-less record does not matter once a treating decision is known
        decision("f", "kim", T0, ["spring_banner"], policy=None, value=v0),
        decision("g", "kim", T0 + 1, ["spring_banner"], policy="softmax", value=v0),
        # lee: holdout on one placement, treated on another -> treated
        decision("h", "lee", T0, ["spring_coupon"], policy="holdout", value=v0),
        decision("i", "lee", T0 + 1, ["spring_banner"], policy="greedy", value=v0),
    ]
    current = {c: (1.0, None) for c in ("hana", "ivan", "jo", "kim", "lee")}
    r = roi_report(decisions, [], ECONOMICS, current, since_ms=SINCE, until_ms=UNTIL)
    assert (r.value.treated.customers, r.value.holdout.customers) == (2, 1)
    assert "1 customers left out of the value comparison: " + IN_NEITHER_ARM in r.notes
    assert "1 customers left out of the value comparison: a decision recorded without its policy hides their arm" in r.notes


def test_answers_where_the_placement_exempts_the_holdout_do_not_move_a_member_out_of_it() -> None:
    v0 = {"equity": 0.0}
    scored = {"id": "response", "version": 3}
    exempt = {**scored, "holdout": "exempt"}  # as engine.decision.pipeline logs it
    decisions = [
        # mia: held out on the web, and a caller, whom the agent's prompt serves as everyone -> holdout
        decision("a", "mia", T0, ["spring_coupon"], policy="holdout", value=v0, model=scored),
        decision("b", "mia", T0 + 1, ["spring_banner"], policy="greedy", value=v0, model=exempt),
        # ned: a member who only ever called -> in neither arm
        decision("c", "ned", T0, ["spring_banner"], policy="greedy", value=v0, model=exempt),
        # oz: not a member; the same greedy answer treats him -> treated
        decision("d", "oz", T0, ["spring_banner"], policy="greedy", value=v0, model=scored),
    ]
    current = {c: (1.0, None) for c in ("mia", "ned", "oz")}
    r = roi_report(decisions, [], ECONOMICS, current, since_ms=SINCE, until_ms=UNTIL)
    assert (r.value.treated.customers, r.value.holdout.customers) == (1, 1)
    assert "1 customers left out of the value comparison: " + IN_NEITHER_ARM in r.notes


def test_customers_without_a_current_value_are_left_out_and_noted() -> None:
    decisions = [decision("a", "alice", T0, ["spring_banner"], value={"equity": 1.0})]
    r = roi_report(decisions, [], ECONOMICS, {}, since_ms=SINCE, until_ms=UNTIL)
    assert r.value.treated.customers == 0
    assert "1 customers left out of the value comparison: no current value" in r.notes


def simulated_world(n: int, seed: int, effect: float) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float | None]]]:
    """n treated and n holdout customers; equity changes N(1 + effect, 2²) and N(1, 3²)."""
    rng = np.random.default_rng(seed)
    decisions: list[dict[str, Any]] = []
    current: dict[str, tuple[float, float | None]] = {}
    for arm, mean, sd in (("t", 1.0 + effect, 2.0), ("h", 1.0, 3.0)):
        start = rng.uniform(0.0, 100.0, n)
        change = rng.normal(mean, sd, n)
        for i in range(n):
            customer = f"{arm}{i}"
            policy = "holdout" if arm == "h" else "epsilon_greedy"
            decisions.append(
                decision(f"d_{customer}", customer, T0 + i, ["spring_banner"], policy=policy, value={"equity": start[i]})
            )
            current[customer] = (float(start[i] + change[i]), None)
    return decisions, current


def test_interval_covers_a_known_difference_and_narrows_with_more_customers() -> None:
    widths = []
    for n in (50, 800):
        decisions, current = simulated_world(n, seed=7, effect=2.0)
        d = roi_report(decisions, [], ECONOMICS, current, since_ms=SINCE, until_ms=UNTIL).value.equity_difference
        assert d.ci_low is not None and d.ci_high is not None
        assert d.ci_low < 2.0 < d.ci_high
        widths.append(d.ci_high - d.ci_low)
    # width shrinks like 1/√n: 16 times the customers, about a quarter of the width
    assert widths[1] == pytest.approx(widths[0] / 4, rel=0.25)


def test_welch_interval_has_its_nominal_coverage_with_unequal_groups() -> None:
    rng = np.random.default_rng(11)
    hits = 0
    trials = 1000
    for _ in range(trials):
        d = welch_difference(rng.normal(3.0, 1.0, 6), rng.normal(1.0, 4.0, 25))
        assert d.ci_low is not None and d.ci_high is not None
        hits += d.ci_low < 2.0 < d.ci_high
    assert 0.93 <= hits / trials <= 0.97


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706205),
        (0.975, 2, 4.302653),
        (0.975, 5, 2.570582),
        (0.975, 10, 2.228139),
        (0.975, 30, 2.042272),
        (0.995, 4, 4.604095),
        (0.975, 1e6, 1.959966),
        (0.025, 10, -2.228139),
    ],
)
def test_t_quantile_matches_the_published_table(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-6)


def test_no_spread_gives_a_point_interval_and_an_empty_arm_gives_nothing() -> None:
    flat = welch_difference([2.0, 2.0], [1.0, 1.0, 1.0])
    assert (flat.estimate, flat.ci_low, flat.ci_high, flat.df) == (1.0, 1.0, 1.0, None)
    empty = welch_difference([1.0, 2.0], [])
    assert (empty.estimate, empty.ci_low, empty.n_a, empty.n_b) == (None, None, 2, 0)


# --- output -----------------------------------------------------------------------------------


def plain(x: Any) -> bool:
    """Only the types json produces when it reads text back."""
    if isinstance(x, dict):
        return all(isinstance(k, str) and plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(plain(v) for v in x)
    return x is None or type(x) in (str, int, float, bool)


def test_to_dict_is_plain_json_and_round_trips(report: RoiReport) -> None:
    out = report.to_dict()
    assert plain(out)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    spring = next(c for c in out["campaigns"] if c["campaign"] == "spring")
    assert spring["roi"] == pytest.approx((100.0 - 12.3) / 12.3)
    assert [t["treatment_id"] for t in spring["treatments"]] == ["spring_banner", "spring_coupon"]
    assert out["value"]["equity_difference"]["estimate"] == pytest.approx(25.0)
    assert out["value"]["interval"] == "welch_t"
    assert out["window"] == {"since_ms": SINCE, "until_ms": UNTIL}


def test_simulated_report_with_an_interval_round_trips_through_json() -> None:
    decisions, current = simulated_world(30, seed=3, effect=1.0)
    out = roi_report(decisions, [], ECONOMICS, current, since_ms=SINCE, until_ms=UNTIL).to_dict()
    assert plain(out)  # numpy never leaks into the report
    assert isinstance(out["value"]["equity_difference"]["df"], float)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_render_shows_each_level_with_the_notes(report: RoiReport) -> None:
    tables = render(report)
    assert [t.title.split(",")[0] for t in tables if isinstance(t.title, str)] == [
        "Campaign ROI",
        "Brand ROI",
        "Customer-spend ROI by tier at first decision",
        "Customer value",
    ]
    console = Console(record=True, width=240, color_system=None)
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert "old_offer *" in text
    assert "+713.0%" in text  # spring: (100 − 12.3) / 12.3
    assert "+25.00 (too few customers for an interval)" in text
    assert "2025" not in text and "2026-11-23 10:00:00 UTC" in text
    assert "treatments no longer in the rule set, counted at zero cost: old_offer" in text
