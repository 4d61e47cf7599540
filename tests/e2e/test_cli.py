"""The `nba` command as marketers and operators use it."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from redis import Redis
from typer.testing import CliRunner

from engine.cli import app
from engine.learning.banditlog import write_jsonl
from engine.learning.synthetic import Simulator
from engine.state import keys
from tests.conftest import EXAMPLE_RULES

runner = CliRunner()


def test_rules_check_passes_on_the_example_set() -> None:
    result = runner.invoke(app, ["rules", "check", str(EXAMPLE_RULES)])
    assert result.exit_code == 0, result.output
    assert "ok: 18 treatments" in result.output


def test_rules_check_lists_every_error_and_fails(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "treatments:\n  - id: a\n    kind: offer\n    channels: [web]\n    eligibility: customer.tier == 'x'\n"
        "  - id: b\n    kind: gift\n    channels: [web]\n"
    )
    result = runner.invoke(app, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "a.yaml:5:" in result.output and "customer.tier" in result.output
    assert "a.yaml:7:" in result.output and "'gift'" in result.output
    assert "2 error(s)" in result.output


def test_evaluate_estimates_a_fixed_policy_from_a_log_file(tmp_path: Path) -> None:
    sim = Simulator.make(seed=3)
    log = tmp_path / "rounds.jsonl"
    write_jsonl(sim.simulate(2_000, seed=1), log)
    result = runner.invoke(app, ["evaluate", "--policy", "fixed:a1", "--from-file", str(log), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    for estimator in ("IPS", "SNIPS", "DR", "logging policy"):
        assert estimator in result.output


def test_serve_refuses_http_only_with_grpc_only() -> None:
    result = runner.invoke(app, ["serve", "--http-only", "--grpc-only"])
    assert result.exit_code == 2
    assert "--http-only and --grpc-only exclude each other" in result.output


def test_evaluate_refuses_an_unknown_policy(tmp_path: Path) -> None:
    log = tmp_path / "rounds.jsonl"
    write_jsonl(Simulator.make(seed=3).simulate(10, seed=1), log)
    result = runner.invoke(app, ["evaluate", "--policy", "bogus", "--from-file", str(log)])
    assert result.exit_code == 2
    assert "bogus" in result.output


def test_seeded_customers_get_equity_tiers_a_lifetime_model_and_an_roi_report(
    redis_url: str, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBA_REDIS_URL", redis_url)
    monkeypatch.setenv("NBA_RULES_DIR", str(EXAMPLE_RULES))
    seeded = runner.invoke(app, ["seed", "--customers", "400"])
    assert seeded.exit_code == 0, seeded.output
    assert redis_sync.get(keys.LIFETIME_MODEL) is not None, "seeding enough buyers fits a lifetime model"

    recomputed = runner.invoke(app, ["equity", "recompute", "--chunk", "100"])
    assert recomputed.exit_code == 0, recomputed.output
    summary = orjson.loads(redis_sync.get(keys.EQUITY_SUMMARY))
    assert summary["customers"] == 404 and sum(summary["per_tier"].values()) == 404
    assert "Equity of 404 customers" in recomputed.output
    snapshot = redis_sync.hgetall(keys.equity_snapshot("alice"))
    assert snapshot[b"tier"].decode() in summary["per_tier"] and 0 <= float(snapshot[b"equity"]) <= 100

    fitted = runner.invoke(app, ["clv", "fit"])
    assert fitted.exit_code == 0, fitted.output
    assert "Lifetime-value model v2" in fitted.output and "BG/NBD" in fitted.output
    stored = orjson.loads(redis_sync.get(keys.LIFETIME_MODEL))
    assert stored["version"] == 2 and stored["customers"] == 404
    assert redis_sync.get(keys.lifetime_model_version(1)) is not None, "earlier versions are kept"

    report = runner.invoke(app, ["report", "roi", "--days", "7", "--json"])
    assert report.exit_code == 0, report.output
    assert orjson.loads(report.output)["counts"]["decisions_read"] == 0
    arms = runner.invoke(app, ["report", "arms", "--days", "7", "--json"])
    assert arms.exit_code == 0, arms.output
    window = orjson.loads(arms.output)["window"]
    assert window["until_ms"] - window["since_ms"] == 7 * 86_400_000


def test_a_lifetime_fit_on_too_few_buyers_is_refused_clearly(
    redis_url: str, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBA_REDIS_URL", redis_url)
    monkeypatch.setenv("NBA_RULES_DIR", str(EXAMPLE_RULES))
    assert runner.invoke(app, ["seed", "--customers", "10"]).exit_code == 0
    result = runner.invoke(app, ["clv", "fit"])
    assert result.exit_code == 2
    assert "only 14 customers have bought anything" in result.output
    assert redis_sync.get(keys.LIFETIME_MODEL) is None


def test_rules_check_warns_and_strict_makes_warnings_fail(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "fields:\n  customer:\n    age: number\n"
        "treatments:\n  - id: a\n    kind: offer\n    channels: [web]\n    eligibility: customer.age < 18 and customer.age > 65\n"
    )
    relaxed = runner.invoke(app, ["rules", "check", str(tmp_path)])
    assert relaxed.exit_code == 0, relaxed.output
    assert "a.yaml:8:" in relaxed.output and "`a` is unreachable" in relaxed.output and "1 warning(s)" in relaxed.output
    strict = runner.invoke(app, ["rules", "check", "--strict", str(tmp_path)])
    assert strict.exit_code == 1


def test_rules_test_runs_the_shipped_cases_and_a_failing_case_fails(tmp_path: Path) -> None:
    shipped = runner.invoke(app, ["rules", "test", "--strict", str(EXAMPLE_RULES)])
    assert shipped.exit_code == 0, shipped.output
    assert "0 failed" in shipped.output and "18 of 18 treatments" in shipped.output
    for path in EXAMPLE_RULES.glob("*.yaml"):
        if not path.name.endswith("_test.yaml"):
            (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "wrong_test.yaml").write_text(
        "cases:\n  - name: a newcomer gets the credit card\n    request: {channel: web}\n"
        "    customer: {profile: {age: 30}}\n    expect: {first: status_challenge}\n"
    )
    failing = runner.invoke(app, ["rules", "test", str(tmp_path)])
    assert failing.exit_code == 1
    assert "a newcomer gets the credit card" in failing.output and "status_challenge" in failing.output


def test_simulate_compares_a_rule_set_with_its_baseline(tmp_path: Path) -> None:
    for path in EXAMPLE_RULES.glob("*.yaml"):
        if not path.name.endswith("_test.yaml"):
            (tmp_path / path.name).write_text(path.read_text())
    offers = tmp_path / "offers.yaml"
    offers.write_text(offers.read_text().replace("eligibility: customer.age >= 21", "eligibility: customer.age >= 200"))
    result = runner.invoke(
        app, ["simulate", "--rules", str(tmp_path), "--baseline", str(EXAMPLE_RULES), "--customers", "2000", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    rows = {row["id"]: row for row in report["treatments"]}
    card = rows["credit_card_offer"]
    assert card["current"]["eligible_share"] == 0.0 and card["flag"] == "never"
    assert card["eligible_delta"] < 0, "fewer customers than under the baseline"


def test_simulate_learning_reports_the_learned_policy_against_the_oracle_and_the_prior() -> None:
    result = runner.invoke(app, ["simulate-learning", "--decisions", "400", "--seed", "3"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    run = re.search(r"accepted ([\d,]+) of 400 offers; model version (\d+)", text)
    assert run is not None, text
    assert 0 < int(run[1].replace(",", "")) < 400 and int(run[2]) >= 1, "offers were accepted and learned from"
    figures = re.search(r"learned (\d\.\d{3}), oracle (\d\.\d{3}) \((\d+)% of oracle\), static prior (\d\.\d{3})", text)
    assert figures is not None, text
    learned, oracle, share, prior = float(figures[1]), float(figures[2]), int(figures[3]), float(figures[4])
    assert 0 < learned <= oracle and 0 < prior <= oracle
    assert abs(share - 100 * learned / oracle) <= 1
    assert re.search(r"learned choice per segment: \{'family': '\w+'", text), text


@pytest.mark.parametrize("decisions", ["0", "-5"])
def test_simulate_learning_refuses_fewer_than_one_decision_naming_the_option(decisions: str) -> None:
    result = runner.invoke(app, ["simulate-learning", "--decisions", decisions])
    assert result.exit_code == 2
    assert "--decisions" in result.output
    assert "accepted" not in result.output
