"""Learning end to end: feedback over HTTP becomes a new model version that decisions use."""

from __future__ import annotations

import collections
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from engine.api.http.app import create_app
from engine.clock import FixedClock
from engine.decision.exploration import in_holdout
from engine.learning.spec import load_model_specs
from engine.settings import Settings
from engine.state.keys import STREAM_DECISIONS, model_served
from tests.conftest import EXAMPLE_MODELS, EXAMPLE_RULES
from tests.e2e.conftest import Channel
from tests.processes import NbaProcess, wait_for


def accept_some(channel: Channel, n: int) -> None:
    for i in range(n):
        decision = channel.decide("alice", "mobile_app")
        chosen = decision["treatments"][0]
        assert 0 < chosen["selection_probability"] <= 1
        response = channel.http.post(
            "/v1/feedback",
            json={
                "feedback_id": f"f{i}",
                "decision_id": decision["decision_id"],
                "treatment_id": chosen["id"],
                "outcome": "accept",
            },
        )
        assert response.status_code == 202


def test_feedback_reaches_a_served_model_version_within_seconds(settings: Settings, clock: FixedClock, redis_sync: Redis) -> None:
    live = settings.model_copy(update={"learner": True})
    with TestClient(create_app(live, clock=clock)) as http:
        channel = Channel(http, clock)
        assert channel.decide("alice", "mobile_app")["model_version"] == "response@0", "priors until a model is published"
        accept_some(channel, 5)
        wait_for(lambda: channel.decide("alice", "mobile_app")["model_version"] != "response@0")
        version = int(channel.decide("alice", "mobile_app")["model_version"].split("@")[1])
        assert version >= 1
        assert int(redis_sync.hget(model_served("response"), "version")) >= version
        assert http.get("/readyz").json()["models"]["response"] >= 1


def test_nba_learner_runs_as_its_own_process(
    settings: Settings, clock: FixedClock, redis_url: str, redis_sync: Redis, tmp_path: Path
) -> None:
    with TestClient(create_app(settings, clock=clock)) as http:  # serving without a learner
        accept_some(Channel(http, clock), 3)
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(EXAMPLE_RULES), "NBA_MODELS_DIR": str(settings.models_dir)}
    with NbaProcess("learner", env=env) as learner:
        wait_for(lambda: redis_sync.hget(model_served("response"), "version") is not None, timeout_s=60)
        assert learner.stop() == 0
    assert "models response" in learner.output


def test_holdout_customers_get_a_uniformly_random_choice(
    redis_url: str, redis_sync: Redis, clock: FixedClock, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    spec = (EXAMPLE_MODELS / "response.yaml").read_text().replace("holdout_share: 0.05", "holdout_share: 0.5")
    (models / "response.yaml").write_text(spec)
    settings = Settings(redis_url=redis_url, rules_dir=EXAMPLE_RULES, models_dir=models, learner=False, random_seed=3)
    held = next(f"h-{i}" for i in range(100) if in_holdout(f"h-{i}", 0.5, "response"))
    with TestClient(create_app(settings, clock=clock)) as http:
        channel = Channel(http, clock)
        channel.event(held, "profile_update", age=30)
        seen: dict[str, int] = {}
        for _ in range(60):
            clock.advance(days=8)  # past every cap, so both sales offers stay eligible
            decision = channel.decide(held, "web")
            (only,) = [t for t in decision["treatments"] if t["group"] == "sales"]
            seen[only["id"]] = seen.get(only["id"], 0) + 1
            # Uniform over the eligible sales offers: the probability is exact, 1/number of them.
            assert only["selection_probability"] == pytest.approx(1 / 2, abs=1e-6)
    assert set(seen) == {"welcome_coupon", "credit_card_offer"}
    assert min(seen.values()) >= 15, f"a fair coin over 60 draws: {seen}"


def test_shipped_holdout_leaves_the_agent_prompt_alone_and_logs_the_policy_that_chose(
    redis_url: str, redis_sync: Redis, clock: FixedClock
) -> None:
    """With the shipped specs as they are, a customer in the model's holdout still gets the
    prompt the smart dialogue picked on a call, and random offers on the web; each decision
    records the policy that chose it, which offline evaluation and the ROI report read."""
    response = next(s for s in load_model_specs(EXAMPLE_MODELS) if s.id == "response")
    assert response.holdout_share > 0

    def customer(held: bool) -> str:
        return next(f"c-{i}" for i in range(10_000) if in_holdout(f"c-{i}", response.holdout_share, response.id) == held)

    held, control = customer(True), customer(False)
    settings = Settings(redis_url=redis_url, rules_dir=EXAMPLE_RULES, models_dir=EXAMPLE_MODELS, learner=False, random_seed=5)
    with TestClient(create_app(settings, clock=clock)) as http:
        channel = Channel(http, clock)
        for customer_id in (held, control):
            channel.event(customer_id, "profile_update", age=38, segment="family", tier="bronze")
        prompts: dict[str, set[tuple[str, float]]] = {held: set(), control: set()}
        sales: dict[str, int] = {}
        for _ in range(30):
            clock.advance(days=8)  # past every cap, so the same candidates stay eligible
            for customer_id in (held, control):
                decision = channel.decide(customer_id, "call_center", placement="agent_prompt")
                prompts[customer_id] |= {(t["id"], t["selection_probability"]) for t in decision["treatments"]}
            (offer,) = [t for t in channel.decide(held, "web")["treatments"] if t["group"] == "sales"]
            assert offer["selection_probability"] == pytest.approx(1 / 2, abs=1e-6)
            sales[offer["id"]] = sales.get(offer["id"], 0) + 1
    assert prompts[held] == prompts[control] == {("ask_party_size", 1.0)}
    assert set(sales) == {"welcome_coupon", "credit_card_offer"}, sales
    records = [orjson.loads(f[b"d"]) for _, f in redis_sync.xrange(STREAM_DECISIONS)]
    policies: dict[tuple[str, str | None], set[str]] = collections.defaultdict(set)
    exempt: dict[tuple[str, str | None], set[str | None]] = collections.defaultdict(set)
    for r in records:
        policies[(r["customer_id"], r.get("placement"))].add(r["policy"])
        exempt[(r["customer_id"], r.get("placement"))].add(r["model"].get("holdout"))
    assert policies == {
        (held, "agent_prompt"): {"greedy"},
        (control, "agent_prompt"): {"greedy"},
        (held, None): {"holdout"},
    }
    # The held customer's prompts say they were exempted, so the ROI report keeps them in the holdout.
    assert exempt == {(held, "agent_prompt"): {"exempt"}, (control, "agent_prompt"): {None}, (held, None): {None}}
