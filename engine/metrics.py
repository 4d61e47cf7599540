"""A tiny metrics registry: counters and gauges, rendered in the Prometheus text format.

Enough for the handful of operational figures the engine publishes (rule reloads, the rule set
in force), without a client library. Each engine owns one registry, so two engines in one
process (tests) do not share counts.

>>> metrics = MetricsRegistry()
>>> reloads = metrics.counter("nba_rules_reloads_total", "Rule set reloads, by result.", labels=("result",))
>>> reloads.inc(result="ok")
>>> print(metrics.render(), end="")
# HELP nba_rules_reloads_total Rule set reloads, by result.
# TYPE nba_rules_reloads_total counter
nba_rules_reloads_total{result="ok"} 1
"""

from __future__ import annotations

import math
import re

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

    def value(self, **labels: str) -> float:
        """The current value for these label values (0 if never set)."""
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self._values.items()):
            pairs = ",".join(f'{name}="{_escape(v)}"' for name, v in zip(self.labels, key, strict=True))
            lines.append(f"{self.name}{{{pairs}}} {_number(value)}" if pairs else f"{self.name} {_number(value)}")
        return lines


class Counter(_Metric):
    """Only goes up (until the process restarts)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that is set, such as a duration, a timestamp or a 1 marking the version in force."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def clear(self) -> None:
        """Forget every label combination (an info gauge whose version label changed)."""
        self._values.clear()


class MetricsRegistry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

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

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        lines = [line for metric in self._metrics.values() for line in metric.render()]
        return "\n".join(lines) + "\n" if lines else ""
