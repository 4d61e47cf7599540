"""The equity configuration: the shipped file, the defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from engine.equity.config import EquityConfig
from engine.rules.loader import load_ruleset

EQUITY_YAML = Path(__file__).resolve().parents[3] / "rules" / "equity.yaml"


def _refused(data: dict[str, Any]) -> tuple[list[str], str]:
    """The dotted locations of the validation errors, and the error text."""
    with pytest.raises(ValidationError) as caught:
        EquityConfig.model_validate(data)
    return [".".join(str(x) for x in err["loc"]) for err in caught.value.errors()], str(caught.value)


def test_the_shipped_file_validates_and_equals_the_default() -> None:
    config = EquityConfig.model_validate(yaml.safe_load(EQUITY_YAML.read_text())["equity"])
    assert config == EquityConfig.default()
    assert load_ruleset(EQUITY_YAML.parent).equity == config, "the rule loader reads the same section"


def test_defaults_are_the_documented_ones() -> None:
    config = EquityConfig.default()
    assert config.landmark_ms == 1_704_067_200_000  # 2024-01-01T00:00:00Z
    assert sum(config.weights.normalised) == pytest.approx(1.0, abs=1e-15)
    assert sum(config.loyalty.weights.normalised) == pytest.approx(1.0, abs=1e-15)
    assert config.tier_names == ("bronze", "silver", "gold", "platinum")
    assert config.tier_rank("gold") == 2


def test_weights_are_normalised() -> None:
    config = EquityConfig.model_validate({"weights": {"contribution": 2, "perception": 1, "referral": 0, "loyalty": 1}})
    assert config.weights.normalised == (0.5, 0.25, 0.0, 0.25)


def test_all_zero_weights_are_refused_naming_the_field() -> None:
    locs, text = _refused({"weights": {"contribution": 0, "perception": 0, "referral": 0, "loyalty": 0}})
    assert locs == ["weights"]
    assert "must be positive" in text
    locs, _ = _refused({"loyalty": {"weights": {"tenure": 0, "recency": 0, "frequency": 0, "retention": 0}}})
    assert locs == ["loyalty.weights"]


def test_a_negative_weight_is_refused_naming_the_field() -> None:
    locs, _ = _refused({"weights": {"referral": -0.1}})
    assert locs == ["weights.referral"]


@pytest.mark.parametrize(
    ("tiers", "words"),
    [
        (
            [{"name": "bronze", "min_equity": 0}, {"name": "gold", "min_equity": 60}, {"name": "silver", "min_equity": 40}],
            "tiers[2]",
        ),
        ([{"name": "bronze", "min_equity": 0}, {"name": "silver", "min_equity": 0}], "tiers[1]"),
        ([{"name": "bronze", "min_equity": 10}, {"name": "silver", "min_equity": 40}], "first tier"),
        ([{"name": "bronze", "min_equity": 0}, {"name": "bronze", "min_equity": 40}], "appears twice"),
    ],
)
def test_unordered_or_unanchored_tiers_are_refused_naming_the_field(tiers: list[dict[str, Any]], words: str) -> None:
    locs, text = _refused({"tiers": tiers})
    assert locs == ["tiers"]
    assert words in text


def test_bad_tier_entries_are_refused_naming_the_field() -> None:
    locs, _ = _refused({"tiers": [{"name": "Bronze", "min_equity": 0}]})
    assert locs == ["tiers.0.name"]
    locs, _ = _refused({"tiers": []})
    assert locs == ["tiers"]
    locs, _ = _refused({"tiers": [{"name": "bronze", "min_equity": 0}, {"name": "top", "min_equity": 100}]})
    assert locs == ["tiers.1.min_equity"]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"weigths": {}}, "weigths"),
        ({"contribution": {"spend_scal": 5}}, "contribution.spend_scal"),
        ({"loyalty": {"weights": {"recent": 1}}}, "loyalty.weights.recent"),
        ({"tiers": [{"name": "bronze", "min_equity": 0, "colour": "brown"}]}, "tiers.0.colour"),
    ],
)
def test_unknown_keys_are_refused_naming_them(data: dict[str, Any], loc: str) -> None:
    locs, text = _refused(data)
    assert locs == [loc]
    assert "Extra inputs are not permitted" in text


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"contribution": {"half_life_days": 3}}, "contribution.half_life_days"),
        ({"contribution": {"spend_scale": 0}}, "contribution.spend_scale"),
        ({"contribution": {"margin_share": 1.5}}, "contribution.margin_share"),
        ({"perception": {"prior_strength": 0}}, "perception.prior_strength"),
        ({"referral": {"half_life_days": 5000}}, "referral.half_life_days"),
        ({"money_per_point": -1}, "money_per_point"),
        ({"landmark": "1970-01-01"}, "landmark"),
        ({"landmark": "soon"}, "landmark"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_field(data: dict[str, Any], loc: str) -> None:
    locs, _ = _refused(data)
    assert locs == [loc]


def test_the_config_is_immutable() -> None:
    config = EquityConfig.default()
    with pytest.raises(ValidationError):
        config.money_per_point = 5.0  # type: ignore[misc]


def test_an_unknown_tier_name_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="`diamond`"):
        EquityConfig.default().tier_rank("diamond")
