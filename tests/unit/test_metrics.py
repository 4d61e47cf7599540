"""The metrics registry renders what Prometheus parses, and refuses what it would not."""

from __future__ import annotations

import doctest

import pytest

from engine import metrics as metrics_module
from engine.metrics import MetricsRegistry


def test_docstring_example_runs() -> None:
    assert doctest.testmod(metrics_module, raise_on_error=True).attempted > 0


def test_label_values_are_escaped_and_numbers_rendered_as_prometheus_reads_them() -> None:
    metrics = MetricsRegistry()
    info = metrics.gauge("nba_rules_info", "The set in force.", labels=("version",))
    info.set(1, version='a"b\\c\nd')
    seconds = metrics.gauge("nba_rules_reload_seconds", "Last reload.")
    seconds.set(0.125)

    lines = metrics.render().splitlines()

    assert 'nba_rules_info{version="a\\"b\\\\c\\nd"} 1' in lines
    assert "nba_rules_reload_seconds 0.125" in lines
    assert lines[0] == "# HELP nba_rules_info The set in force."


def test_an_info_gauge_cleared_shows_only_the_new_label() -> None:
    metrics = MetricsRegistry()
    info = metrics.gauge("nba_rules_info", "The set in force.", labels=("version",))
    info.set(1, version="old")
    info.clear()
    info.set(1, version="new")

    assert [line for line in metrics.render().splitlines() if not line.startswith("#")] == ['nba_rules_info{version="new"} 1']


def test_counters_only_go_up_and_labels_must_match() -> None:
    metrics = MetricsRegistry()
    reloads = metrics.counter("nba_rules_reloads_total", "Reloads.", labels=("result",))
    reloads.inc(result="ok")
    reloads.inc(2, result="ok")

    assert reloads.value(result="ok") == 3
    with pytest.raises(ValueError, match="cannot go down"):
        reloads.inc(-1, result="ok")
    with pytest.raises(ValueError, match="takes labels"):
        reloads.inc(outcome="ok")
    with pytest.raises(ValueError, match="already registered"):
        metrics.counter("nba_rules_reloads_total", "Again.")
    with pytest.raises(ValueError, match="invalid metric name"):
        metrics.gauge("nba-rules", "Dashes are not allowed.")


def samples(metrics: MetricsRegistry) -> dict[str, float]:
    """Every sample line of a render, by series name and labels."""
    out: dict[str, float] = {}
    for line in metrics.render().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def test_a_histogram_renders_cumulative_buckets_with_sum_and_count() -> None:
    metrics = MetricsRegistry()
    seconds = metrics.histogram("nba_decision_seconds", "Time.", labels=("channel",), buckets=(0.001, 0.01, 0.1))
    web = seconds.child("web")
    for value in (0.0005, 0.001, 0.002, 0.05, 3.0):  # 0.001 sits on a bound: `le` counts it in that bucket
        web.observe(value)
    seconds.observe(0.02, channel="sms")

    got = samples(metrics)

    assert got['nba_decision_seconds_bucket{channel="web",le="0.001"}'] == 2
    assert got['nba_decision_seconds_bucket{channel="web",le="0.01"}'] == 3
    assert got['nba_decision_seconds_bucket{channel="web",le="0.1"}'] == 4
    assert got['nba_decision_seconds_bucket{channel="web",le="+Inf"}'] == 5
    assert got['nba_decision_seconds_count{channel="web"}'] == 5
    assert got['nba_decision_seconds_sum{channel="web"}'] == pytest.approx(3.0535)
    assert got['nba_decision_seconds_bucket{channel="sms",le="0.01"}'] == 0
    assert got['nba_decision_seconds_bucket{channel="sms",le="0.1"}'] == 1
    assert seconds.count(channel="web") == 5 and seconds.sum(channel="sms") == pytest.approx(0.02)
    assert "# TYPE nba_decision_seconds histogram" in metrics.render().splitlines()


def test_a_histogram_without_labels_and_one_never_observed() -> None:
    metrics = MetricsRegistry()
    plain = metrics.histogram("nba_plain_seconds", "Time.", buckets=(1.0,))
    plain.observe(0.5)
    metrics.histogram("nba_idle_seconds", "Never observed.", labels=("channel",))

    got = samples(metrics)

    assert got == {
        'nba_plain_seconds_bucket{le="1"}': 1,
        'nba_plain_seconds_bucket{le="+Inf"}': 1,
        "nba_plain_seconds_sum": 0.5,
        "nba_plain_seconds_count": 1,
    }


@pytest.mark.parametrize("buckets", [(), (0.1, 0.1), (1.0, 0.5), (0.1, float("inf"))])
def test_histogram_buckets_must_be_finite_increasing_and_not_empty(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets must be"):
        MetricsRegistry().histogram("nba_x_seconds", "x", buckets=buckets)


def test_le_is_reserved_for_buckets() -> None:
    with pytest.raises(ValueError, match="`le`"):
        MetricsRegistry().histogram("nba_x_seconds", "x", labels=("le",))


def test_a_bound_child_counts_into_its_series_and_shows_zero_until_then() -> None:
    metrics = MetricsRegistry()
    decisions = metrics.counter("nba_decisions_total", "Decisions.", labels=("channel", "result"))
    web_ok = decisions.child("web", "treatments")
    decisions.child("sms", "degraded")

    assert samples(metrics) == {
        'nba_decisions_total{channel="sms",result="degraded"}': 0,
        'nba_decisions_total{channel="web",result="treatments"}': 0,
    }
    web_ok.inc()
    web_ok.inc(2)
    decisions.inc(channel="web", result="treatments")  # the same series, named by keyword
    assert decisions.value(channel="web", result="treatments") == 4
    with pytest.raises(ValueError, match="cannot go down"):
        web_ok.inc(-1)
    with pytest.raises(ValueError, match="takes labels"):
        decisions.child("web")


def test_collectors_run_before_each_render() -> None:
    metrics = MetricsRegistry()
    version = metrics.gauge("nba_model_version", "Version.", labels=("model",))
    served = {"response": 1}
    metrics.collect_with(lambda: version.set(served["response"], model="response"))

    assert samples(metrics) == {'nba_model_version{model="response"}': 1}
    served["response"] = 4
    assert samples(metrics) == {'nba_model_version{model="response"}': 4}
