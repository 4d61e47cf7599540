"""YAML reading that remembers where every value came from.

pydantic reports errors as paths (`treatments.3.caps.per_day`); marketers need
`offers.yaml:41:7`. We compose the YAML node tree once and index each path to its mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import RuleProblem, SourcePos

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class YamlDocument:
    file: str
    lines: list[str]
    data: Any
    positions: dict[Loc, SourcePos]
    nodes: dict[Loc, yaml.Node]

    def pos_of(self, loc: Loc) -> SourcePos:
        """Position of `loc`, or of its nearest ancestor that has one."""
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), SourcePos(self.file, 1, 1))

    def line_text(self, line: int) -> str | None:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def expression_start(self, loc: Loc) -> SourcePos:
        """Where the text of a scalar starts, allowing for quotes and block scalars."""
        node = self.nodes.get(loc)
        if node is None:
            return self.pos_of(loc)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        style = getattr(node, "style", None)
        if style in ("'", '"'):
            return SourcePos(self.file, line, col + 1)
        if style in ("|", ">"):
            for n in range(line + 1, len(self.lines) + 1):
                text = self.lines[n - 1]
                if text.strip():
                    return SourcePos(self.file, n, len(text) - len(text.lstrip()) + 1)
        return SourcePos(self.file, line, col)


def _index(node: yaml.Node, loc: Loc, file: str, positions: dict[Loc, SourcePos], nodes: dict[Loc, yaml.Node]) -> None:
    positions[loc] = SourcePos(file, node.start_mark.line + 1, node.start_mark.column + 1)
    nodes[loc] = node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = (*loc, key.value)
                _index(value, child, file, positions, nodes)
                # A key's own position is the better place to point at for "extra field" errors.
                positions[child] = SourcePos(file, key.start_mark.line + 1, key.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), file, positions, nodes)


def read_yaml(path: Path, display_name: str) -> YamlDocument | RuleProblem:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        pos = SourcePos(display_name, mark.line + 1, mark.column + 1) if mark else SourcePos(display_name, 1, 1)
        line = lines[pos.line - 1] if 0 < pos.line <= len(lines) else None
        return RuleProblem(pos, f"YAML syntax error: {exc.problem}", line)
    positions: dict[Loc, SourcePos] = {}
    nodes: dict[Loc, yaml.Node] = {}
    if root is not None:
        _index(root, (), display_name, positions, nodes)
    return YamlDocument(display_name, lines, data, positions, nodes)
