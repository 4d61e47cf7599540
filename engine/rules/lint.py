"""Warnings about a rule set that loads but cannot do what its author meant.

`nba rules check` reports errors first (a set with errors does not load); a set that loads can
still hold a treatment nobody will ever see. Three kinds are found statically:

* **conditions that can never be true**: contradictory ranges on one field in an `and`
  (`customer.age < 18 and customer.age > 65`), two different values required of one field,
  a number compared with text (or text ordered against a number) for a declared field, a tier
  the equity section does not have, an index outside 0–100, a constant false;
* **unreachable treatments**: a condition that can never be true, or a group whose frequency
  policy allows 0;
* **caps that can never bind**: a weekly cap of at least 7 × the daily one, or a treatment's
  daily (weekly) cap at or above its group's policy limit, which always runs out first.

The analysis is deliberately simple — conjunctions of comparisons with constants — so that every
warning is certain, never a guess.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import SourcePos
from engine.rules.loader import load_ruleset, rule_files
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.vocabulary import Vocabulary
from engine.rules.yamlsource import YamlDocument, read_yaml

INDEX_FIELDS = frozenset({"equity", "contribution", "perception", "referral", "loyalty"})


@dataclass(frozen=True, slots=True)
class RuleWarning:
    pos: SourcePos | None
    message: str
    line: str | None = None

    def render(self) -> str:
        where = f"{self.pos}: " if self.pos is not None else ""
        text = f"{where}warning: {self.message}"
        if self.line is not None and self.pos is not None:
            caret = " " * max(self.pos.column - 1, 0) + "^"
            text += f"\n    {self.line}\n    {caret}"
        return text


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _constant(node: ast.AST) -> tuple[bool, Any]:
    if isinstance(node, ast.Constant):
        return True, node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, -value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_constant(e) for e in node.elts]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items]
    return False, None


_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def _comparisons(node: ast.AST) -> Iterator[tuple[str, type[ast.cmpop], Any]]:
    """(field, operator, constant) for each `field op constant` (either way round) in a chain."""
    if not isinstance(node, ast.Compare):
        return
    left = node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        name, (is_const, value) = _dotted(left), _constant(right)
        if name is not None and is_const:
            yield name, type(op), value
        else:
            name, (is_const, value) = _dotted(right), _constant(left)
            if name is not None and is_const and type(op) in _FLIP:
                yield name, _FLIP[type(op)], value
        left = right


def _conjuncts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [c for v in node.values for c in _conjuncts(v)]
    return [node]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reasons:
    """Why a condition can never be true, given the vocabulary and the equity tiers."""

    def __init__(self, vocab: Vocabulary, tiers: tuple[str, ...]) -> None:
        self.vocab = vocab
        self.tiers = tiers

    def _declared(self, name: str) -> str | None:
        namespace, _, field = name.partition(".")
        return self.vocab.namespaces.get(namespace, {}).get(field)

    def _single(self, name: str, op: type[ast.cmpop], value: Any) -> str | None:
        kind = self._declared(name)
        if value is None:
            return None
        ordering = op in (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
        if op is ast.In and isinstance(value, list):
            bad = [v for v in value if isinstance(v, str)] if kind == "number" else []
            if kind == "number" and len(bad) == len(value) and value:
                return f"`{name}` is a number, never one of {value!r}"
            if name == "value.tier" and value and all(isinstance(v, str) and v not in self.tiers for v in value):
                return f"no tier named {', '.join(map(repr, value))} (tiers: {', '.join(self.tiers)})"
            return None
        if kind == "number" and isinstance(value, str) and op is ast.Eq:
            return f"`{name}` is a number, never equal to the text {value!r}"
        if kind == "number" and isinstance(value, str) and ordering:
            return f"`{name}` is a number: ordering it against the text {value!r} is never true"
        if kind == "string" and _is_number(value) and ordering:
            return f"`{name}` is text: ordering it against the number {value!r} is never true"
        if name == "value.tier" and op is ast.Eq and isinstance(value, str) and value not in self.tiers:
            return f"no tier named {value!r} (tiers: {', '.join(self.tiers)})"
        if name.startswith("value.") and name.split(".", 1)[1] in INDEX_FIELDS and _is_number(value):
            if (op in (ast.Gt,) and value >= 100) or (op is ast.GtE and value > 100):
                return f"`{name}` is at most 100"
            if (op in (ast.Lt,) and value <= 0) or (op is ast.LtE and value < 0):
                return f"`{name}` is at least 0"
        return None

    def never_true(self, source: str) -> str | None:
        try:
            tree = ast.parse(source, mode="eval").body
        except SyntaxError:
            return None
        if isinstance(tree, ast.Constant) and not tree.value:
            return "the condition is a constant false"
        lows: dict[str, tuple[float, bool]] = {}
        highs: dict[str, tuple[float, bool]] = {}
        equal: dict[str, set[Any]] = {}
        for part in _conjuncts(tree):
            if isinstance(part, ast.Constant) and not part.value:
                return "one of its `and` terms is a constant false"
            for name, op, value in _comparisons(part):
                reason = self._single(name, op, value)
                if reason is not None:
                    return reason
                if op is ast.Eq and value is not None:
                    equal.setdefault(name, set()).add(value if not isinstance(value, list) else tuple(value))
                if _is_number(value):
                    if op in (ast.Gt, ast.GtE):
                        bound = (float(value), op is ast.GtE)
                        old = lows.get(name)
                        if old is None or bound[0] > old[0] or (bound[0] == old[0] and not bound[1]):
                            lows[name] = bound
                    elif op in (ast.Lt, ast.LtE):
                        bound = (float(value), op is ast.LtE)
                        old = highs.get(name)
                        if old is None or bound[0] < old[0] or (bound[0] == old[0] and not bound[1]):
                            highs[name] = bound
                    elif op is ast.Eq:
                        lows[name] = max(lows.get(name, (-math.inf, True)), (float(value), True))
                        highs[name] = min(highs.get(name, (math.inf, True)), (float(value), True))
        for name, values in equal.items():
            if len(values) > 1:
                return f"`{name}` cannot equal {' and '.join(repr(v) for v in sorted(values, key=repr))} at once"
        for name in lows.keys() & highs.keys():
            (lo, lo_inc), (hi, hi_inc) = lows[name], highs[name]
            if lo > hi or (lo == hi and not (lo_inc and hi_inc)):
                return f"no value of `{name}` is both {'≥' if lo_inc else '>'} {lo:g} and {'≤' if hi_inc else '<'} {hi:g}"
        return None


def _positions(directory: Path) -> dict[str, tuple[YamlDocument, int]]:
    """Treatment id -> (its file, its index there), to point warnings at the right line."""
    out: dict[str, tuple[YamlDocument, int]] = {}
    for path in rule_files(directory):
        doc = read_yaml(path, str(path))
        if not isinstance(doc, YamlDocument) or not isinstance(doc.data, dict):
            continue
        for i, item in enumerate(doc.data.get("treatments") or []):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                out[item["id"]] = (doc, i)
    return out


def lint(rules: RuleSet, directory: Path) -> list[RuleWarning]:
    """Every warning for a rule set that has loaded from `directory`."""
    reasons = _Reasons(rules.vocabulary, rules.equity.tier_names)
    where = _positions(directory)
    warnings: list[RuleWarning] = []

    def warn(t: CompiledTreatment, key: str, message: str) -> None:
        doc_index = where.get(t.id)
        if doc_index is None:
            warnings.append(RuleWarning(None, message))
            return
        doc, i = doc_index
        pos = doc.pos_of(("treatments", i, key))
        warnings.append(RuleWarning(pos, message, doc.line_text(pos.line)))

    group_day = {p.group: p.max_per_day for p in rules.frequency_policies if p.max_per_day is not None}
    group_week = {p.group: p.max_per_week for p in rules.frequency_policies if p.max_per_week is not None}
    for t in rules.treatments:
        if t.eligibility is not None:
            reason = reasons.never_true(t.eligibility.source)
            if reason is not None:
                warn(t, "eligibility", f"treatment `{t.id}` is unreachable: its condition can never be true ({reason})")
        if group_day.get(t.group) == 0 or group_week.get(t.group) == 0:
            warn(t, "group", f"treatment `{t.id}` is unreachable: a frequency policy allows 0 of group `{t.group}`")
        if t.cap_per_day and t.cap_per_week and t.cap_per_week >= 7 * t.cap_per_day:
            warn(t, "caps", f"treatment `{t.id}`: the weekly cap {t.cap_per_week} can never bind (7 × daily {t.cap_per_day})")
        limit = group_day.get(t.group)
        if t.cap_per_day and limit and t.cap_per_day >= limit:
            warn(t, "caps", f"treatment `{t.id}`: its daily cap {t.cap_per_day} never binds; group `{t.group}` allows {limit}")
        limit = group_week.get(t.group)
        if t.cap_per_week and limit and t.cap_per_week >= limit:
            warn(t, "caps", f"treatment `{t.id}`: its weekly cap {t.cap_per_week} never binds; group `{t.group}` allows {limit}")
    return warnings


def check(directory: Path) -> tuple[RuleSet, list[RuleWarning]]:
    """Load (raising RuleSetError with every error) and lint."""
    rules = load_ruleset(directory)
    return rules, lint(rules, directory)
