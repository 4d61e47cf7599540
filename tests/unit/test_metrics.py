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
