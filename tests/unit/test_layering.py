"""The core imports no web framework, RPC library or Redis client: those stay in the front ends
(engine/api), the one store package (engine/state) and the composition root (bootstrap, CLI).
A module elsewhere may name a client type for annotations only (under TYPE_CHECKING)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

ENGINE = ROOT / "engine"
FRAMEWORKS = {"redis", "hiredis", "fastapi", "starlette", "uvicorn", "grpc", "grpc_health", "grpc_reflection", "google"}
EDGE = ("state", "api", "bootstrap.py", "cli.py", "value_commands.py")


def runtime_imports(path: Path) -> set[str]:
    """Top-level packages a module imports when it is loaded (imports inside functions count
    too; those under `if TYPE_CHECKING:` do not)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name.split(".")[0] for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_the_core_imports_no_framework_and_no_redis_client() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(runtime_imports(path) & FRAMEWORKS)
        for path in ENGINE.rglob("*.py")
        if path.relative_to(ENGINE).parts[0] not in EDGE
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import redis\ndef f():\n    import fastapi\n")
    assert runtime_imports(module) & FRAMEWORKS == {"fastapi"}
