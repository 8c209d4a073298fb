"""results.jsonl: whole-line appends, torn-line tolerance and repair."""

from __future__ import annotations

import json

import pytest

from reporting.records import append_record, read_records


def test_append_and_read_round_trip(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, {"key": "a", "x": 1.5})
    append_record(path, {"key": "b", "x": float("nan")})
    assert read_records(path) == [{"key": "a", "x": 1.5}, {"key": "b", "x": None}]


def test_torn_last_line_is_reported_then_cut_before_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, {"key": "a"})
    with path.open("a") as handle:
        handle.write('{"key": "b", "trunc')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_records(path) == [{"key": "a"}]
    append_record(path, {"key": "c"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "c"]


def test_corruption_inside_the_file_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(ValueError, match=":2: not a JSON record"):
        read_records(path)
