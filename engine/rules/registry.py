"""Holds the rule set in force. Swapping it is one reference assignment, so each decision
sees one whole rule set: the one it read at its start."""

from __future__ import annotations

from pathlib import Path

from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet


class RuleRegistry:
    def __init__(self, rules: RuleSet) -> None:
        self._current = rules

    @classmethod
    def from_directory(cls, directory: Path | str) -> RuleRegistry:
        return cls(load_ruleset(directory))

    @property
    def current(self) -> RuleSet:
        return self._current

    def swap(self, rules: RuleSet) -> RuleSet:
        previous, self._current = self._current, rules
        return previous
