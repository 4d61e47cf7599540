"""A tiny metrics registry: counters, gauges and histograms, rendered in the Prometheus text format.

Enough for the operational figures the engine publishes (decisions by result and how long they
took, events and feedback taken in, store failures, rule reloads, the rule set and model
versions in force), without a client library. Each engine owns one registry, so two engines in
one process (tests) do not share counts.

On the hot path a metric is updated through a child bound to its label values once
(`counter.child("web", "ok")`): that is a dict update, where naming labels per call would
check and build them every time.

>>> metrics = MetricsRegistry()
>>> reloads = metrics.counter("nba_rules_reloads_total", "Rule set reloads, by result.", labels=("result",))
>>> reloads.inc(result="ok")
>>> print(metrics.render(), end="")
# HELP nba_rules_reloads_total Rule set reloads, by result.
# TYPE nba_rules_reloads_total counter
nba_rules_reloads_total{result="ok"} 1
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Labels = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        self.name = name
        self.help = help
        self.labels = labels
        self._values: dict[Labels, float] = {}

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {list(self.labels)}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def _positional_key(self, values: Sequence[str]) -> Labels:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {list(self.labels)}, got {len(values)} values")
        return tuple(str(v) for v in values)

    def _series(self, key: Labels) -> str:
        pairs = ",".join(f'{name}="{_escape(v)}"' for name, v in zip(self.labels, key, strict=True))
        return f"{{{pairs}}}" if pairs else ""

    def value(self, **labels: str) -> float:
        """The current value for these label values (0 if never set)."""
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{self._series(key)} {_number(value)}")
        return lines


class Counter(_Metric):
    """Only goes up (until the process restarts)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def child(self, *values: str) -> CounterChild:
        """This counter at these label values (in the order the labels were declared)."""
        return CounterChild(self, self._positional_key(values))


class CounterChild:
    __slots__ = ("_key", "_values", "name")

    def __init__(self, counter: Counter, key: Labels) -> None:
        self.name = counter.name
        self._values = counter._values
        self._key = key
        self._values.setdefault(key, 0.0)  # shown as 0 from the start, so a rate has a baseline

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down (got {amount})")
        self._values[self._key] += amount


class Gauge(_Metric):
    """A value that is set, such as a duration, a timestamp or a 1 marking the version in force."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def clear(self) -> None:
        """Forget every label combination (an info gauge whose version label changed)."""
        self._values.clear()


DEFAULT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: from a fast decision to a request that has long missed any screen's budget."""


class _Buckets:
    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.total = 0.0


class Histogram(_Metric):
    """Observations counted into buckets by upper bound (`le`), with their sum and count, so a
    scraper can work out rates, means and quantiles over any window."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Labels = (), buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels)
        if "le" in labels:
            raise ValueError(f"{name}: `le` is the bucket label of a histogram")
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"{name}: buckets must be finite, increasing and not empty, got {list(buckets)}")
        self.bounds = bounds
        self._buckets: dict[Labels, _Buckets] = {}

    def observe(self, value: float, **labels: str) -> None:
        self.child(*self._key(labels)).observe(value)

    def child(self, *values: str) -> HistogramChild:
        key = self._positional_key(values)
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = _Buckets(len(self.bounds) + 1)
        return HistogramChild(self.bounds, found)

    def count(self, **labels: str) -> int:
        found = self._buckets.get(self._key(labels))
        return sum(found.counts) if found else 0

    def sum(self, **labels: str) -> float:
        found = self._buckets.get(self._key(labels))
        return found.total if found else 0.0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, series in sorted(self._buckets.items()):
            labels = self._series(key)[1:-1]
            sep = "," if labels else ""
            running = 0
            for bound, n in zip((*self.bounds, math.inf), series.counts, strict=True):
                running += n
                lines.append(f'{self.name}_bucket{{{labels}{sep}le="{_number(bound)}"}} {running}')
            lines.append(f"{self.name}_sum{self._series(key)} {_number(series.total)}")
            lines.append(f"{self.name}_count{self._series(key)} {running}")
        return lines


class HistogramChild:
    __slots__ = ("_bounds", "_series")

    def __init__(self, bounds: tuple[float, ...], series: _Buckets) -> None:
        self._bounds = bounds
        self._series = series

    def observe(self, value: float) -> None:
        series = self._series
        series.counts[bisect.bisect_left(self._bounds, value)] += 1  # le: a value on a bound counts in it
        series.total += value


class MetricsRegistry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Callable[[], None]] = []

    def _add(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help: str, *, labels: Labels = ()) -> Counter:
        counter = Counter(name, help, labels)
        self._add(counter)
        return counter

    def gauge(self, name: str, help: str, *, labels: Labels = ()) -> Gauge:
        gauge = Gauge(name, help, labels)
        self._add(gauge)
        return gauge

    def histogram(self, name: str, help: str, *, labels: Labels = (), buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        histogram = Histogram(name, help, labels, buckets)
        self._add(histogram)
        return histogram

    def get(self, name: str) -> _Metric:
        """A registered metric by name (KeyError when there is none)."""
        return self._metrics[name]

    def collect_with(self, collector: Callable[[], None]) -> None:
        """Run `collector` before every render: for figures read when scraped (model versions in
        force) rather than pushed as they change."""
        self._collectors.append(collector)

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        for collect in self._collectors:
            collect()
        lines = [line for metric in self._metrics.values() for line in metric.render()]
        return "\n".join(lines) + "\n" if lines else ""
