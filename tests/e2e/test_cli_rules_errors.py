"""`nba serve` refuses a broken rule set and shows every problem as written in the rule files."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()

BAD_LINE = "    channels: [mobile_app, web, fax]   # [/b] [red]not markup[/red]"


def test_serve_refuses_bad_rules_and_quotes_the_line_with_its_brackets(tmp_path: Path) -> None:
    (tmp_path / "offers.yaml").write_text(f"treatments:\n  - id: a\n    kind: offer\n{BAD_LINE}\n")
    result = runner.invoke(app, ["serve", "--rules", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "refusing to start:" in result.output
    assert "offers.yaml:4:" in result.output and "'fax'" in result.output
    # Quoted whole, under the position, at the listing's indent: no bracket eaten as markup.
    assert f"    {BAD_LINE}" in result.output.splitlines()
