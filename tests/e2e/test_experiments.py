"""Experiments through the HTTP API: a holdout gets nothing, a challenger rule set serves its
share of customers, each decision records its arm, and the arms report compares them."""

from __future__ import annotations

import collections
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from engine.api.http.app import create_app
from engine.clock import FixedClock
from engine.reports.arms import arms_report
from engine.settings import Settings
from engine.state import keys
from tests.conftest import EXAMPLE_RULES, T0

EXPERIMENTS = """
experiments:
  salt: test-1
  holdout: {share: 0.2, treatment: none}
  placements:
    agent_prompt: {share: 0.0}
  challengers:
    - {id: richer_coupon, share: 0.3, rules: ../challenger}
"""


@pytest.fixture
def http(redis_url: str, redis_sync: Redis, tmp_path: Path, clock: FixedClock) -> Iterator[TestClient]:
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLE_RULES, rules, ignore=shutil.ignore_patterns("*_test.yaml"))
    challenger = tmp_path / "challenger"  # beside the rules: files under them belong to the champion
    shutil.copytree(rules, challenger)
    offers = challenger / "offers.yaml"
    offers.write_text(offers.read_text().replace("code: WELCOME10", "code: WELCOME20"))
    (rules / "experiments.yaml").write_text(EXPERIMENTS)
    settings = Settings(
        redis_url=redis_url,
        rules_dir=rules,
        models_dir=tmp_path / "no-models",
        learner=False,
        timer_worker=False,
        rules_watch=False,
        random_seed=3,
    )
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
        yield client


def test_arms_split_customers_stickily_and_each_arm_gets_its_own_treatment(http: TestClient, redis_sync: Redis) -> None:
    arms: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for i in range(300):
        body = http.post("/v1/decisions", json={"customer_id": f"n{i}", "channel": "web"}).json()
        arms[body["arm"]].append(body)
    assert set(arms) == {"champion", "holdout", "challenger:richer_coupon"}
    assert 30 <= len(arms["holdout"]) <= 90 and 60 <= len(arms["challenger:richer_coupon"]) <= 120
    assert all(d["treatments"] == [] for d in arms["holdout"]), "the no-treatment holdout sees nothing"
    assert all(d["customer_value"] is not None for d in arms["holdout"]), "but its value is still logged"

    def codes(arm: str) -> set[object]:
        return {t["content"].get("code") for d in arms[arm] for t in d["treatments"] if t["id"] == "welcome_coupon"}  # type: ignore[union-attr, index]

    assert codes("champion") == {"WELCOME10"} and codes("challenger:richer_coupon") == {"WELCOME20"}
    versions = {d["rules_version"] for d in arms["challenger:richer_coupon"]}
    assert versions.isdisjoint({d["rules_version"] for d in arms["champion"]}), "decisions record the challenger's rules"
    again = http.post("/v1/decisions", json={"customer_id": "n7", "channel": "web"}).json()
    first = next(a for a, ds in arms.items() if any(d["customer_id"] == "n7" for d in ds))
    assert again["arm"] == first, "assignment is sticky"
    agent = http.post("/v1/decisions", json={"customer_id": "n7", "channel": "call_center", "placement": "agent_prompt"})
    assert agent.json()["arm"] != "holdout", "no holdout on the agent prompt"

    records = [orjson.loads(f[b"d"]) for _, f in redis_sync.xrange(keys.STREAM_DECISIONS)][:300]
    assert collections.Counter(r["arm"] for r in records)["holdout"] == len(arms["holdout"])
    assert all(r["policy"] == "holdout" for r in records if r["arm"] == "holdout")
    report = arms_report(records, [], since_ms=T0 - 1, until_ms=T0 + 1)
    rows = {r.arm: r for r in report.arms}
    assert rows["holdout"].shows == 0 and rows["champion"].shows > 0


def test_the_arms_report_over_http_counts_each_arm_and_its_acceptances(http: TestClient) -> None:
    decisions = [http.post("/v1/decisions", json={"customer_id": f"r{i}", "channel": "web"}).json() for i in range(120)]
    accepted = collections.Counter()
    for i, d in enumerate(d for d in decisions if d["treatments"]):
        if i % 2 == 0:
            body = {"feedback_id": f"arm-fb-{i}", "decision_id": d["decision_id"], "treatment_id": d["treatments"][0]["id"]}
            assert http.post("/v1/feedback", json={**body, "outcome": "accept"}).status_code == 202
            accepted[d["arm"]] += 1
    response = http.get("/v1/reports/arms", params={"days": 7})
    assert response.status_code == 200, response.text
    rows = {r["arm"]: r for r in response.json()["arms"]}
    assert set(rows) == {"champion", "holdout", "challenger:richer_coupon"}
    for arm, row in rows.items():
        assert row["decisions"] == sum(d["arm"] == arm for d in decisions)
        assert row["accepts"] == accepted[arm]
    assert rows["holdout"]["shows"] == 0
    assert "acceptance_rate_vs_champion" in rows["challenger:richer_coupon"]
    refused = http.get("/v1/reports/arms", params={"days": 0})
    assert refused.status_code == 422 and "days" in refused.text
