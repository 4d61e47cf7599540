"""The benchmark's arithmetic: rounds in alternating order, the median of their ratios against
each baseline, and samples that add up. (The figures themselves are read, not asserted.)"""

from __future__ import annotations

import asyncio

import pytest

from loadtests import bench
from loadtests.bench import Comparison, Sample, Tally, alternating_rounds, summarize


def sample(ok: int, seconds: float, server_cpu_s: float, errors: int = 0) -> Sample:
    tally = Tally(latencies=[0.001 * (i + 1) for i in range(ok + errors)], ok=ok, errors=errors)
    return Sample(tally, seconds, {"server": server_cpu_s, "load generator": 0.1})


def test_summary_counts_successes_only_and_cpu_per_success() -> None:
    m = summarize("x", sample(ok=400, seconds=2.0, server_cpu_s=1.0, errors=100))
    assert m.requests == 500 and m.errors == 100
    assert m.throughput_rps == 200.0  # failures answered fast must not look like throughput
    assert m.server_cpu_ms_per_request == 2.5
    assert m.cpu_pct == {"server": 50.0, "load generator": 5.0}
    assert m.p50_ms == 250.0 and m.max_ms == 500.0


def test_samples_add_up() -> None:
    a, b = sample(10, 1.0, 0.5, errors=1), sample(30, 3.0, 1.5)
    total = a + b
    assert total.tally.ok == 40 and total.tally.errors == 1 and len(total.tally.latencies) == 41
    assert total.elapsed_s == 4.0 and total.cpu_s == {"server": 2.0, "load generator": 0.2}


def test_alternating_rounds_alternate_and_report_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "PAUSE_BETWEEN_S", 0.0)
    order: list[str] = []
    # Round r: bare 1,000 req/s; decisions r × 100 req/s, so the ratios are 0.1, 0.2, 0.3, 0.4, 0.9.
    decisions = iter([100, 200, 300, 400, 900])
    bare_cpu = iter([1.0, 1.0, 1.0, 1.0, 1.0])

    async def measure(kind: str, seconds: float) -> Sample:
        order.append(kind)
        if kind == "bare":
            return sample(1_000, seconds, next(bare_cpu))
        n = next(decisions)
        return sample(n, seconds, 1.0)  # one second of server CPU whatever the count

    result = asyncio.run(alternating_rounds(5, 1.0, measure, kinds=("bare", "decisions")))
    assert order == ["bare", "decisions", "decisions", "bare", "bare", "decisions", "decisions", "bare", "bare", "decisions"]
    assert result.ratios() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.9])
    assert result.ratio() == pytest.approx(0.3)  # the median: one odd round does not move it
    assert result.cpu_ratio() == pytest.approx(0.3, rel=1e-3)  # 1 ms per bare request against 3.333 ms per decision
    assert result.bare.requests == 5_000 and result.decisions.requests == 1_900
    assert result.decisions.throughput_rps == pytest.approx(380.0)
    assert [r["bare"].name for r in result.rounds] == [f"bare, round {r}" for r in range(1, 6)]
    payload = result.as_json()
    assert payload["ratio_decisions_to_bare"] == pytest.approx(0.3) and len(payload["rounds"]) == 5


def test_each_baseline_gets_its_own_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three kinds: forwards in odd rounds, backwards in even ones, and decisions are compared with
    each baseline measured in the same round."""
    monkeypatch.setattr(bench, "PAUSE_BETWEEN_S", 0.0)
    order: list[str] = []
    rates = {"bare": iter([1_000, 800, 1_000]), "bare_redis_py": iter([400, 400, 500]), "decisions": iter([200, 200, 300])}

    async def measure(kind: str, seconds: float) -> Sample:
        order.append(kind)
        n = next(rates[kind])
        return sample(n, seconds, n / 2_000)  # half a millisecond of server CPU per request, for every kind

    result = asyncio.run(alternating_rounds(3, 1.0, measure))
    forwards = ["bare", "bare_redis_py", "decisions"]
    assert order == forwards + forwards[::-1] + forwards
    assert result.baselines == ["bare", "bare_redis_py"]
    assert result.ratios("bare") == pytest.approx([0.2, 0.25, 0.3])
    assert result.ratios("bare_redis_py") == pytest.approx([0.5, 0.5, 0.6])
    assert result.ratio("bare_redis_py") == pytest.approx(0.5)
    assert result.cpu_ratio("bare_redis_py") == pytest.approx(1.0)
    ratios = result.as_json()["ratios"]
    assert ratios["bare"]["throughput"] == pytest.approx(0.25)
    assert ratios["bare_redis_py"]["per_round"] == pytest.approx([0.5, 0.5, 0.6])
    assert result.totals["bare_redis_py"].requests == 1_300


def test_no_ratio_without_bare_throughput() -> None:
    empty = summarize("bare", Sample(Tally(), 1.0, {}))
    result = Comparison([{"bare": empty, "decisions": empty}], {"bare": empty, "decisions": empty})
    assert result.ratio() is None and result.ratios() == []


def test_training_accepts_one_shown_offer_in_three_and_waits_for_every_model() -> None:
    reports: list[tuple[int, str, str, str]] = []
    polls = iter([{}, {"response": 0, "other": 2}, {"response": 3, "other": 2}])

    async def decide(i: int) -> tuple[str, str | None]:
        return f"d{i}", None if i == 4 else f"t{i}"  # the fifth decision showed nothing

    async def feedback(i: int, decision_id: str, treatment_id: str, outcome: str) -> None:
        reports.append((i, decision_id, treatment_id, outcome))

    async def versions() -> dict[str, int]:
        return next(polls)

    served = asyncio.run(bench.train_through_feedback(decide, feedback, versions, decisions=7, timeout_s=5))
    assert served == "response@3, other@2"
    assert [(i, outcome) for i, _, _, outcome in reports] == [
        (0, "accept"),
        (1, "reject"),
        (2, "reject"),
        (3, "accept"),
        (5, "reject"),
        (6, "accept"),
    ]
    assert reports[0][1:3] == ("d0", "t0")


def test_training_gives_up_when_no_model_is_published_in_time() -> None:
    async def decide(i: int) -> tuple[str, str | None]:
        return f"d{i}", None

    async def feedback(i: int, decision_id: str, treatment_id: str, outcome: str) -> None:
        raise AssertionError("nothing was shown")

    async def versions() -> dict[str, int]:
        return {"response": 0}

    assert asyncio.run(bench.train_through_feedback(decide, feedback, versions, decisions=3, timeout_s=0.3)) is None
