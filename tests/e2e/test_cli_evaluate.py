"""`nba evaluate` trains a model that has not served when asked, and says on what."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.evaluation.replay import write_rounds
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
