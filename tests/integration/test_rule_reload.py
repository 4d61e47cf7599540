"""Hot reload of the rule set, through the served HTTP app over real Redis.

Each test serves a temporary copy of the example rules, edits it as a marketer would, and
checks what the next decision, /readyz and /metrics say: a good edit goes live, a bad one is
refused while the last good set keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis import Redis

from engine.api.http.app import create_app
from engine.bootstrap import Engine
from engine.clock import FixedClock
from engine.errors import RuleSetError
from engine.metrics import MetricsRegistry
from engine.rules.registry import RuleRegistry
from engine.rules.reload import RuleReloader, watch_rules
from engine.rules.ruleset import RuleSet
from engine.settings import Settings
from tests.conftest import EXAMPLE_RULES

TOKEN = "reload-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RELOAD = "/v1/admin/rules/reload"
# welcome_coupon, which a first-time visitor on the web gets (rules/offers.yaml)
VALUE_LINE = "    value: 25\n    prior: {alpha: 3, beta: 17}"
ELIGIBILITY = "eligibility: days_since('purchase') == None"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(EXAMPLE_RULES, directory)
    return directory


@pytest.fixture
def settings(redis_url: str, rules_dir: Path, tmp_path: Path, redis_sync: Redis) -> Settings:
    return Settings(
        redis_url=redis_url,
        rules_dir=rules_dir,
        models_dir=tmp_path / "no-models",  # priors only: a score is propensity x value x lever
        learner=False,
        timer_worker=False,
        rules_watch=False,
        random_seed=7,
        admin_token=TOKEN,
    )


@contextmanager
def serving(settings: Settings, clock: FixedClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def http(settings: Settings, clock: FixedClock) -> Iterator[TestClient]:
    with serving(settings, clock) as client:
        yield client


def engine_of(http: TestClient) -> Engine:
    engine: Engine = http.app.state.engine  # type: ignore[attr-defined]
    return engine


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` once; returns the 1-based line where the edit starts."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def welcome(http: TestClient) -> tuple[str, dict[str, Any]]:
    """The rules version and the welcome coupon of a decision for a first-time web visitor."""
    response = http.post("/v1/decisions", json={"customer_id": "first-timer", "channel": "web"})
    assert response.status_code == 200, response.text
    body = response.json()
    coupon = next(t for t in body["treatments"] if t["id"] == "welcome_coupon")
    return body["rules_version"], coupon


def metric(http: TestClient, sample: str) -> float:
    """The value of one sample (`name` or `name{labels}`) in /metrics."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for line in response.text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in /metrics:\n{response.text}")


def test_an_edited_treatment_value_serves_after_an_admin_reload(http: TestClient, rules_dir: Path) -> None:
    before, coupon = welcome(http)
    assert coupon["score"] == pytest.approx(coupon["propensity"] * 25)
    edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "50"))

    response = http.post(RELOAD, headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] and body["changed"] and body["problems"] == [] and body["version"] != before
    version, coupon = welcome(http)
    assert version == body["version"]
    assert coupon["score"] == pytest.approx(coupon["propensity"] * 50)
    assert metric(http, f'nba_rules_info{{version="{version}"}}') == 1
    assert metric(http, 'nba_rules_reloads_total{result="ok"}') == 1
    assert metric(http, 'nba_rules_reloads_total{result="refused"}') == 0
    assert 0 < metric(http, "nba_rules_reload_seconds") < 10
    ready = http.get("/readyz").json()
    assert ready["rules"]["version"] == version and ready["rules"]["last_reload"]["ok"] is True


def test_unchanged_rules_are_not_swapped_but_count_as_ok(http: TestClient) -> None:
    serving_set = engine_of(http).rules.current

    first, second = http.post(RELOAD, headers=AUTH).json(), http.post(RELOAD, headers=AUTH).json()

    assert first == second == {"ok": True, "version": serving_set.version, "changed": False, "problems": []}
    assert engine_of(http).rules.current is serving_set
    assert metric(http, 'nba_rules_reloads_total{result="ok"}') == 2


def test_a_broken_edit_is_refused_and_the_last_good_set_keeps_serving(
    http: TestClient, rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, coupon = welcome(http)
    line = edit(rules_dir / "offers.yaml", ELIGIBILITY, "eligibility: customer.favourite_colour == 'red'")

    with caplog.at_level(logging.WARNING, logger="engine.rules"):
        response = http.post(RELOAD, headers=AUTH)

    assert response.status_code == 422
    body = response.json()
    assert body["ok"] is False and body["changed"] is False and body["version"] == good
    [problem] = body["problems"]
    assert re.match(rf".*offers\.yaml:{line}:\d+: unknown field `customer\.favourite_colour`", problem), problem
    assert welcome(http) == (good, coupon)  # the last good set still decides
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    rules = ready.json()["rules"]
    assert rules["version"] == good
    assert rules["last_reload"]["ok"] is False and rules["last_reload"]["problems"] == [problem]
    assert metric(http, 'nba_rules_reloads_total{result="refused"}') == 1
    assert metric(http, "nba_rules_last_reload_successful") == 0
    assert metric(http, f'nba_rules_info{{version="{good}"}}') == 1
    [record] = [r for r in caplog.records if r.name == "engine.rules" and r.levelno == logging.WARNING]
    assert problem in record.getMessage()

    edit(rules_dir / "offers.yaml", "eligibility: customer.favourite_colour == 'red'", ELIGIBILITY)
    fixed = http.post(RELOAD, headers=AUTH)
    assert fixed.status_code == 200 and fixed.json()["changed"] is False  # back to the set in force
    assert http.get("/readyz").json()["rules"]["last_reload"]["ok"] is True
    assert metric(http, "nba_rules_last_reload_successful") == 1


def test_the_watcher_reloads_a_changed_file_by_itself(settings: Settings, clock: FixedClock, rules_dir: Path) -> None:
    watching = settings.model_copy(update={"rules_watch": True, "rules_watch_debounce_ms": 50})
    with serving(watching, clock) as http:
        before, _ = welcome(http)  # a round trip: the watcher task has started watching by now
        edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "60"))

        deadline = time.monotonic() + 5
        while engine_of(http).rules.current.version == before and time.monotonic() < deadline:
            time.sleep(0.02)

        version, coupon = welcome(http)
        assert version != before
        assert coupon["score"] == pytest.approx(coupon["propensity"] * 60)
        assert metric(http, 'nba_rules_reloads_total{result="ok"}') >= 1


def test_an_edit_made_before_the_watch_opens_is_not_missed(rules_dir: Path, clock: FixedClock) -> None:
    """A file saved while a process starts (after its rules were loaded, before its watch opened)
    raises no file event; the watcher loads the directory again once it is watching."""

    async def scenario() -> tuple[str, str]:
        registry = RuleRegistry.from_directory(rules_dir)
        before = registry.current.version
        stop = asyncio.Event()
        task = asyncio.create_task(watch_rules(RuleReloader(registry, clock, MetricsRegistry()), stop, debounce_ms=50))
        edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "60"))  # before the task first runs
        try:
            for _ in range(250):
                if registry.current.version != before:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        return before, registry.current.version

    before, after = asyncio.run(scenario())
    assert after != before


def test_a_failing_gate_refuses_an_otherwise_valid_set(http: TestClient, rules_dir: Path) -> None:
    good, coupon = welcome(http)
    seen: list[tuple[RuleSet, Path]] = []

    def rule_tests(rules: RuleSet, directory: Path) -> list[str]:
        seen.append((rules, directory))
        return ["offers_test.yaml: case `first visit gets the coupon`: expected welcome_coupon first"]

    engine_of(http).reloader.gate = rule_tests
    edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "50"))

    response = http.post(RELOAD, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["problems"] == ["offers_test.yaml: case `first visit gets the coupon`: expected welcome_coupon first"]
    [(candidate, directory)] = seen
    assert candidate.version != good and directory == rules_dir
    assert welcome(http) == (good, coupon)
    assert metric(http, 'nba_rules_reloads_total{result="refused"}') == 1


def test_an_edit_that_breaks_a_rule_test_case_is_refused_by_the_shipped_gate(http: TestClient, rules_dir: Path) -> None:
    good, coupon = welcome(http)
    # Valid rules, but the welcome coupon now needs a purchase: the shipped cases expect a
    # first-time visitor to get it, so the default gate (the rule test cases) refuses the set.
    edit(rules_dir / "offers.yaml", ELIGIBILITY, "eligibility: days_since('purchase') != None")
    response = http.post(RELOAD, headers=AUTH)
    assert response.status_code == 422, response.text
    problems = "\n".join(response.json()["problems"])
    assert "_test.yaml:" in problems and "welcome_coupon" in problems
    assert welcome(http) == (good, coupon), "the last good set keeps serving"


def test_a_gate_that_raises_refuses_the_set(http: TestClient, rules_dir: Path) -> None:
    def broken(rules: RuleSet, directory: Path) -> list[str]:
        raise RuntimeError("cannot reach the test runner")

    engine_of(http).reloader.gate = broken
    edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "50"))

    response = http.post(RELOAD, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["problems"] == ["the gate failed: RuntimeError: cannot reach the test runner"]


def test_a_failing_gate_refuses_to_start(rules_dir: Path) -> None:
    with pytest.raises(RuleSetError, match="rule tests failed"):
        RuleRegistry.from_directory(rules_dir, gate=lambda rules, directory: ["rule tests failed"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no token", "wrong token", "no scheme", "basic scheme"],
)
def test_an_admin_reload_without_the_right_token_is_forbidden(http: TestClient, rules_dir: Path, headers: dict[str, str]) -> None:
    before, _ = welcome(http)
    edit(rules_dir / "offers.yaml", VALUE_LINE, VALUE_LINE.replace("25", "50"))

    response = http.post(RELOAD, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden" and "NBA_ADMIN_TOKEN" in response.json()["message"]
    assert welcome(http)[0] == before
    assert metric(http, 'nba_rules_reloads_total{result="ok"}') == 0


def test_without_a_configured_token_admin_is_closed_in_production_and_open_in_development(
    settings: Settings, clock: FixedClock
) -> None:
    with serving(settings.model_copy(update={"admin_token": None, "env": "production"}), clock) as http:
        response = http.post(RELOAD, headers=AUTH)
        assert response.status_code == 403 and "set NBA_ADMIN_TOKEN" in response.json()["message"]
    with serving(settings.model_copy(update={"admin_token": None, "env": "development"}), clock) as http:
        assert http.post(RELOAD).status_code == 200


def test_a_short_admin_token_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token="short")
