"""results.jsonl: whole-line appends, torn-line tolerance and repair, and bad lines named by file and line."""

from __future__ import annotations

import json

import pytest

from reporting.records import RecordError, append_record, read_records, record_problem


def record(key: str, **extra) -> dict:
    """The smallest valid record: a failed run."""
    return {"key": key, "method": "erm", "dataset": "cmnist", "ratio": 0.01, "seed": 0, "status": "failed", **extra}


def test_append_and_read_round_trip(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, record("a", x=1.5))
    append_record(path, record("b", x=float("nan")))
    assert read_records(path) == [record("a", x=1.5), record("b", x=None)]


def test_torn_last_line_is_reported_then_cut_before_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, record("a"))
    with path.open("a") as handle:
        handle.write('{"key": "b", "trunc')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_records(path) == [record("a")]
    append_record(path, record("c"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "c"]


def test_corruption_inside_the_file_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(f'{json.dumps(record("a"))}\nnot json\n{json.dumps(record("b"))}\n')
    with pytest.raises(RecordError, match=r"results.jsonl:2: not a JSON record$"):
        read_records(path)


OK = {"status": "ok", "test_acc": 0.5, "env": {}, "timing": {"total_s": 1.0, "phases_s": {}}}


@pytest.mark.parametrize(("line", "problem"), [
    ([1, 2], "a JSON list, not a record object"),
    ({"name": "resnet", "accuracy": 0.9}, "not a debias-bench record (missing key, method, dataset, ratio, seed, "
                                          "status)"),
    (record("a", seed=None), "missing seed"),
    (record("a", ratio="1%"), "ratio is str, expected number"),
    (record("a", seed=True), "seed is bool, expected int"),
    (record("a", status="done"), "status 'done'; valid: ok, failed"),
    (record("a", status="ok"), "missing test_acc, timing, env"),
    (record("a", **{**OK, "timing": {"total_s": 1.0}}), "missing timing.phases_s"),
])
def test_a_bad_record_is_named_with_its_problem(line, problem):
    assert record_problem(line) == problem


def test_bad_lines_are_skipped_and_named_when_asked(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = [record("a"), "not json", {"foreign": True}, record("b", **OK)]
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(RecordError, match=":2: not a JSON record"):
        read_records(path)
    skipped: list[str] = []
    assert [r["key"] for r in read_records(path, on_bad=skipped.append)] == ["a", "b"]
    assert skipped == [f"{path}:2: not a JSON record", f"{path}:3: not a debias-bench record (missing key, method, "
                                                         "dataset, ratio, seed, status)"]
