"""The replay context as models/EVALUATION.md documents it: its examples, verbatim, evaluate under every policy."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.evaluation.replay import CONTEXT_DOC, read_rounds
from engine.evaluation.report import run_evaluation
from tests.conftest import EXAMPLE_MODELS, EXAMPLE_RULES, ROOT

DOC = ROOT / "models" / "EVALUATION.md"


def _section_blocks(title: str) -> dict[str, str]:
    """The fenced code blocks of one `## title` section, by language."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else None]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)}


@pytest.fixture(params=["json", "csv"])
def documented(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    blocks = _section_blocks("Replay context")
    path = tmp_path / ("example.jsonl" if request.param == "json" else "example.csv")
    path.write_text(blocks[request.param], encoding="utf-8")
    return path


async def _run(source: Path, policy: str, **kw: Any) -> Any:
    return await run_evaluation(source=source, policy=policy, **{"models_dir": EXAMPLE_MODELS, "n_boot": 20, **kw})


def test_the_documented_example_carries_every_context_field() -> None:
    blocks = _section_blocks("Replay context")
    lines = [json.loads(line) for line in blocks["json"].splitlines() if line.strip()]
    assert len(lines) == 2
    for line in lines:
        assert {"candidates", "limits", "inputs", "customer_id", "placement", "channel"} <= set(line["context"])


def test_the_documented_example_is_the_same_in_both_formats(tmp_path: Path) -> None:
    blocks = _section_blocks("Replay context")
    (tmp_path / "a.jsonl").write_text(blocks["json"], encoding="utf-8")
    (tmp_path / "a.csv").write_text(blocks["csv"], encoding="utf-8")
    assert read_rounds(tmp_path / "a.jsonl") == read_rounds(tmp_path / "a.csv")


@pytest.mark.anyio
@pytest.mark.parametrize("policy", ["greedy", "random", "epsilon:0.2", "softmax:0.5", "fixed:lounge_pass", "model:response"])
async def test_a_file_in_the_documented_format_evaluates(documented: Path, policy: str) -> None:
    report = await _run(documented, policy)
    assert [e.estimator for e in report.estimates] == ["ips", "snips", "dr"]
    for e in report.estimates:
        assert math.isfinite(e.value) and math.isfinite(e.ci_low) and math.isfinite(e.ci_high)


@pytest.mark.anyio
async def test_greedy_on_the_documented_example_by_hand(documented: Path) -> None:
    # lounge_pass ranks first in both decisions (0.17 x 35 and 0.2 x 35 beat 0.15 x 25), and the
    # sales budget of d2 does not touch it: greedy shows it in both. Only d1 logged it (p 0.9, reward 1).
    report = await _run(documented, "greedy", n_boot=0)
    assert report.estimates[0].value == pytest.approx((1.0 / 0.9) / 2)
    # The rule set ranks by value x lever x prior mean: lounge_pass 35 x 2/12 beats welcome_coupon 25 x 3/20.
    rules = await _run(documented, f"rules:{EXAMPLE_RULES}", n_boot=0)
    assert rules.estimates[0].value == pytest.approx((1.0 / 0.9) / 2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("candidates",), "candidates"),
        (("limits",), "limits"),
        (("limits", "limit"), "limits.limit"),
        (("candidates", 1, "multiplier"), "candidates[1].multiplier"),
        (("candidates", 0, "group"), "candidates[0].group"),
    ],
)
async def test_a_missing_context_field_is_named_and_points_to_the_doc(
    tmp_path: Path, drop: tuple[str | int, ...], named: str
) -> None:
    blocks = _section_blocks("Replay context")
    rows = [json.loads(line) for line in blocks["json"].splitlines() if line.strip()]
    for row in rows:
        holder: Any = row["context"]
        for key in drop[:-1]:
            holder = holder[key]
        del holder[drop[-1]]
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        await _run(path, "epsilon:0.1")
    assert named in err.value.message and CONTEXT_DOC in err.value.message
    assert err.value.field == "context"
    # The documented section exists under the name the message gives.
    assert "\n## Replay context\n" in DOC.read_text(encoding="utf-8")
