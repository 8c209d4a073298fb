"""bffhq: the DFA release layout on a small synthetic tree, and the missing-data message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from datasets import DATASETS, DataError
from datasets.bffhq import parse_labels
from datasets.cache import load_or_build
from methods import METHODS
from reporting.records import read_records

BFFHQ = DATASETS["bffhq"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The release layout with 24x24 PNGs: 0.5pct/{align,conflict}/<class>/, valid/, test/."""
    base = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    counter = iter(range(10_000))

    def write(folder: Path, target: int, bias: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        image = np.clip(rng.integers(0, 80, (24, 24, 3)) + 120 * target, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{next(counter)}_{target}_{bias}.png")

    for target in (0, 1):
        for _ in range(14):
            write(base / "bffhq" / "0.5pct" / "align" / str(target), target, target)
        for _ in range(2):
            write(base / "bffhq" / "0.5pct" / "conflict" / str(target), target, 1 - target)
        for bias in (0, 1):
            for _ in range(3):
                write(base / "bffhq" / "valid", target, bias)
                write(base / "bffhq" / "test", target, bias)
    return base


def test_labels_come_from_the_file_name():
    assert parse_labels(Path("12345_1_0.png")) == (1, 0)
    with pytest.raises(DataError, match=r"_<target>_<bias>\.png"):
        parse_labels(Path("12345.png"))


def test_release_layout_is_read_into_splits(root, tmp_path):
    spec = BFFHQ({**BFFHQ.OPTIONS})
    data = load_or_build(spec, root, 0.005, tmp_path)
    assert (len(data.train), len(data.valid), len(data.test)) == (32, 12, 12)
    assert data.train.images.shape[1:] == (3, 24, 24)
    assert np.sum(data.train.targets != data.train.biases) == 4
    assert np.sum(data.test.targets != data.test.biases) == 6
    again = load_or_build(spec, root, 0.005, tmp_path)
    assert again.fingerprint == data.fingerprint


def test_missing_dataset_says_where_it_comes_from(tmp_path, capsys):
    code = main(["--datasets", "bffhq", "--methods", "erm", "--ratios", "0.005", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "BFFHQ not found" in err and "Google Drive" in err and "bffhq/0.5pct/align" in err
    assert not (tmp_path / "out").exists()


def test_only_the_released_ratio_exists(root, tmp_path, capsys):
    code = main(["--datasets", "bffhq", "--methods", "erm", "--ratios", "0.01", "--data-root", str(root),
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 2 and "ratio 0.005 only" in capsys.readouterr().err


def test_all_methods_run_end_to_end_on_bffhq(root, tmp_path):
    out = tmp_path / "out"
    code = main(["--datasets", "bffhq", "--ratios", "0.005", "--epochs", "1", "--data-root", str(root),
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                 "--set", "bffhq.image_size=32", "--set", "dfa.curriculum_step=0",
                 # 32 training images: DFA's drop_last would leave no batch of 64
                 "--set", "dfa.drop_last=false"])
    records = read_records(out / "results.jsonl")
    assert code == 0, [r.get("error") for r in records]
    assert [r["method"] for r in records] == list(METHODS)
    for record in records:
        assert record["hparams"]["batch_size"] == 64 and record["hparams"]["lr"] in (1e-4,)
        assert record["test_conflicting_acc"] is not None and record["test_aligned_acc"] is not None
