"""Warnings for rule sets that load but cannot work as meant."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.rules.lint import check
from tests.conftest import EXAMPLE_RULES

HEAD = """
fields:
  customer:
    age: number
    tier: string
contact_policies:
  - type: frequency_cap
    id: sales_cap
    group: sales
    max_per_day: 2
    max_per_week: 5
  - type: frequency_cap
    id: closed_for_now
    group: closed
    max_per_day: 0
treatments:
"""


def warnings_for(tmp_path: Path, treatments: str) -> list[str]:
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(HEAD) + textwrap.indent(textwrap.dedent(treatments), "  "))
    _, found = check(tmp_path)
    return [w.render() for w in found]


@pytest.mark.parametrize(
    ("condition", "why"),
    [
        ("customer.age < 18 and customer.age > 65", "no value of `customer.age` is both > 65 and < 18"),
        ("customer.age >= 30 and 30 > customer.age", "no value of `customer.age` is both ≥ 30 and < 30"),
        ("customer.tier == 'gold' and customer.tier == 'silver'", "cannot equal 'gold' and 'silver' at once"),
        ("customer.age == 'forty'", "is a number, never equal to the text 'forty'"),
        ("customer.tier > 3", "is text: ordering it against the number 3"),
        ("value.tier == 'diamond'", "no tier named 'diamond'"),
        ("value.equity > 100", "is at most 100"),
        ("'False'", "constant false"),
    ],
)
def test_a_condition_that_can_never_be_true_is_flagged_at_its_line(tmp_path: Path, condition: str, why: str) -> None:
    found = warnings_for(tmp_path, f"- id: t1\n  kind: offer\n  channels: [web]\n  eligibility: {condition}\n")
    assert len(found) == 1, found
    assert "rules.yaml:20:" in found[0] and "`t1` is unreachable" in found[0] and why in found[0]


@pytest.mark.parametrize(
    "condition",
    [
        "customer.age >= 18 and customer.age < 65",
        "customer.age > 30 or customer.age < 10",
        "customer.tier in ['gold', 'platinum'] and customer.age > 21",
        "value.tier == 'gold' and value.equity > 60",
        "days_since('purchase') > 30 and days_since('purchase') < 90",
    ],
)
def test_conditions_that_can_be_true_raise_nothing(tmp_path: Path, condition: str) -> None:
    assert warnings_for(tmp_path, f"- id: t1\n  kind: offer\n  channels: [web]\n  eligibility: {condition}\n") == []


def test_caps_that_cannot_bind_and_a_zero_cap_are_flagged(tmp_path: Path) -> None:
    found = warnings_for(
        tmp_path,
        """
        - id: weekly_loose
          kind: offer
          channels: [web]
          caps: {per_day: 1, per_week: 7}
        - id: under_group
          kind: offer
          channels: [web]
          group: sales
          caps: {per_day: 2, per_week: 5}
        - id: never
          kind: offer
          channels: [web]
          group: closed
        """,
    )
    text = "\n".join(found)
    assert "`weekly_loose`: the weekly cap 7 can never bind" in text
    assert "`under_group`: its daily cap 2 never binds; group `sales` allows 2" in text
    assert "`under_group`: its weekly cap 5 never binds" in text
    assert "`never` is unreachable: a frequency policy allows 0 of group `closed`" in text
    assert len(found) == 4


def test_the_example_rules_are_clean() -> None:
    _, found = check(EXAMPLE_RULES)
    assert found == [], [w.render() for w in found]
