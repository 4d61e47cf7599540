"""The experiment-arms comparison: counts, rates, intervals, and sticky assignment."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from engine.decision.arms import assign
from engine.reports.arms import arms_report, rate_difference, wilson
from engine.rules.schema import Experiments


def decision(i: int, arm: str | None, treatments: tuple[str, ...] = ("a",), ts: int = 100) -> dict[str, object]:
    record: dict[str, object] = {
        "decision_id": f"d{i}",
        "customer_id": f"c{i % 7}",
        "ts": ts,
        "treatments": [{"id": t} for t in treatments],
    }
    if arm is not None:
        record["arm"] = arm
    return record


def test_arms_count_shows_acceptances_and_value_per_decision() -> None:
    decisions = [
        decision(1, "champion"),
        decision(2, "champion"),
        decision(3, "challenger:x"),
        decision(4, None),
        decision(5, "holdout", ts=999),
    ]
    feedback = [
        {"decision_id": "d1", "treatment_id": "a", "outcome": "accept"},
        {"decision_id": "d1", "treatment_id": "a", "outcome": "purchase", "value": 50.0},
        {"decision_id": "d3", "treatment_id": "a", "outcome": "purchase", "value": 30.0},
        {"decision_id": "d3", "treatment_id": "zzz", "outcome": "purchase", "value": 1000.0},  # not shown: ignored
    ]
    report = arms_report(decisions, feedback, since_ms=0, until_ms=500)
    rows = {r.arm: r for r in report.arms}
    assert list(rows) == ["champion", "challenger:x", "unassigned"], "champion first; out-of-window holdout left out"
    champion, challenger = rows["champion"], rows["challenger:x"]
    assert (champion.decisions, champion.shows, champion.accepts, champion.revenue) == (2, 2, 1, 50.0)
    assert champion.acceptance_rate == 0.5 and champion.value_per_decision == 25.0
    assert (challenger.accepts, challenger.value_per_decision) == (1, 30.0)
    assert challenger.rate_vs_champion is not None and challenger.rate_vs_champion[0] == pytest.approx(0.5)
    assert champion.rate_vs_champion is None
    json.dumps(report.to_dict())


def test_wilson_interval_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    covered = sum(lo <= 0.1 <= hi for lo, hi in (wilson(int(rng.binomial(400, 0.1)), 400) for _ in range(2000)))  # type: ignore[operator]
    assert 0.93 <= covered / 2000 <= 0.97
    assert wilson(0, 0) == (None, None)


def test_a_real_difference_in_acceptance_is_detected_and_no_difference_is_mostly_not() -> None:
    rng = np.random.default_rng(9)
    d, lo, hi = rate_difference((int(rng.binomial(5000, 0.12)), 5000), (int(rng.binomial(5000, 0.10)), 5000))
    assert d is not None and lo is not None and lo > 0 and hi is not None and hi > lo
    false_alarms = 0
    for _ in range(500):
        _, lo, hi = rate_difference((int(rng.binomial(2000, 0.1)), 2000), (int(rng.binomial(2000, 0.1)), 2000))
        false_alarms += not (lo <= 0 <= hi)  # type: ignore[operator]
    assert false_alarms / 500 < 0.08


def test_assignment_is_sticky_and_splits_customers_as_configured() -> None:
    experiments = Experiments.model_validate(
        {
            "holdout": {"share": 0.1, "treatment": "random"},
            "placements": {"agent_prompt": {"share": 0.0}},
            "challengers": [
                {"id": "new_rules", "share": 0.2, "rules": "challenger"},
                {"id": "m2", "share": 0.1, "model": "bagged"},
            ],
        }
    )
    arms = collections.Counter(assign(f"c{i}", None, experiments).name for i in range(50_000))
    assert arms["holdout"] / 50_000 == pytest.approx(0.1, abs=0.01)
    assert arms["challenger:new_rules"] / 50_000 == pytest.approx(0.2, abs=0.01)
    assert arms["challenger:m2"] / 50_000 == pytest.approx(0.1, abs=0.01)
    assert assign("c42", None, experiments) == assign("c42", None, experiments)
    assert "holdout" not in {assign(f"c{i}", "agent_prompt", experiments).name for i in range(2_000)}
    held = next(assign(f"c{i}", None, experiments) for i in range(1000) if assign(f"c{i}", None, experiments).name == "holdout")
    assert held.random


def test_experiment_settings_are_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="either `rules` or `model`"):
        Experiments.model_validate({"challengers": [{"id": "x", "share": 0.1}]})
    with pytest.raises(ValidationError, match="leave the champion at least 10%"):
        Experiments.model_validate({"holdout": {"share": 0.5}, "challengers": [{"id": "x", "share": 0.45, "model": "m"}]})
