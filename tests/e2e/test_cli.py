"""The `nba` command as marketers and operators use it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.learning.banditlog import write_jsonl
from engine.learning.synthetic import Simulator
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


def test_evaluate_refuses_an_unknown_policy(tmp_path: Path) -> None:
    log = tmp_path / "rounds.jsonl"
    write_jsonl(Simulator.make(seed=3).simulate(10, seed=1), log)
    result = runner.invoke(app, ["evaluate", "--policy", "bogus", "--from-file", str(log)])
    assert result.exit_code == 2
    assert "bogus" in result.output
