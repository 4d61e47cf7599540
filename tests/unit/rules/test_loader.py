"""Rule files: the example set loads; broken sets are refused with every error, positioned."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.errors import RuleSetError
from engine.rules.loader import load_ruleset
from tests.conftest import EXAMPLE_RULES


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def refused(directory: Path) -> RuleSetError:
    with pytest.raises(RuleSetError) as info:
        load_ruleset(directory)
    return info.value


MINIMAL = """
fields:
  customer:
    tier: string
treatments:
  - id: a
    kind: offer
    channels: [web]
"""


def test_example_rule_set_loads_with_every_scenario_treatment() -> None:
    rules = load_ruleset(EXAMPLE_RULES)
    for tid in ("apology_upgrade", "cart_sweetener", "service_recovery", "welcome_coupon", "family_bundle", "night_out_pass"):
        assert tid in rules.by_id
    assert rules.by_id["welcome_coupon"].kind == "coupon"
    assert [t.id for t in rules.fallback] == ["newsletter_signup", "agent_greeting"]
    assert rules.version


def test_version_changes_with_content_and_not_otherwise(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    first = load_ruleset(tmp_path).version
    assert load_ruleset(tmp_path).version == first
    write(tmp_path, "a.yaml", MINIMAL.replace("[web]", "[web, email]"))
    assert load_ruleset(tmp_path).version != first


def test_unknown_key_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "offers.yaml",
        """
        treatments:
          - id: a
            kind: offer
            channels: [web]
            valeu: 3
        """,
    )
    err = refused(tmp_path)
    assert len(err.problems) == 1
    problem = err.problems[0]
    assert problem.pos is not None
    assert (problem.pos.file, problem.pos.line, problem.pos.column) == (str(path), 5, 5)
    assert "unknown key `valeu`" in problem.message
    assert "valeu: 3" in problem.render()


def test_wrong_type_names_the_field_and_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        "offers.yaml",
        """
        treatments:
          - id: a
            kind: voucher
            channels: [web, fax]
        """,
    )
    messages = [p.render() for p in refused(tmp_path).problems]
    assert any("treatments.0.kind" in m and "'voucher'" in m and ":3:" in m for m in messages)
    assert any("treatments.0.channels.1" in m and "'fax'" in m and ":4:" in m for m in messages)


def test_every_error_of_every_file_is_listed(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL + "    eligibility: customer.teir == 'gold'\n")
    write(tmp_path, "b.yaml", "treatments:\n  - id: b\n    kind: offer\n    channels: [web]\n    eligibility: nope('x')\n")
    write(tmp_path, "c.yaml", "treatments: [\n")
    err = refused(tmp_path)
    rendered = "\n".join(p.render() for p in err.problems)
    assert len(err.problems) == 3
    assert "a.yaml:8:" in rendered and "customer.teir" in rendered and "customer.tier" in rendered
    assert "b.yaml:5:" in rendered and "nope" in rendered
    assert "c.yaml" in rendered and "YAML syntax error" in rendered


def test_condition_error_points_at_the_column_inside_the_expression(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL + "    eligibility: \"customer.tier == 'gold' and customer.__class__\"\n")
    problem = refused(tmp_path).problems[0]
    assert problem.pos is not None
    line = problem.source_line or ""
    # The caret sits under the offending attribute, inside the quoted expression.
    assert line[problem.pos.column - 1 :].startswith("__class__")


def test_duplicate_ids_and_unknown_fallback_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "b.yaml", "arbitration:\n  fallback: [zzz]\ntreatments:\n  - id: a\n    kind: offer\n    channels: [web]\n")
    rendered = "\n".join(p.render() for p in refused(tmp_path).problems)
    assert "duplicate treatment id `a`" in rendered and "b.yaml:4:" in rendered
    assert "unknown treatment `zzz`" in rendered


def test_unknown_fallback_points_at_its_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    path = write(tmp_path, "b.yaml", "arbitration:\n  limit: 2\n  fallback:\n    - a\n    - newsleter\n")
    problems = refused(tmp_path).problems
    assert len(problems) == 1
    problem = problems[0]
    assert problem.pos is not None
    assert (problem.pos.file, problem.pos.line, problem.pos.column) == (str(path), 5, 7)
    assert problem.source_line == "    - newsleter"
    assert problem.render().splitlines()[1:3] == ["        - newsleter", "          ^"]


def test_unknown_fallback_suggests_a_close_treatment_id(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL.replace("id: a", "id: newsletter") + "arbitration:\n  fallback: [newsleter]\n")
    problem = refused(tmp_path).problems[0]
    assert problem.pos is not None and problem.pos.line == 9
    assert problem.hint == "did you mean `newsletter`?"


def test_suppression_after_an_undeclared_event_type_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        MINIMAL
        + "contact_policies:\n  - type: suppression\n    id: p\n    after_event: complain\n    groups: [sales]\n    days: 7\n",
    )
    problem = refused(tmp_path).problems[0]
    assert "unknown event type `complain`" in problem.message


def test_coupon_without_code_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "treatments:\n  - id: c\n    kind: coupon\n    channels: [web]\n")
    assert "content.code" in refused(tmp_path).problems[0].message


def test_test_files_are_not_rule_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "a_test.yaml", "cases: []\n")
    assert [t.id for t in load_ruleset(tmp_path).treatments] == ["a"]


def test_missing_or_empty_directory_is_refused(tmp_path: Path) -> None:
    assert "not found" in refused(tmp_path / "nope").message
    assert "no rule files" in refused(tmp_path).message


def test_every_fault_in_one_condition_is_listed_at_its_own_column(tmp_path: Path) -> None:
    condition = "customer.teir == 'gold' and event.delay_minuts > 3 and 2 ** 100 > 1 and __import__('os')"
    write(tmp_path, "a.yaml", MINIMAL + f"    eligibility: {condition}\n")
    problems = refused(tmp_path).problems
    assert [p.message.split(":")[0].split(" (")[0] for p in problems] == [
        "unknown field `customer.teir`",
        "unknown field `event.delay_minuts`",
        "exponent too large",
        "`__import__` is not allowed",
    ]
    start = 18  # `    eligibility: ` puts the expression at column 18
    assert [p.pos.column for p in problems if p.pos] == [
        start + condition.index(s) for s in ("customer", "event", "100", "__import__")
    ]


def test_a_placement_says_how_many_recent_interactions_its_decisions_return(tmp_path: Path) -> None:
    example = load_ruleset(EXAMPLE_RULES)
    assert example.recent_shown("agent_prompt", None) == 5
    assert example.recent_shown("agent_prompt", 0) == 0, "the request's number wins, down to none"
    assert example.recent_shown("home", None) == 0 and example.recent_shown(None, 3) == 3
    write(tmp_path, "a.yaml", MINIMAL + "arbitration:\n  placements:\n    agent_prompt:\n      recent: 51\n")
    (problem,) = refused(tmp_path).problems
    assert "arbitration.placements.agent_prompt.recent" in problem.render() and ":11:7:" in problem.render()
