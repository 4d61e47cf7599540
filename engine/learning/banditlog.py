"""Decision logs as bandit feedback: one row per shown treatment, ready for offline evaluation.

Offline policy evaluation can only reweight what was logged, so every row must carry the exact
probability with which the logging policy showed its treatment. A row with a missing or zero
propensity cannot be reweighted at all, which is why the readers refuse such rows loudly
(naming file, line and field) instead of skipping them and silently biasing every estimate.

Format
------
Each row (a :class:`LoggedRound`) has these fields:

``decision_id``  optional string; rows of one decision (a slate) share it. Empty or absent
                 means the row is a decision of its own.
``action``       the treatment id that was shown (non-empty string).
``reward``       what the feedback earned: 1/0 for accept/ignore, or a value. Finite number.
``propensity``   the logging policy's probability of showing ``action`` in this decision (its
                 marginal inclusion probability for slates), in (0, 1].
``actions``      optional: the treatments eligible in this decision. When given, ``action`` must
                 be one of them. When absent, evaluation treats every action seen in the log as
                 eligible.
``context``      optional JSON object (default ``{}``): what a policy replays from; policies that rescore
                 a slate read ``candidates``, ``limits`` and more (models/EVALUATION.md, "Replay context").
``ts``           optional integer, milliseconds since the Unix epoch.

JSON lines (``.jsonl``/``.ndjson``): one object per line with the keys above; ``actions`` is a
list of strings. Blank lines are skipped; unknown keys are ignored so logs may carry extras::

    {"decision_id": "d1", "action": "big_sale", "reward": 1.0, "propensity": 0.25,
     "actions": ["big_sale", "newsletter"], "context": {"tier": "gold"}, "ts": 1795428000000}

CSV (``.csv``): a header row, then columns ``decision_id,action,reward,propensity,actions,context``
and optionally ``ts``; ``actions`` is ``|``-separated (so action ids cannot contain ``|``) and
``context`` is a JSON object string. Extra columns are ignored::

    decision_id,action,reward,propensity,actions,context
    d1,big_sale,1.0,0.25,big_sale|newsletter,"{""tier"":""gold""}"

Writers emit floats with ``repr`` so a write/read round trip is exact.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput

__all__ = [
    "CSV_COLUMNS",
    "LoggedRound",
    "iter_csv",
    "iter_jsonl",
    "read_csv",
    "read_jsonl",
    "read_log",
    "write_csv",
    "write_jsonl",
    "write_log",
]

CSV_COLUMNS: tuple[str, ...] = ("decision_id", "action", "reward", "propensity", "actions", "context")
_CSV_REQUIRED = ("action", "reward", "propensity")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _is_number(value: object) -> bool:
    # bool is an int subclass; a reward of `true` is almost certainly a mistaken export.
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class LoggedRound:
    """One shown treatment with what it earned and how likely the logging policy was to show it.

    Validation happens here rather than only in the readers so rounds built in code (the
    simulator, tests, a live exporter) obey the same contract as rounds read from files.
    """

    context: dict[str, Any]
    action: str
    reward: float
    propensity: float
    actions: tuple[str, ...] = ()
    decision_id: str | None = None
    ts: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not self.action:
            raise InvalidInput(f"action must be a non-empty string, got {self.action!r}", field="action")
        if not _is_number(self.reward) or not math.isfinite(self.reward):
            raise InvalidInput(f"reward must be a finite number, got {self.reward!r}", field="reward")
        p = self.propensity
        if not _is_number(p) or not (0.0 < p <= 1.0):
            raise InvalidInput(f"propensity must be in (0, 1], got {p!r}", field="propensity")
        if not isinstance(self.context, dict):
            raise InvalidInput(f"context must be an object, got {type(self.context).__name__}", field="context")
        actions = tuple(self.actions)
        for a in actions:
            if not isinstance(a, str) or not a:
                raise InvalidInput(f"actions must be non-empty strings, got {a!r}", field="actions")
        action_set = frozenset(actions)
        if len(action_set) != len(actions):
            raise InvalidInput(f"actions must not repeat, got {list(actions)!r}", field="actions")
        if actions and self.action not in action_set:
            raise InvalidInput(f"action {self.action!r} is not among the eligible actions {list(actions)!r}", field="action")
        if self.decision_id is not None and (not isinstance(self.decision_id, str) or not self.decision_id):
            raise InvalidInput(f"decision_id must be a non-empty string or absent, got {self.decision_id!r}", field="decision_id")
        if self.ts is not None and (not isinstance(self.ts, int) or isinstance(self.ts, bool)):
            raise InvalidInput(f"ts must be an integer (ms since epoch), got {self.ts!r}", field="ts")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "reward", float(self.reward))
        object.__setattr__(self, "propensity", float(p))


def _located(source: str, line: int, err: InvalidInput) -> InvalidInput:
    return InvalidInput(f"{source}:{line}: {err.message}", field=err.field)


def _bad(source: str, line: int, fld: str, message: str) -> InvalidInput:
    return InvalidInput(f"{source}:{line}: {message}", field=fld)


# ---------------------------------------------------------------------------------------------
# JSON lines


def _round_from_json(obj: Mapping[str, Any], source: str, line: int) -> LoggedRound:
    for key in _CSV_REQUIRED:
        if key not in obj:
            raise _bad(source, line, key, f"{key} is missing")
    actions = obj.get("actions", [])
    if actions is None:
        actions = []
    if not isinstance(actions, list):
        raise _bad(source, line, "actions", f"actions must be a list of strings, got {actions!r}")
    context = obj.get("context", {})
    if context is None:
        context = {}
    decision_id = obj.get("decision_id")
    if decision_id == "":
        decision_id = None
    try:
        return LoggedRound(
            context=context,
            action=obj["action"],
            reward=obj["reward"],
            propensity=obj["propensity"],
            actions=tuple(actions),
            decision_id=decision_id,
            ts=obj.get("ts"),
        )
    except InvalidInput as err:
        raise _located(source, line, err) from None


def iter_jsonl(path: str | Path) -> Iterator[LoggedRound]:
    """Stream rounds so a log larger than memory can still be validated or converted."""
    source = str(path)
    with open(path, encoding="utf-8") as fh:
        for line_no, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise _bad(source, line_no, "line", f"not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise _bad(source, line_no, "line", f"each line must be a JSON object, got {type(obj).__name__}")
            yield _round_from_json(obj, source, line_no)


def read_jsonl(path: str | Path) -> list[LoggedRound]:
    return list(iter_jsonl(path))


def _json_dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{what} is not JSON-serialisable: {err}", field=what) from None


def _round_to_json(r: LoggedRound) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "decision_id": r.decision_id,
        "action": r.action,
        "reward": r.reward,
        "propensity": r.propensity,
        "actions": list(r.actions),
        "context": r.context,
    }
    if r.ts is not None:
        obj["ts"] = r.ts
    return obj


def write_jsonl(rounds: Iterable[LoggedRound], path: str | Path) -> int:
    """Write rounds and return how many, so callers can log what was exported."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in rounds:
            fh.write(_json_dumps(_round_to_json(r), "context"))
            fh.write("\n")
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# CSV


def _parse_float(raw: str, fld: str, source: str, line: int) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _bad(source, line, fld, f"{fld} must be a number, got {raw!r}") from None


def _round_from_csv(row: Mapping[str, str], source: str, line: int) -> LoggedRound:
    reward = _parse_float(row["reward"], "reward", source, line)
    propensity = _parse_float(row["propensity"], "propensity", source, line)
    raw_actions = row.get("actions") or ""
    actions = tuple(raw_actions.split("|")) if raw_actions else ()
    raw_context = row.get("context") or ""
    context: Any = {}
    if raw_context.strip():
        try:
            context = json.loads(raw_context)
        except json.JSONDecodeError as err:
            raise _bad(source, line, "context", f"context must be a JSON object string ({err.msg})") from None
        if not isinstance(context, dict):
            raise _bad(source, line, "context", f"context must be a JSON object, got {type(context).__name__}")
    raw_ts = (row.get("ts") or "").strip()
    ts: int | None = None
    if raw_ts:
        try:
            ts = int(raw_ts)
        except ValueError:
            raise _bad(source, line, "ts", f"ts must be an integer (ms since epoch), got {raw_ts!r}") from None
    try:
        return LoggedRound(
            context=context,
            action=row["action"],
            reward=reward,
            propensity=propensity,
            actions=actions,
            decision_id=row.get("decision_id") or None,
            ts=ts,
        )
    except InvalidInput as err:
        raise _located(source, line, err) from None


def iter_csv(path: str | Path) -> Iterator[LoggedRound]:
    """Stream rounds; line numbers are physical lines, so a quoted multi-line context still points right."""
    source = str(path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _bad(source, 1, "header", f"unreadable CSV header ({err})") from None
        header = [h.strip() for h in header]
        missing = [c for c in _CSV_REQUIRED if c not in header]
        if missing:
            raise _bad(source, 1, missing[0], f"header lacks column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
        index = {name: i for i, name in enumerate(header)}
        prev_end = reader.line_num
        while True:
            start = prev_end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise _bad(source, start, "line", f"unreadable CSV row ({err})") from None
            prev_end = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise _bad(source, start, "line", f"expected {len(header)} cells as in the header, got {len(cells)}")
            row = {name: cells[i] for name, i in index.items()}
            yield _round_from_csv(row, source, start)


def read_csv(path: str | Path) -> list[LoggedRound]:
    return list(iter_csv(path))


def write_csv(rounds: Iterable[LoggedRound], path: str | Path) -> int:
    """Write rounds and return how many; a ``ts`` column is added only when some round has one."""
    materialised = list(rounds)
    with_ts = any(r.ts is not None for r in materialised)
    columns = [*CSV_COLUMNS, "ts"] if with_ts else list(CSV_COLUMNS)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for r in materialised:
            for a in r.actions:
                if "|" in a:
                    message = f"action {a!r} contains '|', which CSV uses to separate actions; use JSON lines"
                    raise InvalidInput(message, field="actions")
            cells = [
                r.decision_id or "",
                r.action,
                repr(r.reward),
                repr(r.propensity),
                "|".join(r.actions),
                _json_dumps(r.context, "context"),
            ]
            if with_ts:
                cells.append("" if r.ts is None else str(r.ts))
            writer.writerow(cells)
    return len(materialised)


# ---------------------------------------------------------------------------------------------
# Dispatch on suffix


def _is_csv(path: str | Path) -> bool:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return True
    if suffix in _JSONL_SUFFIXES:
        return False
    raise InvalidInput(f"{path}: unknown log format {suffix!r}; use .csv, .jsonl or .ndjson", field="path")


def read_log(path: str | Path) -> list[LoggedRound]:
    """Read a CSV or JSON-lines log, chosen by file suffix."""
    return read_csv(path) if _is_csv(path) else read_jsonl(path)


def write_log(rounds: Iterable[LoggedRound], path: str | Path) -> int:
    """Write a CSV or JSON-lines log, chosen by file suffix."""
    return write_csv(rounds, path) if _is_csv(path) else write_jsonl(rounds, path)
