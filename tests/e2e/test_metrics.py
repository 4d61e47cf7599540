"""What an operator scrapes from /metrics: decisions by channel and result with their timing,
events and feedback taken in, errors answered by operation and code, store failures, and the
model versions served."""

from __future__ import annotations

from fastapi.testclient import TestClient

from engine.api.http.app import create_app
from engine.clock import FixedClock
from engine.settings import Settings
from tests.conftest import EXAMPLE_RULES
from tests.e2e.conftest import Channel


def scrape(http: TestClient) -> dict[str, float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    out: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def test_decisions_events_feedback_and_errors_are_counted(http: TestClient, channel: Channel) -> None:
    before = scrape(http)
    assert before['nba_decisions_total{channel="web",result="treatments"}'] == 0  # every series from the start
    assert before['nba_model_version{model="response"}'] == 0  # priors: nothing published yet

    channel.event("alice", "page_view", page="home")
    again = {"event_id": "ev-twice", "customer_id": "alice", "type": "page_view"}
    assert http.post("/v1/events", json=again).status_code == 202
    assert http.post("/v1/events", json=again).json() == {"accepted": 0, "duplicates": 1}
    assert http.post("/v1/events", json={"event_id": "e", "customer_id": "alice", "type": "teleported"}).status_code == 422
    # Refused by the HTTP schema (an unknown channel) before the core sees it: counted all the same.
    assert http.post("/v1/decisions", json={"customer_id": "alice", "channel": "fax"}).status_code == 422
    assert http.get("/v1/customers/" + "x" * 65).status_code == 422

    decision = channel.decide("alice", "web")
    chosen = decision["treatments"][0]["id"]
    channel.decide("ben", "call_center", placement="agent_prompt")
    feedback = {"feedback_id": "fb-1", "decision_id": decision["decision_id"], "treatment_id": chosen, "outcome": "accept"}
    assert http.post("/v1/feedback", json=feedback).json() == {"accepted": True, "duplicate": False}
    assert http.post("/v1/feedback", json=feedback).json() == {"accepted": False, "duplicate": True}
    unknown = {**feedback, "feedback_id": "fb-2", "decision_id": "no-such-decision"}
    assert http.post("/v1/feedback", json=unknown).status_code == 404

    got = scrape(http)
    web = "fallback" if decision["fallback"] else "treatments"
    assert got[f'nba_decisions_total{{channel="web",result="{web}"}}'] == 1
    assert sum(v for k, v in got.items() if k.startswith("nba_decisions_total")) == 2
    assert got['nba_decision_seconds_count{channel="web"}'] == 1
    assert got['nba_decision_seconds_count{channel="call_center"}'] == 1
    assert got['nba_decision_seconds_bucket{channel="web",le="+Inf"}'] == 1
    assert 0 < got['nba_decision_seconds_sum{channel="web"}'] < 5
    assert got['nba_events_total{result="accepted"}'] == 2
    assert got['nba_events_total{result="duplicate"}'] == 1
    assert got['nba_feedback_total{outcome="accept",result="accepted"}'] == 1
    assert got['nba_feedback_total{outcome="accept",result="duplicate"}'] == 1
    errors = {k: v for k, v in got.items() if k.startswith("nba_request_errors_total") and v}
    assert errors == {
        'nba_request_errors_total{operation="events",error="invalid_input"}': 1,
        'nba_request_errors_total{operation="decide",error="invalid_input"}': 1,
        'nba_request_errors_total{operation="customer",error="invalid_input"}': 1,
        'nba_request_errors_total{operation="feedback",error="not_found"}': 1,
    }
    assert all(v == 0 for k, v in got.items() if k.startswith("nba_store_errors_total"))


def test_a_store_outage_shows_as_store_errors_and_degraded_decisions(clock: FixedClock) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", rules_dir=EXAMPLE_RULES, redis_timeout_s=0.2, learner=False)
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as http:
        assert http.post("/v1/decisions", json={"customer_id": "ben", "channel": "web"}).json()["degraded"] is True
        assert http.post("/v1/events", json={"event_id": "e", "customer_id": "ben", "type": "page_view"}).status_code == 503

        got = scrape(http)

    assert got['nba_decisions_total{channel="web",result="degraded"}'] == 1
    assert got['nba_decision_seconds_count{channel="web"}'] == 1
    assert got['nba_store_errors_total{operation="read_customer"}'] == 1
    assert got['nba_store_errors_total{operation="write_decision"}'] == 0  # a degraded decision is not written
    assert got['nba_store_errors_total{operation="record_events"}'] == 1
    assert got['nba_request_errors_total{operation="events",error="store_unavailable"}'] == 1
    assert got['nba_events_total{result="accepted"}'] == 0
