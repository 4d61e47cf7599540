"""`nba evaluate` trains a model that has not served when asked, says on what, and refuses what
the log cannot answer in one line rather than with a table of zeros or a traceback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluation.replay import write_rounds
from engine.learning.banditlog import LoggedRound, write_jsonl
from engine.learning.ope import evaluate, fixed_action
from engine.learning.synthetic import Simulator
from tests.unit.learning.test_evaluate_training import CHALLENGER, _log

runner = CliRunner()


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "challenger.yaml").write_text(CHALLENGER, encoding="utf-8")
    monkeypatch.setenv("NBA_MODELS_DIR", str(models))
    path = tmp_path / "rounds.jsonl"
    write_rounds(_log(400, seed=5), path)
    return path


def test_a_model_without_weights_is_trained_on_the_share_asked_for(logged: Path) -> None:
    args = ["evaluate", "--policy", "model:challenger", "--from-file", str(logged), "--bootstrap", "50"]
    trained = runner.invoke(app, [*args, "--train-share", "0.25"])
    assert trained.exit_code == 0, trained.output
    assert "trained on the first 100 decisions" in " ".join(trained.output.split())
    untrained = runner.invoke(app, [*args, "--train", "never"])
    assert untrained.exit_code == 0, untrained.output
    assert "priors only" in " ".join(untrained.output.split())


def test_training_options_out_of_range_are_refused(logged: Path) -> None:
    args = ["evaluate", "--policy", "model:challenger", "--from-file", str(logged)]
    assert runner.invoke(app, [*args, "--train", "sometimes"]).exit_code == 2
    assert runner.invoke(app, [*args, "--train-share", "1.5"]).exit_code == 2


def refused(result: Result) -> str:
    """The refusal's one line: exit code 2 like every other bad input, and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def simulated(tmp_path: Path) -> Path:
    path = tmp_path / "rounds.jsonl"
    write_jsonl(Simulator.make(seed=3).simulate(500, seed=1), path)
    return path


def test_a_fixed_treatment_absent_from_the_log_is_refused_not_scored_zero(simulated: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--policy", "fixed:zzz", "--from-file", str(simulated), "--bootstrap", "50"])
    line = refused(result)
    assert "policy 'fixed:zzz' never chooses any action in the log" in line
    assert "'zzz' does not appear among the logged actions (a0, a1, a2, a3, a4)" in line
    assert "0.0000" not in result.output


def test_a_fixed_treatment_that_was_a_candidate_but_never_shown_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rounds.jsonl"
    rows = [LoggedRound(context={}, action="a", reward=float(i % 2), propensity=0.9, actions=("a", "b")) for i in range(20)]
    write_jsonl(rows, path)
    line = refused(runner.invoke(app, ["evaluate", "--policy", "fixed:b", "--from-file", str(path), "--bootstrap", "20"]))
    assert "policy 'fixed:b' never chooses any action in the log" in line and "'b' was a candidate but was never shown" in line
    shown = runner.invoke(app, ["evaluate", "--policy", "fixed:a", "--from-file", str(path), "--bootstrap", "20"])
    assert shown.exit_code == 0, shown.output


def test_the_estimators_do_not_make_up_a_value_for_a_policy_the_log_cannot_see() -> None:
    rounds = Simulator.make(seed=3).simulate(500, seed=1)
    ips, snips, dr = evaluate(rounds, fixed_action("zzz"), n_boot=50)
    assert ips.ess == 0.0 and ips.value == 0.0, "IPS of a policy that shows nothing is 0, flagged by its ESS"
    assert math.isnan(snips.value) and math.isnan(snips.ci_low), "SNIPS is 0/0 here, not 0"
    assert dr.ess == 0.0


def test_a_missing_log_file_is_named_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.jsonl"
    line = refused(runner.invoke(app, ["evaluate", "--policy", "greedy", "--from-file", str(missing)]))
    assert line == f"log file {str(missing)!r} does not exist"


def test_an_export_into_a_missing_directory_is_refused_before_reading(simulated: Path, tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "rounds.jsonl"
    args = ["evaluate", "--policy", "fixed:a1", "--from-file", str(simulated), "--export", str(target)]
    line = refused(runner.invoke(app, args))
    assert line == f"cannot export to {str(target)!r}: directory {str(target.parent)!r} does not exist"
    assert not target.parent.exists()
