"""Reloading the rule set while serving: when a rule file changes, or when an operator asks.

A new set goes live only if it loads and passes the gate; otherwise the last good set keeps
serving, and the refusal shows in the log (warning, with every problem), in readiness
(`RuleRegistry.status()`) and in the metrics. Reloads run one at a time, off the event loop, and
end in one reference assignment, so a decision in flight keeps the set it started with.

The gate
--------
A gate is any `Callable[[RuleSet, Path], list[str]]`: given a set that loaded and its directory,
it returns the failures that keep that set from serving (an empty list lets it through). The
engine uses one gate (`engine.bootstrap.rules_gate`) at start-up (a failure refuses to start)
and on every reload that finds a new version: the rule test cases beside the rules
(`engine.rules.testing.rule_tests_gate`), unless NBA_RULES_TEST_GATE is off. A gate runs in a
worker thread, so a slow one does not hold up decisions; one that raises refuses the set, with
the exception as the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from engine.clock import Clock
from engine.metrics import MetricsRegistry
from engine.rules.registry import Gate, ReloadOutcome, RuleRegistry, no_gate

log = logging.getLogger("engine.rules")

__all__ = ["Gate", "RuleReloader", "no_gate", "watch_rules"]

RESULTS = ("ok", "refused")
QUIET_MS = 50
"""Changes are grouped until none has come for this long (also how soon the watcher notices `stop`)."""
WATCH_RETRY_S = 5.0
"""After the watcher fails (the directory went away), how long before it tries again."""


class RuleReloader:
    """Runs reloads one at a time and reports each one in the log and the metrics."""

    def __init__(
        self,
        registry: RuleRegistry,
        clock: Clock,
        metrics: MetricsRegistry,
        *,
        gate: Gate = no_gate,
        on_change: Callable[[ReloadOutcome], None] | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.gate = gate
        self.on_change = on_change
        """Told of every new set that goes live (a worker process announces it, having no /metrics)."""
        self._lock = asyncio.Lock()
        self._reloads = metrics.counter(
            "nba_rules_reloads_total", "Rule set reloads, by result (an unchanged set counts as ok).", labels=("result",)
        )
        for result in RESULTS:
            self._reloads.inc(0, result=result)
        self._info = metrics.gauge("nba_rules_info", "The rule set in force, by version (always 1).", labels=("version",))
        self._info.set(1, version=registry.current.version)
        self._last_at = metrics.gauge("nba_rules_last_reload_timestamp_seconds", "When the last reload ran (Unix time).")
        self._last_ok = metrics.gauge(
            "nba_rules_last_reload_successful", "1 if the last reload was accepted (or none has run yet), 0 if refused."
        )
        self._last_ok.set(1)
        self._seconds = metrics.gauge("nba_rules_reload_seconds", "How long the last reload took to load, check and swap.")

    async def reload(self, reason: str = "request") -> ReloadOutcome:
        """Load the directory again; swap if it loads, passes the gate and differs. Never raises for a bad set."""
        async with self._lock:
            previous = self.registry.current.version
            outcome = await asyncio.to_thread(self.registry.reload, self.clock.now_ms(), self.gate)
            self._record(outcome, previous, reason)
        return outcome

    def _record(self, outcome: ReloadOutcome, previous: str, reason: str) -> None:
        self._reloads.inc(result="ok" if outcome.ok else "refused")
        self._last_at.set(outcome.at_ms / 1000)
        self._last_ok.set(1 if outcome.ok else 0)
        self._seconds.set(outcome.seconds)
        if outcome.changed:
            self._info.clear()
            self._info.set(1, version=outcome.version)
            log.info("rules reloaded (%s): %s -> %s in %.3f s", reason, previous, outcome.version, outcome.seconds)
            if self.on_change is not None:
                self.on_change(outcome)
        elif outcome.ok:
            log.info("rules unchanged (%s): still %s", reason, outcome.version)
        else:
            listing = "\n".join(f"  {problem}" for problem in outcome.problems)
            log.warning(
                "rule set refused (%s), still serving %s; %d problem(s):\n%s",
                reason,
                outcome.version,
                len(outcome.problems),
                listing,
            )


_DEFAULT_FILTER = DefaultFilter()
RULE_SUFFIXES = (".yaml", ".yml")


def is_rule_file(change: Change, path: str) -> bool:
    """Rule files and their test cases; not editor swap files, not .git."""
    return path.endswith(RULE_SUFFIXES) and _DEFAULT_FILTER(change, path)


def _describe(changes: set[tuple[Change, str]], directory: Path) -> str:
    names = sorted({os.path.relpath(path, directory) for _, path in changes})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"changed: {shown}"


async def watch_rules(reloader: RuleReloader, stop: asyncio.Event, *, debounce_ms: int = 1_600) -> None:
    """Reload each time rule files under the directory change, until `stop` is set.

    A burst of writes (a `git pull`, an editor's save) is one reload: changes are grouped until
    none has come for QUIET_MS, or for at most `debounce_ms` while they keep coming. Changes made
    while a reload runs are picked up by the next one. For a switch with no in-between state,
    deploy a new directory and swap a symlink to it.

    Files edited after the set in force was loaded but before the watch opened (while a process
    starts, or while a failed watch waits to retry) would raise no event: so once the watch is
    open, the directory is loaded once more, which swaps only if something did change.
    """
    directory = reloader.registry.directory.resolve()
    while not stop.is_set():
        changes = awatch(
            directory, watch_filter=is_rule_file, debounce=debounce_ms, step=min(QUIET_MS, debounce_ms), stop_event=stop
        )
        pending: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(changes))
        try:
            await asyncio.sleep(0)  # awatch's first step opens the watch before its first wait
            if not pending.done():  # (done already: it failed to open, which is handled below)
                await reloader.reload("watch opened")
            while True:
                try:
                    batch = await pending
                except StopAsyncIteration:  # `stop` was set
                    break
                await reloader.reload(_describe(batch, directory))
                pending = asyncio.ensure_future(anext(changes))
        except Exception as exc:  # the directory went away, the watch limit was hit...: wait and retry
            pending.cancel()
            log.warning(
                "watching %s for rule changes failed (%s: %s); retrying in %.0f s",
                directory,
                type(exc).__name__,
                exc,
                WATCH_RETRY_S,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_RETRY_S)
        except BaseException:  # cancelled: stop the watch's thread with it
            pending.cancel()
            raise
