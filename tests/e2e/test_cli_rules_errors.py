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


def test_rules_check_refuses_a_misspelt_event_attribute_with_a_caret_and_a_hint(tmp_path: Path) -> None:
    when = "    when: event.delay_minuts >= 45"
    (tmp_path / "triggers.yaml").write_text(
        "triggers:\n  - id: apology\n    event: flight_delayed\n"
        f"{when}\n    set_flag: {{name: delayed, expires_after: {{hours: 24}}}}\n"
    )
    result = runner.invoke(app, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    # The console wraps long lines anywhere, even inside the position: compare without whitespace.
    message = "triggers.yaml:4:11: unknown attribute `event.delay_minuts` of `flight_delayed` events"
    assert "".join(message.split()) in "".join(result.output.split())
    quoted = lines.index(f"    {when}")
    assert lines[quoted + 1] == "    " + " " * when.index("event") + "^"
    assert "hint: did you mean `event.delay_minutes`?" in result.output
