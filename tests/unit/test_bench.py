"""The benchmark's arithmetic: paired rounds in alternating order, the median of their ratios,
and samples that add up. (The figures themselves are read, not asserted.)"""

from __future__ import annotations

import asyncio

import pytest

from loadtests import bench
from loadtests.bench import Comparison, Sample, Tally, paired_rounds, summarize


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


def test_paired_rounds_alternate_and_report_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
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

    result = asyncio.run(paired_rounds(5, 1.0, measure))
    assert order == ["bare", "decisions", "decisions", "bare", "bare", "decisions", "decisions", "bare", "bare", "decisions"]
    assert result.ratios == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.9])
    assert result.ratio == pytest.approx(0.3)  # the median: one odd round does not move it
    assert result.cpu_ratio == pytest.approx(0.3, rel=1e-3)  # 1 ms per bare request against 3.333 ms per decision
    assert result.bare.requests == 5_000 and result.decisions.requests == 1_900
    assert result.decisions.throughput_rps == pytest.approx(380.0)
    assert [b.name for b, _ in result.rounds] == [f"bare, round {r}" for r in range(1, 6)]
    payload = result.as_json()
    assert payload["ratio_decisions_to_bare"] == pytest.approx(0.3) and len(payload["rounds"]) == 5


def test_no_ratio_without_bare_throughput() -> None:
    empty = summarize("bare", Sample(Tally(), 1.0, {}))
    assert Comparison([(empty, empty)], empty, empty).ratio is None
