"""Holds the rule set in force. Swapping it is one reference assignment, so each decision
sees one whole rule set: the one it read at its start.

A reload loads the directory again and swaps only when the new set loads and passes the gate;
otherwise the last good set keeps serving and the refusal is kept for `status()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import RuleProblem, RuleSetError
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet

Gate = Callable[[RuleSet, Path], list[str]]
"""A check a loaded rule set must pass before it serves: given the set and its directory, the
failures found (an empty list lets it through). See engine.rules.reload for the default and how
the rule test cases plug in."""


def no_gate(rules: RuleSet, directory: Path) -> list[str]:
    """The default gate: a set that loads may serve."""
    return []


def load_gated(directory: Path, gate: Gate = no_gate) -> RuleSet:
    """Load the set under `directory` and put it through `gate`; raises RuleSetError either way it fails."""
    rules = load_ruleset(directory)
    failures = gate(rules, directory)
    if failures:
        raise RuleSetError([RuleProblem(None, failure) for failure in failures])
    return rules


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload did. `version` is the set serving afterwards (the old one when refused)."""

    at_ms: int
    ok: bool
    changed: bool
    version: str
    problems: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "at": _iso(self.at_ms),
            "ok": self.ok,
            "changed": self.changed,
            "problems": list(self.problems),
            "seconds": round(self.seconds, 4),
        }


def _one_line(problem: RuleProblem) -> str:
    """`file:line:col: message (hint)`: the problem without the source excerpt under it."""
    text = f"{problem.pos}: {problem.message}" if problem.pos else problem.message
    return f"{text} (hint: {problem.hint})" if problem.hint else text


def _rendered(exc: Exception) -> tuple[str, ...]:
    if isinstance(exc, RuleSetError):
        return tuple(_one_line(p) for p in exc.problems)
    return (f"{type(exc).__name__}: {exc}",)


def _gate_failures(gate: Gate, rules: RuleSet, directory: Path) -> tuple[str, ...]:
    try:
        return tuple(str(failure) for failure in gate(rules, directory))
    except Exception as exc:  # a broken gate refuses the set rather than letting it through unchecked
        return (f"the gate failed: {type(exc).__name__}: {exc}",)


class RuleRegistry:
    def __init__(self, rules: RuleSet, *, loaded_at_ms: int | None = None) -> None:
        self._current = rules
        self._loaded_at_ms = loaded_at_ms
        self._last_reload: ReloadOutcome | None = None

    @classmethod
    def from_directory(cls, directory: Path | str, *, gate: Gate = no_gate, now_ms: int | None = None) -> RuleRegistry:
        return cls(load_gated(Path(directory), gate), loaded_at_ms=now_ms)

    @property
    def current(self) -> RuleSet:
        return self._current

    @property
    def directory(self) -> Path:
        return Path(self._current.source_dir)

    @property
    def last_reload(self) -> ReloadOutcome | None:
        return self._last_reload

    def swap(self, rules: RuleSet, *, now_ms: int | None = None) -> RuleSet:
        previous, self._current = self._current, rules
        self._loaded_at_ms = now_ms
        return previous

    def reload(self, now_ms: int, gate: Gate = no_gate) -> ReloadOutcome:
        """Load the directory again; swap when the set loads, passes `gate` and differs from the one
        in force. Never raises for a bad set: the outcome says what was refused and why.

        Blocking (it reads files and compiles conditions): from async code, run it in a thread.
        """
        started = time.perf_counter()
        changed = False
        try:
            candidate = load_ruleset(self.directory)
        except Exception as exc:  # a bad set, or a file gone mid-read: refused, the old set serves
            problems = _rendered(exc)
        else:
            changed = candidate.version != self._current.version
            problems = _gate_failures(gate, candidate, self.directory) if changed else ()
            if changed and not problems:
                self.swap(candidate, now_ms=now_ms)
        outcome = ReloadOutcome(
            at_ms=now_ms,
            ok=not problems,
            changed=not problems and changed,
            version=self._current.version,
            problems=problems,
            seconds=time.perf_counter() - started,
        )
        self._last_reload = outcome
        return outcome

    def status(self) -> dict[str, object]:
        """The set in force, when it was loaded, and how the last reload went (None before any)."""
        return {
            "version": self._current.version,
            "loaded_at": _iso(self._loaded_at_ms) if self._loaded_at_ms is not None else None,
            "last_reload": self._last_reload.to_dict() if self._last_reload else None,
        }
