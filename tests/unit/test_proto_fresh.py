"""The committed generated code is what the committed protos generate.

A proto edited without running `make proto` (``python -m engine.api.grpc.build``) fails here,
before a client built from the proto disagrees with the server on the wire.
"""

from __future__ import annotations

from pathlib import Path

from engine.api.grpc import build


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    fresh = {p.name: p.read_bytes() for p in build.generate(tmp_path)}
    committed = {p.name: p.read_bytes() for p in build.generated_files(build.GEN_DIR)}
    assert sorted(committed) == sorted(fresh), "generated files differ from the committed ones; run `make proto`"
    stale = [name for name in sorted(fresh) if committed[name] != fresh[name]]
    assert not stale, f"out of date: {', '.join(stale)}; run `make proto`"


def test_generated_code_imports_within_its_package() -> None:
    for path in build.generated_files(build.GEN_DIR):
        assert "from nba." not in path.read_text(), f"{path.name} imports `nba.*`, which is not a package here"
