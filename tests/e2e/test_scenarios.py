"""The example rule set's scenarios, walked through the HTTP API as channels would."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis import Redis

from engine.errors import StoreUnavailable
from engine.state import keys
from tests.e2e.conftest import Channel


def outbound(redis_sync: Redis) -> list[dict[str, object]]:
    return [orjson.loads(fields[b"m"]) for _, fields in redis_sync.xrange(keys.STREAM_OUTBOUND)]


def test_flight_delayed_45_minutes_earns_an_apology_upgrade_in_the_app(channel: Channel, redis_sync: Redis) -> None:
    channel.event("alice", "flight_delayed", delay_minutes=50, flight="AF123")
    (push,) = outbound(redis_sync)
    assert (push["customer_id"], push["channel"], push["treatment"]) == ("alice", "push", "apology_upgrade")
    channel.clock.advance(hours=2)
    offered = channel.offered("alice", "mobile_app")
    assert offered[0] == "apology_upgrade"


def test_a_30_minute_delay_earns_nothing_and_the_apology_lapses_after_a_day(channel: Channel, redis_sync: Redis) -> None:
    channel.event("ben", "flight_delayed", delay_minutes=30)
    assert "apology_upgrade" not in channel.offered("ben", "mobile_app")
    assert outbound(redis_sync) == [], "no push for a short delay"
    channel.event("carla", "flight_delayed", delay_minutes=90)
    channel.clock.advance(hours=25)
    assert "apology_upgrade" not in channel.offered("carla", "mobile_app")


def test_apology_upgrade_respects_its_daily_cap(channel: Channel) -> None:
    channel.event("alice", "flight_delayed", delay_minutes=120)
    shown = [("apology_upgrade" in channel.offered("alice", "mobile_app")) for _ in range(3)]
    assert shown == [True, True, False]
    channel.clock.advance(days=1)
    channel.event("alice", "flight_delayed", delay_minutes=120)
    assert "apology_upgrade" in channel.offered("alice", "mobile_app")


def test_abandoned_cart_gets_a_sweetener_the_next_day_on_another_channel(channel: Channel) -> None:
    channel.event("ben", "cart_add", channel="web", sku="TKT-42", price=120.0, qty=2)
    channel.clock.advance(minutes=20)
    assert channel.fire_timers() == 0
    assert "cart_sweetener" not in channel.offered("ben", "web"), "too early: the customer may still check out"
    channel.clock.advance(minutes=11)
    assert channel.fire_timers() == 1
    channel.clock.advance(days=1)
    assert "cart_sweetener" in channel.offered("ben", "mobile_app")
    assert channel.fire_timers() == 0, "a timer fires once"


def test_checkout_in_time_cancels_the_sweetener(channel: Channel) -> None:
    channel.event("ben", "cart_add", sku="TKT-42", price=120.0)
    channel.clock.advance(minutes=10)
    channel.event("ben", "checkout")
    channel.clock.advance(hours=2)
    assert channel.fire_timers() == 0, "the checkout cancelled the timer"
    assert "cart_sweetener" not in channel.offered("ben", "web")
    assert channel.view("ben")["cart"]["items"] == 0


def test_a_later_cart_add_restarts_the_wait(channel: Channel) -> None:
    channel.event("ben", "cart_add", sku="A", price=10.0)
    channel.clock.advance(minutes=25)
    channel.event("ben", "cart_add", sku="B", price=10.0)
    channel.clock.advance(minutes=10)
    assert channel.fire_timers() == 0, "30 minutes count from the last cart_add"
    channel.clock.advance(minutes=21)
    assert channel.fire_timers() == 1


def test_the_abandoned_cart_flag_lapses_after_three_days(channel: Channel) -> None:
    channel.event("ben", "cart_add", sku="A", price=10.0)
    channel.clock.advance(minutes=31)
    channel.fire_timers()
    channel.clock.advance(days=2, hours=23)
    assert "cart_sweetener" in channel.offered("ben", "email")
    channel.clock.advance(hours=2)
    assert "cart_sweetener" not in channel.offered("ben", "email")


def test_trigger_gated_offer_goes_only_to_customers_who_showed_the_behaviour(channel: Channel) -> None:
    for _ in range(3):
        channel.event("dev", "page_view", page="premium_seats")
        channel.event("alice", "page_view", page="home")
    channel.event("carla", "page_view", page="premium_seats")
    assert "premium_seat_upgrade" in channel.offered("dev", "web")
    assert "premium_seat_upgrade" not in channel.offered("alice", "web"), "browsed, but not premium seats"
    assert "premium_seat_upgrade" not in channel.offered("carla", "web"), "once is not three times"
    channel.clock.advance(days=1, minutes=1)
    assert "premium_seat_upgrade" not in channel.offered("dev", "mobile_app"), "the interest was a day ago"


def test_complaint_on_social_shows_beside_purchases_and_order_status(channel: Channel) -> None:
    channel.event("dev", "purchase", channel="web", amount=420.0, order_id="O-1")
    channel.event("dev", "order_status", order_id="O-1", status="delayed")
    channel.event("dev", "purchase", channel="mobile_app", amount=35.0, order_id="O-2")
    channel.event("dev", "complaint", channel="social", topic="delivery", text="Where is my order O-1?")
    view = channel.view("dev")
    assert view["recent"][0]["type"] == "complaint" and view["recent"][0]["channel"] == "social"
    assert [p["attributes"]["order_id"] for p in view["purchases"]] == ["O-2", "O-1"]
    assert {o["order_id"]: o["status"] for o in view["orders"]} == {"O-1": "delayed", "O-2": "placed"}
    assert view["suppressions"][0]["group"] == "sales"


def test_complaint_suppresses_sales_for_seven_days_and_favours_service_recovery(channel: Channel) -> None:
    assert "credit_card_offer" in channel.offered("dev", "mobile_app")
    channel.event("dev", "complaint", channel="social", topic="lost_luggage", text="Still no bag after 3 days")
    decision = channel.decide("dev", "mobile_app", explain=True)
    offered = [t["id"] for t in decision["treatments"]]
    assert offered[0] == "service_recovery"
    assert "credit_card_offer" not in offered
    assert any(e["treatment_id"] == "credit_card_offer" and e["stage"] == "suppression" for e in decision["explanations"])

    view = channel.view("dev")
    assert view["suppressions"][0]["group"] == "sales" and view["suppressions"][0]["policy"] == "complaint_cooldown"
    assert view["recent"][0]["type"] == "complaint" and view["recent"][0]["attributes"]["topic"] == "lost_luggage"

    channel.clock.advance(days=7, minutes=1)
    assert "credit_card_offer" in channel.offered("dev", "mobile_app")
    assert channel.view("dev")["suppressions"] == []


def test_new_web_visitor_gets_a_coupon_to_apply_to_the_cart(channel: Channel) -> None:
    decision = channel.decide("visitor-1", "web")
    coupon = next(t for t in decision["treatments"] if t["id"] == "welcome_coupon")
    assert coupon["kind"] == "coupon" and coupon["content"]["code"] == "WELCOME10"
    channel.event("visitor-1", "purchase", amount=80.0)
    assert "welcome_coupon" not in channel.offered("visitor-1", "web")


def test_same_placement_gives_a_parent_and_a_young_adult_different_journeys(channel: Channel) -> None:
    parent = channel.offered("carla", "web", placement="event_tickets", context={"companion": "child", "party_size": 2})
    young = channel.offered("ben", "web", placement="event_tickets", context={"companion": "friends"})
    assert "family_bundle" in parent and "night_out_pass" not in parent
    assert "night_out_pass" in young and "family_bundle" not in young


def test_call_center_sees_the_email_sent_before_the_call(channel: Channel) -> None:
    channel.event("carla", "email_received", channel="email", subject="Refund for booking 7781?")
    channel.clock.advance(hours=3)
    channel.event("carla", "call_started", channel="call_center")
    decision = channel.decide("carla", "call_center", placement="agent_prompt")
    assert [t["id"] for t in decision["treatments"]] == ["email_follow_up"]
    assert decision["treatments"][0]["kind"] == "prompt"
    # The agent's screen gets the history behind the prompt in the same response (the
    # placement's `recent` setting), the same entries the customer view shows.
    recent = decision["recent"]
    assert [r["type"] for r in recent] == ["call_started", "email_received"]
    assert recent[1]["channel"] == "email" and recent[1]["attributes"]["subject"].startswith("Refund")
    assert channel.view("carla")["recent"] == recent


def test_a_decision_returns_as_many_recent_interactions_as_asked(channel: Channel) -> None:
    for page in ("home", "deals", "flights"):
        channel.event("ben", "page_view", page=page)
        channel.clock.advance(minutes=1)
    assert channel.decide("ben", "web")["recent"] == []  # web's placements show none unless asked
    asked = channel.decide("ben", "web", recent=2)["recent"]
    assert [r["attributes"]["page"] for r in asked] == ["flights", "deals"]
    # A request's own number overrides the placement's setting, down to none.
    assert channel.decide("ben", "call_center", placement="agent_prompt", recent=0)["recent"] == []
    assert len(channel.decide("ben", "call_center", placement="agent_prompt")["recent"]) == 3


def test_nothing_relevant_gives_the_fallback(channel: Channel) -> None:
    decision = channel.decide("nobody-known", "email")
    assert [t["id"] for t in decision["treatments"]] == ["newsletter_signup"] and decision["fallback"]


def call(channel: Channel, customer: str) -> dict[str, object]:
    channel.event(customer, "call_started", channel="call_center")
    (prompt,) = channel.decide(customer, "call_center", placement="agent_prompt")["treatments"]
    assert prompt["kind"] == "prompt"
    return prompt


def test_smart_dialogue_asks_this_caller_the_most_valuable_unanswered_question(channel: Channel) -> None:
    channel.event("alice", "page_view", page="destinations")  # browsing: her next trip is on her mind
    asked = {customer: call(channel, customer)["id"] for customer in ("carla", "dev", "alice")}
    # family: party size (4 x 2.5); platinum: seat (3 x 2); browsing: travel month (5 x 2)
    assert asked == {"carla": "ask_party_size", "dev": "ask_seat_preference", "alice": "ask_travel_month"}
    assert len(set(asked.values())) == 3, "not every caller gets the same question"


def test_the_answer_lands_in_the_profile_and_is_never_asked_again(channel: Channel) -> None:
    prompt = call(channel, "carla")
    assert prompt["content"]["question"].startswith("Do you usually travel")
    channel.event("carla", "question_answered", channel="call_center", question=prompt["id"], answer="family of four")
    assert channel.view("carla")["profile"]["usual_party_size"] == "family of four"
    for _ in range(3):
        assert call(channel, "carla")["id"] != "ask_party_size"
    bad = channel.http.post(
        "/v1/events",
        json={
            "event_id": "q-bad",
            "customer_id": "carla",
            "type": "question_answered",
            "attributes": {"question": "nope", "answer": 1},
        },
    )
    assert bad.status_code == 422 and bad.json()["field"] == "attributes.question"


def test_feedback_joins_the_decision_and_counts_once(channel: Channel, redis_sync: Redis) -> None:
    decision = channel.decide("alice", "mobile_app")
    chosen = decision["treatments"][0]["id"]
    body = {
        "feedback_id": "fb-1",
        "decision_id": decision["decision_id"],
        "treatment_id": chosen,
        "outcome": "purchase",
        "value": 99.5,
    }
    first = channel.http.post("/v1/feedback", json=body)
    again = channel.http.post("/v1/feedback", json=body)
    assert (first.status_code, first.json()) == (202, {"accepted": True, "duplicate": False})
    assert (again.status_code, again.json()) == (202, {"accepted": False, "duplicate": True})
    assert redis_sync.hgetall(keys.treatment_stats(chosen)) == {b"purchase": b"1", b"value": b"99.5"}
    assert channel.view("alice")["responses"] == {f"{chosen}:purchase": 1}
    assert redis_sync.xlen(keys.STREAM_FEEDBACK) == 1


def test_decisions_are_recorded_with_their_rules_version(channel: Channel, redis_sync: Redis) -> None:
    decision = channel.decide("ben", "web")
    assert redis_sync.ttl(keys.decision(decision["decision_id"])) > 0
    assert redis_sync.xlen(keys.STREAM_DECISIONS) == 1
    assert decision["rules_version"] and not decision["degraded"]


def test_a_retried_event_counts_once(channel: Channel) -> None:
    body = {"event_id": "retry-1", "customer_id": "ben", "type": "cart_add", "attributes": {"sku": "X", "qty": 1, "price": 5}}
    assert channel.http.post("/v1/events", json=body).json() == {"accepted": 1, "duplicates": 0}
    assert channel.http.post("/v1/events", json=body).json() == {"accepted": 0, "duplicates": 1}
    batch = {"events": [body, {**body, "event_id": "retry-2"}]}
    assert channel.http.post("/v1/events", json=batch).json() == {"accepted": 1, "duplicates": 1}
    assert channel.view("ben")["cart"]["items"] == 2


def test_a_consistent_supporter_gets_a_free_sample_once(channel: Channel) -> None:
    channel.event("ben", "social_mention", channel="social", sentiment=0.9, text="Best airline ever")
    assert "free_sample" not in channel.offered("ben", "email"), "one mention is not consistent support"
    channel.event("ben", "social_mention", channel="social", sentiment=0.2, text="meh")
    assert "free_sample" not in channel.offered("ben", "email"), "a lukewarm mention does not count"
    channel.clock.advance(days=3)
    channel.event("ben", "social_mention", channel="social", sentiment=0.8, text="Lovely crew again")
    assert "free_sample" in channel.offered("ben", "email")
    channel.clock.advance(days=30)
    assert "free_sample" not in channel.offered("ben", "web"), "once, ever, across channels"


def test_voice_of_the_customer_counts_topics_and_closes_the_loop(channel: Channel) -> None:
    channel.event("alice", "complaint", channel="social", topic="wifi", text="No wifi again")
    channel.event("dev", "complaint", channel="email", topic="WiFi")
    channel.event("carla", "compliment", channel="social", topic="crew")
    channel.event("ben", "idea", channel="web", topic="wifi", text="Free wifi for members?")
    channel.clock.advance(days=2)
    channel.event("ben", "compliment", topic="food")
    voice = channel.http.get("/v1/voice", params={"days": 7}).json()
    by_topic = {row["topic"]: row for row in voice["topics"]}
    assert by_topic["wifi"] == {"topic": "wifi", "liked": 0, "disliked": 2, "ideas": 1}
    assert by_topic["crew"]["liked"] == 1 and by_topic["food"]["liked"] == 1
    assert voice["topics"][0]["topic"] == "wifi", "most mentioned first"
    recent = channel.http.get("/v1/voice", params={"days": 1}).json()
    assert [row["topic"] for row in recent["topics"]] == ["food"], "the window is respected"
    assert channel.http.get("/v1/voice", params={"days": 0}).status_code == 422

    # Close the loop: only those who complained about wifi hear it was fixed.
    assert "wifi_fixed_announcement" in channel.offered("alice", "email")
    assert "wifi_fixed_announcement" not in channel.offered("carla", "email")
    assert "wifi_fixed_announcement" not in channel.offered("ben", "email"), "an idea is not a complaint"


def test_web_open_applies_the_coupon_to_the_cart(channel: Channel) -> None:
    channel.event("visitor-2", "cart_add", channel="web", sku="TSHIRT", price=20.0, qty=2)
    channel.event("visitor-2", "cart_add", channel="web", sku="MUG", price=12.5)
    decision = channel.decide("visitor-2", "web")
    assert "welcome_coupon" in [t["id"] for t in decision["treatments"]]
    (adjustment,) = decision["cart_adjustments"]
    assert adjustment["coupon"] == "WELCOME10" and adjustment["treatment_id"] == "welcome_coupon"
    assert {line["sku"]: line["discount"] for line in adjustment["lines"]} == {"TSHIRT": 4.0, "MUG": 1.25}
    assert adjustment["discount"] == 5.25
    assert channel.decide("visitor-3", "web")["cart_adjustments"] == [], "an empty cart has nothing to adjust"


def test_a_silver_customer_is_challenged_to_reach_gold_and_the_screen_shows_their_worth(channel: Channel) -> None:
    for days in (30, 30, 3):
        channel.event("gus", "purchase", channel="web", amount=200.0)
        channel.clock.advance(days=days)
    channel.event("gus", "compliment", channel="call_center", topic="crew")
    decision = channel.decide("gus", "web")
    value = decision["customer_value"]
    assert value["tier"] == "silver" and 35 <= value["equity"] < 55
    challenge = decision["treatments"][0]
    assert challenge["id"] == "status_challenge", "the expected move to gold is worth most"
    gain = 0.3 * (55 - value["equity"]) * 20  # rules/equity.yaml: gold bound, money per point; tier_uplift 0.3
    assert challenge["score"] == pytest.approx(challenge["propensity"] * (10 + gain), rel=1e-4)

    channel.event("hal", "purchase", channel="web", amount=40.0)
    assert "status_challenge" not in channel.offered("hal", "web"), "a bronze customer is not close enough"

    view = channel.view("gus")["value"]
    assert view["tier"] == "silver" and view["perception"] > 50, "a compliment lifts perception above neutral"
    assert all(0 <= view[k] <= 100 for k in ("contribution", "perception", "referral", "loyalty", "equity"))
    assert view["clv"] is None, "no lifetime value before a lifetime model is fitted"


def test_the_roi_report_credits_a_purchase_to_the_coupon_that_won_it(channel: Channel) -> None:
    decision = channel.decide("newbie", "web")
    assert "welcome_coupon" in [t["id"] for t in decision["treatments"]]
    feedback = {"decision_id": decision["decision_id"], "treatment_id": "welcome_coupon"}
    for i, (outcome, value) in enumerate((("impression", None), ("accept", None), ("purchase", 180.0))):
        body = {**feedback, "feedback_id": f"fb-roi-{i}", "outcome": outcome, "value": value}
        assert channel.http.post("/v1/feedback", json=body).status_code == 202
    response = channel.http.get("/v1/reports/roi", params={"days": 7})
    assert response.status_code == 200, response.text
    report = response.json()
    (first_order,) = [c for c in report["campaigns"] if c["campaign"] == "first_order"]
    # rules/offers.yaml: welcome_coupon costs 0.01 per show and 8 per acceptance.
    assert first_order["shows"] == 1 and first_order["accepts"] == 1
    assert first_order["cost"] == pytest.approx(8.01)
    assert first_order["revenue"] == pytest.approx(180.0)
    assert first_order["roi"] == pytest.approx((180.0 - 8.01) / 8.01)
    (webshop,) = [b for b in report["brands"] if b["brand"] == "webshop"]
    assert webshop["revenue"] == pytest.approx(180.0)
    (tier,) = report["tiers"]
    assert tier["tier"] == "bronze" and tier["customers"] == 1, "a new customer starts in the lowest tier"
    assert channel.http.get("/v1/reports/roi", params={"days": 0}).status_code == 422


def test_a_delay_of_exactly_45_minutes_earns_the_apology_on_the_web_too(channel: Channel, redis_sync: Redis) -> None:
    channel.event("alice", "flight_delayed", delay_minutes=45, flight="AF7")
    assert [m["treatment"] for m in outbound(redis_sync)] == ["apology_upgrade"]
    channel.clock.advance(hours=1)
    decision = channel.decide("alice", "web")
    assert "apology_upgrade" in [t["id"] for t in decision["treatments"]]
    fb = {"feedback_id": "f45", "decision_id": decision["decision_id"], "treatment_id": "apology_upgrade", "outcome": "accept"}
    assert channel.http.post("/v1/feedback", json=fb).status_code == 202
    assert channel.view("alice")["responses"] == {"apology_upgrade:accept": 1}


def test_three_complaints_within_a_week_flag_the_customer_once_and_tell_the_service_desk(
    channel: Channel, redis_sync: Redis
) -> None:
    for _ in range(2):
        channel.event("dev", "complaint", channel="social", topic="lounge")
        channel.clock.advance(days=1)
    assert redis_sync.hget(keys.flags("dev"), "repeat_complainer") is None and outbound(redis_sync) == []
    channel.event("dev", "complaint", channel="social", topic="lounge")
    [mail] = outbound(redis_sync)
    assert (mail["customer_id"], mail["channel"], mail["trigger"]) == ("dev", "email", "repeated_complaints")
    assert int(redis_sync.hget(keys.flags("dev"), "repeat_complainer")) == channel.clock.now_ms() + 30 * 86_400_000
    channel.event("dev", "complaint", channel="social", topic="lounge")
    assert len(outbound(redis_sync)) == 1, "a fourth complaint in the same week crosses nothing"


def test_complaints_spread_over_more_than_a_week_never_reach_the_threshold(channel: Channel, redis_sync: Redis) -> None:
    for _ in range(4):
        channel.event("carla", "complaint", topic="seats")
        channel.clock.advance(days=4)
    assert redis_sync.hget(keys.flags("carla"), "repeat_complainer") is None
    assert outbound(redis_sync) == []


def test_a_threshold_message_that_fails_to_send_is_sent_again_without_applying_the_event_twice(
    channel: Channel, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = channel.http.app.state.engine.store  # type: ignore[attr-defined]
    real = store.send_crossings
    failures = iter([StoreUnavailable("state store error: a moment's outage")])

    async def flaky(crossings: object) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        await real(crossings)

    monkeypatch.setattr(store, "send_crossings", flaky)
    for _ in range(3):
        channel.event("dev", "complaint", channel="social", topic="lounge")
    assert [m["trigger"] for m in outbound(redis_sync)] == ["repeated_complaints"]
    assert redis_sync.hget(keys.flags("dev"), "repeat_complainer") is not None
    assert [e["type"] for e in channel.view("dev")["recent"]].count("complaint") == 3, "each complaint applied once"
    voice = channel.http.get("/v1/voice?days=1").json()["topics"]
    assert {"topic": "lounge", "liked": 0, "disliked": 3, "ideas": 0} in voice


def test_a_threshold_message_that_cannot_be_sent_keeps_the_event_and_its_flag(
    channel: Channel, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = channel.http.app.state.engine.store  # type: ignore[attr-defined]

    async def down(crossings: object) -> None:
        raise StoreUnavailable("state store error: down")

    monkeypatch.setattr(store, "send_crossings", down)
    for _ in range(3):
        channel.event("dev", "complaint", channel="social", topic="lounge")  # 202 every time
    assert outbound(redis_sync) == []
    assert redis_sync.hget(keys.flags("dev"), "repeat_complainer") is not None, "set with the count, in Redis"
    assert [e["type"] for e in channel.view("dev")["recent"]].count("complaint") == 3, "every complaint kept, once"
    # As if the engine had stopped there: the crossing's guard timer sends the message instead.
    assert channel.fire_timers() == 0, "not before its time"
    channel.clock.advance(seconds=11)
    channel.fire_timers()
    [mail] = outbound(redis_sync)
    assert (mail["trigger"], mail["channel"]) == ("repeated_complaints", "email")
    channel.clock.advance(seconds=11)
    channel.fire_timers()
    assert len(outbound(redis_sync)) == 1, "sent once"


def test_a_threshold_message_sent_at_once_is_not_sent_again_by_its_guard_timer(channel: Channel, redis_sync: Redis) -> None:
    for _ in range(4):
        channel.event("dev", "complaint", channel="social", topic="lounge")
    channel.clock.advance(seconds=11)
    channel.fire_timers()
    assert [m["trigger"] for m in outbound(redis_sync)] == ["repeated_complaints"]
    shard = keys.timer_shard("dev")
    assert redis_sync.zcard(keys.timer_due(shard)) == redis_sync.hlen(keys.timer_data(shard)) == 0, "every guard done with"


def backfill(channel: Channel, customer_id: str, type_: str, *, days_ago: float, **attributes: Any) -> None:
    """An event sent late, with its own time: a batch import, or a source that was offline."""
    ts = channel.clock.now_ms() - int(days_ago * 86_400_000)
    body = {"event_id": f"late-{type_}-{ts}", "customer_id": customer_id, "type": type_, "ts": ts, "attributes": attributes}
    response = channel.http.post("/v1/events", json=body)
    assert response.status_code == 202, response.text


def test_an_event_arriving_late_takes_its_place_in_time(channel: Channel) -> None:
    channel.event("dev", "complaint", channel="social", topic="lost_luggage")
    channel.event("dev", "purchase", channel="web", amount=35.0, order_id="NEW")
    backfill(channel, "dev", "complaint", days_ago=10, topic="seat")
    backfill(channel, "dev", "purchase", days_ago=10, amount=90.0, order_id="OLD")
    # The suppression still counts from today's complaint, not from the one sent late.
    assert channel.offered("dev", "mobile_app")[0] == "service_recovery"
    view = channel.view("dev")
    assert view["suppressions"][0]["group"] == "sales"
    assert [(r["type"], r["attributes"].get("topic") or r["attributes"].get("order_id")) for r in view["recent"]] == [
        ("purchase", "NEW"),
        ("complaint", "lost_luggage"),
        ("purchase", "OLD"),
        ("complaint", "seat"),
    ]
    assert [p["attributes"]["order_id"] for p in view["purchases"]] == ["NEW", "OLD"]


def test_a_late_delay_whose_upgrade_has_lapsed_sends_no_push(channel: Channel, redis_sync: Redis) -> None:
    backfill(channel, "alice", "flight_delayed", days_ago=3, delay_minutes=50)
    assert outbound(redis_sync) == [], "the upgrade it would announce lapsed two days ago"
    assert "apology_upgrade" not in channel.offered("alice", "mobile_app")
    backfill(channel, "alice", "flight_delayed", days_ago=0.5, delay_minutes=50)
    assert [m["treatment"] for m in outbound(redis_sync)] == ["apology_upgrade"], "still waiting in the app: told"
    assert "apology_upgrade" in channel.offered("alice", "mobile_app")


def test_an_email_a_week_back_is_still_seen_after_a_hundred_page_views(channel: Channel) -> None:
    """The shared history keeps the latest 100 interactions of every type; `exists('email_received',
    days=7)` reads the per-type look-back counter the rules keep for it, so browsing cannot push the
    email out of reach."""
    channel.event("carla", "email_received", channel="email", subject="Refund for booking 7781?")
    channel.clock.advance(hours=1)
    views = [
        {"event_id": f"pv-{i}", "customer_id": "carla", "type": "page_view", "attributes": {"page": "deals"}} for i in range(150)
    ]
    assert channel.http.post("/v1/events", json={"events": views}).status_code == 202
    assert "email_received" not in [r["type"] for r in channel.view("carla")["recent"]], "gone from the shared history"
    backfill(channel, "carla", "email_received", days_ago=20)  # old emails sent late do not hide the recent one
    backfill(channel, "carla", "email_received", days_ago=30)
    channel.event("carla", "call_started", channel="call_center")
    assert channel.offered("carla", "call_center", placement="agent_prompt") == ["email_follow_up"]
    channel.clock.advance(days=7, minutes=1)
    assert channel.offered("carla", "call_center", placement="agent_prompt") != ["email_follow_up"], "a week on, it is past"


def test_a_late_profile_update_does_not_undo_a_newer_one(channel: Channel) -> None:
    channel.event("ben", "profile_update", tier="platinum")
    backfill(channel, "ben", "profile_update", days_ago=1, tier="silver", home_airport="LHR")  # a nightly import
    profile = channel.view("ben")["profile"]
    assert profile["tier"] == "platinum", "the customer's own change this morning stands"
    assert profile["home_airport"] == "LHR", "a field nothing newer set is taken"
    channel.clock.advance(minutes=5)
    channel.event("ben", "profile_update", tier="gold")
    assert channel.view("ben")["profile"]["tier"] == "gold"


def test_an_event_dated_in_the_future_does_not_stand_against_real_ones(channel: Channel) -> None:
    """A clock or unit mistake at a source: ten years ahead. The next real event replaces it."""
    backfill(channel, "dev", "complaint", days_ago=-3650, topic="typo")
    backfill(channel, "dev", "profile_update", days_ago=-3650, tier="bronze")
    channel.clock.advance(days=1)
    channel.event("dev", "complaint", channel="social", topic="lounge")
    channel.event("dev", "profile_update", tier="gold")
    assert channel.view("dev")["profile"]["tier"] == "gold"
    channel.clock.advance(days=7, minutes=1)
    assert channel.view("dev")["suppressions"] == [], "the cooldown counts from the real complaint, a week ago"
