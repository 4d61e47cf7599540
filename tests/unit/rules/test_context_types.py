"""A decision's context is checked against the field types the rule set declares."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.rules.vocabulary import MAX_MAGNITUDE, type_problem
from tests.conftest import EXAMPLE_RULES

RULES = """
fields:
  context:
    party_size: number
    booked_at: timestamp
    device: string
    returning: bool
    tags: list
    extra: any
treatments:
  - id: family
    kind: offer
    channels: [web]
    eligibility: context.party_size >= 4
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yaml").write_text(textwrap.dedent(RULES))
    return load_ruleset(directory)


def test_values_of_the_declared_types_pass(rules: RuleSet) -> None:
    rules.check_context(
        {
            "party_size": 4,
            "booked_at": 1_795_428_000_000,
            "device": "ios",
            "returning": False,
            "tags": ["a", 1],
            "extra": {"any": ["thing"]},
        }
    )
    rules.check_context({"party_size": 2.5, "device": None, "undeclared": {"x": 1e308}})
    rules.check_context({"party_size": -MAX_MAGNITUDE, "booked_at": MAX_MAGNITUDE})
    rules.check_context({})


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("party_size", "many", "is a number, got 'many'"),
        ("party_size", {"adults": 2}, "is a number"),
        ("party_size", True, "is a number, got True"),
        ("party_size", 1e308, "magnitude at most 2**53"),
        ("party_size", -(2**60), "magnitude at most 2**53"),
        ("party_size", float("nan"), "finite"),
        ("party_size", float("inf"), "finite"),
        ("booked_at", "2026-11-23", "a time in ms since the epoch"),
        ("device", 3, "is a string, got 3"),
        ("device", ["ios"], "is a string"),
        ("returning", 1, "is true/false, got 1"),
        ("returning", "yes", "is true/false"),
        ("tags", "a,b", "is a list, got 'a,b'"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(rules: RuleSet, name: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        rules.check_context({"device": "ios", name: value})
    assert info.value.field == f"context.{name}"
    assert info.value.message.startswith(f"context field `{name}` ")
    assert words in info.value.message
    assert info.value.http_status == 422


def test_a_long_bad_value_is_echoed_shortened() -> None:
    problem = type_problem("string", {"k": "x" * 10_000, "l": list(range(10_000))})
    assert problem is not None and len(problem) < 200


def test_the_example_rule_set_checks_its_declared_context() -> None:
    example = load_ruleset(EXAMPLE_RULES)
    example.check_context({"device": "ios", "companion": "child"})
    with pytest.raises(InvalidInput) as info:
        example.check_context({"device": {"os": "ios"}})
    assert info.value.field == "context.device"
