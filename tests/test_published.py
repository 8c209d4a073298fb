"""Published numbers: the CSV's validation, the ours-against-published table, and the report section."""

from __future__ import annotations

from pathlib import Path

import pytest

import reporting.published
from bench.cli import main
from reporting.published import COLUMNS, PublishedError, load_published, render_comparison
from reporting.records import read_records

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = ",".join(COLUMNS) + "\n"
ROWS = (
    'cmnist,0.005,erm,test_acc,30.00,1.50,"Paper A, 2020",Table 2,CONV net 100 epochs,\n'
    "cmnist,0.05,erm,test_acc,85.00,,Paper B,Table 1,MLP,no std printed\n"
    "cmnist,0.01,erm,test_acc,50.00,,Paper B,Table 1,MLP,a cell we did not run\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "published.csv"
    path.write_text(text)
    return path


def test_comparison_sets_each_published_number_next_to_ours_with_the_difference(tmp_path):
    published = load_published(write(tmp_path, HEADER + ROWS))
    records = read_records(FIXTURES / "records.jsonl")
    table = render_comparison(records, published)
    # Fixture: ERM cmnist 0.5 % is 35.12 and 36.88 over two seeds (mean 36.00, std 1.24); 5 %: 81.00 ± 0.71.
    assert "| erm      | cmnist    | 0.5%    | test_acc | 36.00 ± 1.24 (n=2) | 30.00 ± 1.50 | +6.00" in table
    assert "| erm      | cmnist    | 5%      | test_acc | 81.00 ± 0.71 (n=2) | 85.00        | -4.00" in table
    # Each source and its protocol once, under the table; the rows point at it.
    assert "- [1] Paper A, 2020, Table 2: CONV net 100 epochs" in table
    assert "- [2] Paper B, Table 1: MLP (no std printed)" in table
    assert table.count("Paper B") == 1 and "| [2]" in table
    assert "1%" not in table, "a published number without our result is not a comparison"
    assert render_comparison(records, load_published(write(tmp_path, HEADER))).startswith("(no published")
    quoted = HEADER + 'cmnist,0.005,erm,test_acc,30,,"Doe, Roe (2020)",Table 3,"MLP, 100 epochs",a note\n\n'
    assert "- [1] Doe, Roe (2020), Table 3: MLP, 100 epochs (a note)" in render_comparison(
        records, load_published(write(tmp_path, quoted)))


def test_comparison_sets_the_oracle_beside_ours_and_labels_it(tmp_path):
    published = load_published(write(tmp_path, HEADER + ROWS))
    records = read_records(FIXTURES / "records.jsonl")
    assert "| not recorded " in render_comparison(records, published)  # records from before the oracle
    for record in records:
        if record["status"] == "ok":
            record["oracle_test_acc"] = record["test_acc"] + 0.02
    table = render_comparison(records, published)
    header = table.splitlines()[0]
    assert "ours (selected)" in header and "oracle (selected on test)" in header
    # ERM 0.5 %: ours 36.00, oracle 38.00 ± 1.24 against 30.00 published.
    assert "| 36.00 ± 1.24 (n=2) | 30.00 ± 1.50 | +6.00              | 38.00 ± 1.24 (n=2)          | +8.00" in table
    assert "compares with the oracle column (selected on test), never with ours as selected" in table


def test_an_oracle_figure_cannot_be_entered_as_a_published_number(tmp_path):
    with pytest.raises(PublishedError, match="unknown metric 'oracle_test_acc'"):
        load_published(write(tmp_path, HEADER + "cmnist,0.01,erm,oracle_test_acc,50,,P,T1,CONV,\n"))


GOOD = "cmnist,0.01,erm,test_acc,50,,P,T1,CONV,\n"


@pytest.mark.parametrize("text, message", [
    ("", "line 1: header must be"),
    ("dataset,ratio,method,value\n", "line 1: header must be"),
    (HEADER + "cmnist,0.01,erm,accuracy,50,,P,T1,x,\n", "line 2: unknown metric 'accuracy'; valid: test_acc"),
    (HEADER + "cmnist,0.01,ERM,test_acc,50,,P,T1,x,\n", "line 2: unknown method 'ERM'; valid: erm"),
    (HEADER + "cmnist,0.01,erm,test_acc,50,,P,,x,\n", "line 2: every number needs its paper, table and protocol"),
    (HEADER + "cmnist,0.01,erm,test_acc,50,,P,T1,,\n", "line 2: every number needs its paper, table and protocol"),
    (HEADER + "cmnist,1%,erm,test_acc,50,,P,T1,x,\n", "line 2: ratio '1%' is not a number"),
    (HEADER + "cmnist,0.5,erm,test_acc,50,,P,T1,x,\n", "line 2: ratio is the bias-conflicting fraction"),
    (HEADER + "cmnist,0.01,erm,test_acc,50,inf,P,T1,x,\n", "line 2: std must be finite"),
    (HEADER + "cmnist,0.01,erm,test_acc,50,,P,T1,x,,extra\n", "line 2: 11 fields, expected 10"),
    (HEADER + GOOD + "\n\ncmnist,0.01,erm,test_acc,150,,P,T1,x,\n", "line 5: value must be in"),
])
def test_malformed_rows_are_rejected_with_their_line(tmp_path, text, message):
    with pytest.raises(PublishedError, match=message):
        load_published(write(tmp_path, text))


def test_report_shows_published_numbers_and_refuses_a_broken_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text((FIXTURES / "records.jsonl").read_text())
    monkeypatch.setattr(reporting.published, "PUBLISHED_CSV", write(tmp_path, HEADER + ROWS))
    assert main(["report", str(out)]) == 0
    assert "+6.00" in (out / "report.md").read_text()
    broken = write(tmp_path, HEADER + "cmnist,x,erm,test_acc,1,,P,T,x,\n")
    monkeypatch.setattr(reporting.published, "PUBLISHED_CSV", broken)
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (out / "report.md").exists()


def test_the_committed_reference_file_is_valid():
    load_published()


def test_a_sweep_with_a_broken_published_file_stops_before_any_work(tmp_path, monkeypatch, capsys, data_root):
    monkeypatch.setattr(reporting.published, "PUBLISHED_CSV", write(tmp_path, "dataset\n"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = main(["--methods", "erm", "--ratios", "0.05", "--epochs", "1", "--out", str(out),
                 "--data-root", str(data_root), "--cache-dir", str(cache), "--no-progress"])
    assert code == 2
    assert "published.csv line 1: header must be" in capsys.readouterr().err
    assert not out.exists() and not cache.exists()
