"""Decision logs on disk: exact round trips, and bad rows refused with file, line and field."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.learning.banditlog import (
    LoggedRound,
    read_csv,
    read_jsonl,
    read_log,
    write_csv,
    write_jsonl,
    write_log,
)

ROUNDS = [
    LoggedRound(
        context={"tier": "gold", "basket": [1, 2.5], "note": 'crème, "brûlée"\nline'},
        action="big_sale",
        reward=1.0,
        propensity=0.25,
        actions=("big_sale", "newsletter"),
        decision_id="d1",
        ts=1_795_428_000_000,
    ),
    LoggedRound(context={}, action="newsletter", reward=0.0, propensity=1.0),
    LoggedRound(context={"x": None}, action="a", reward=12.75, propensity=1 / 3, actions=("a",), decision_id="d3"),
]

HEADER = "decision_id,action,reward,propensity,actions,context\n"


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".csv"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"log{suffix}"
    assert write_log(ROUNDS, path) == len(ROUNDS)
    assert read_log(path) == ROUNDS


def test_csv_without_timestamps_has_exactly_the_documented_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    write_csv(ROUNDS[1:], path)
    text = path.read_text()
    assert text.startswith(HEADER)
    assert read_csv(path) == ROUNDS[1:]


def test_hand_written_files_are_read(tmp_path: Path) -> None:
    csv_path = tmp_path / "logs.csv"
    csv_path.write_text(HEADER + 'd1,big_sale,1,0.25,big_sale|newsletter,"{""tier"":""gold""}"\n\n,newsletter,0,0.5,,\n')
    assert read_csv(csv_path) == [
        LoggedRound(
            context={"tier": "gold"},
            action="big_sale",
            reward=1.0,
            propensity=0.25,
            actions=("big_sale", "newsletter"),
            decision_id="d1",
        ),
        LoggedRound(context={}, action="newsletter", reward=0.0, propensity=0.5),
    ]
    jsonl_path = tmp_path / "logs.jsonl"
    jsonl_path.write_text('{"action": "a", "reward": 2, "propensity": 0.5, "extra": "ignored"}\n\n')
    assert read_jsonl(jsonl_path) == [LoggedRound(context={}, action="a", reward=2.0, propensity=0.5)]


def _csv_error(tmp_path: Path, body: str, header: str = HEADER) -> InvalidInput:
    path = tmp_path / "logs.csv"
    path.write_text(header + body)
    with pytest.raises(InvalidInput) as err:
        read_csv(path)
    return err.value


@pytest.mark.parametrize(
    ("bad_row", "fld", "says"),
    [
        ("d7,a,1,0,a|b,{}", "propensity", "propensity must be in (0, 1], got 0.0"),
        ("d7,a,1,1.5,a|b,{}", "propensity", "propensity must be in (0, 1], got 1.5"),
        ("d7,a,1,nan,a|b,{}", "propensity", "propensity must be in (0, 1]"),
        ("d7,a,yes,0.5,a|b,{}", "reward", "reward must be a number, got 'yes'"),
        ("d7,a,inf,0.5,a|b,{}", "reward", "reward must be a finite number"),
        ("d7,,1,0.5,a|b,{}", "action", "action must be a non-empty string"),
        ("d7,c,1,0.5,a|b,{}", "action", "action 'c' is not among the eligible actions"),
        ("d7,a,1,0.5,a|a,{}", "actions", "actions must not repeat"),
        ("d7,a,1,0.5,a||b,{}", "actions", "actions must be non-empty strings"),
        ('d7,a,1,0.5,a|b,"{""x"":"', "context", "context must be a JSON object string"),
        ('d7,a,1,0.5,a|b,"[1,2]"', "context", "context must be a JSON object, got list"),
        ("d7,a,1,0.5,a|b", "line", "expected 6 cells as in the header, got 5"),
    ],
)
def test_bad_csv_rows_name_file_line_and_field(tmp_path: Path, bad_row: str, fld: str, says: str) -> None:
    good = "d1,a,1,0.5,a|b,{}\n" * 6  # lines 2..7, so the bad row is line 8
    err = _csv_error(tmp_path, good + bad_row + "\n")
    assert err.message.startswith(f"{tmp_path / 'logs.csv'}:8: ")
    assert says in err.message
    assert err.field == fld


def test_csv_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    # Row 1 spans lines 2-3 (a quoted newline in its context); the bad row starts on line 4.
    err = _csv_error(tmp_path, 'd1,a,1,0.5,a|b,"{""n"":\n""x""}"\nd2,a,1,0,a|b,{}\n')
    assert err.message.startswith(f"{tmp_path / 'logs.csv'}:4: propensity")


def test_csv_header_must_have_the_required_columns(tmp_path: Path) -> None:
    err = _csv_error(tmp_path, "d1,a,1,{}\n", header="decision_id,action,reward,context\n")
    assert ":1: header lacks column(s) propensity" in err.message
    assert err.field == "propensity"


def test_csv_bad_ts(tmp_path: Path) -> None:
    err = _csv_error(tmp_path, "d1,a,1,0.5,a,{},soon\n", header=HEADER.strip() + ",ts\n")
    assert ":2: ts must be an integer" in err.message
    assert err.field == "ts"


@pytest.mark.parametrize(
    ("bad_line", "fld", "says"),
    [
        ('{"action": "a", "reward": 1, "propensity": 0}', "propensity", "propensity must be in (0, 1], got 0"),
        ('{"action": "a", "reward": 1}', "propensity", "propensity is missing"),
        ('{"action": "a", "reward": true, "propensity": 0.5}', "reward", "reward must be a finite number, got True"),
        ('{"action": "a", "reward": 1, "propensity": "0.5"}', "propensity", "propensity must be in (0, 1], got '0.5'"),
        ('{"action": 3, "reward": 1, "propensity": 0.5}', "action", "action must be a non-empty string"),
        ('{"action": "a", "reward": 1, "propensity": 0.5, "actions": "a|b"}', "actions", "actions must be a list"),
        ('{"action": "a", "reward": 1, "propensity": 0.5, "context": [1]}', "context", "context must be an object"),
        ('{"action": "a", "reward": 1, "propensity": 0.5, "ts": 1.5}', "ts", "ts must be an integer"),
        ('{"action": "a", "reward": 1, "propensity": 0.5, "decision_id": 7}', "decision_id", "decision_id must be"),
        ('{"action": "a", "reward": 1, "propensity": 0.5', "line", "not valid JSON"),
        ("[1, 2]", "line", "each line must be a JSON object, got list"),
    ],
)
def test_bad_jsonl_lines_name_file_line_and_field(tmp_path: Path, bad_line: str, fld: str, says: str) -> None:
    path = tmp_path / "logs.jsonl"
    # Line 2 is blank: skipped, but still counted, so the bad line is line 4.
    path.write_text(
        '{"action": "a", "reward": 1, "propensity": 0.5}\n\n{"action": "b", "reward": 0, "propensity": 1}\n' + bad_line + "\n"
    )
    with pytest.raises(InvalidInput) as err:
        read_jsonl(path)
    assert err.value.message.startswith(f"{path}:4: ")
    assert says in err.value.message
    assert err.value.field == fld


def test_writers_refuse_what_they_cannot_represent(tmp_path: Path) -> None:
    piped = LoggedRound(context={}, action="a|b", reward=1.0, propensity=0.5, actions=("a|b",))
    with pytest.raises(InvalidInput) as err:
        write_csv([piped], tmp_path / "log.csv")
    assert err.value.field == "actions"
    write_jsonl([piped], tmp_path / "log.jsonl")  # JSON lines can carry it
    assert read_jsonl(tmp_path / "log.jsonl") == [piped]
    with pytest.raises(InvalidInput) as err:
        write_jsonl([LoggedRound(context={"x": float("nan")}, action="a", reward=1.0, propensity=0.5)], tmp_path / "nan.jsonl")
    assert err.value.field == "context"
    with pytest.raises(InvalidInput) as err:
        write_log(ROUNDS, tmp_path / "log.parquet")
    assert err.value.field == "path"


def test_rounds_built_in_code_are_validated_too() -> None:
    with pytest.raises(InvalidInput) as err:
        LoggedRound(context={}, action="a", reward=1.0, propensity=0.0)
    assert err.value.message == "propensity must be in (0, 1], got 0.0"
    with pytest.raises(InvalidInput) as err:
        LoggedRound(context={}, action="a", reward=1.0, propensity=0.5, decision_id="")
    assert err.value.field == "decision_id"
    assert LoggedRound(context={}, action="a", reward=1, propensity=1, actions=["a"]).actions == ("a",)  # type: ignore[arg-type]


# --- property: any valid round survives both formats ---------------------------------------------

action_ids = st.text(st.characters(codec="utf-8", exclude_characters="|\x00\r"), min_size=1, max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def logged_rounds(draw: st.DrawFn) -> LoggedRound:
    actions = tuple(draw(st.lists(action_ids, min_size=1, max_size=4, unique=True)))
    return LoggedRound(
        context=draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
        action=draw(st.sampled_from(actions)),
        reward=draw(st.floats(allow_nan=False, allow_infinity=False)),
        propensity=draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
        actions=draw(st.sampled_from([actions, ()])),
        decision_id=draw(st.none() | action_ids),
        ts=draw(st.none() | st.integers(0, 2**62)),
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(logged_rounds(), max_size=5))
def test_any_valid_log_round_trips_through_both_formats(rounds: list[LoggedRound]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("log.jsonl", "log.csv"):
            path = Path(tmp) / name
            write_log(rounds, path)
            assert read_log(path) == rounds
