"""``run_bench.py list``: every method, dataset and model with what ``--set`` takes."""

from __future__ import annotations

from pathlib import Path

from bench.cli import main
from bench.plugins import LOADED
from methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def listed(capsys, *argv: str) -> str:
    assert main(["list", *argv]) == 0
    return capsys.readouterr().out


def test_methods_show_their_paper_hyperparameters_domains_and_dataset_overrides(capsys):
    text = listed(capsys, "methods")
    for name in METHODS:
        assert f"\n{name}: " in text
    assert "lff: Nam, Cha, Ahn, Lee & Shin, Learning from Failure, NeurIPS 2020" in text
    assert "  lff.q = 0.7  (a number in (0, 1])" in text
    assert "  jtt.error_set = 'online'  (one of online, eval)" in text
    assert "  on cmnist-lff: T=20, lambda_up=300" in text
    assert "  on cifar10c at 0.5 %: lr=0.0005" in text
    assert "METHOD.iterations = 0  (an integer in [0, inf))" in text


def test_datasets_show_ratios_options_and_training_setting(capsys):
    text = listed(capsys, "datasets")
    assert "cmnist-lff: Colored MNIST, LfF protocol" in text
    assert "  default --ratios: 0.005,0.01,0.02,0.05" in text and "  default --ratios: 0.005\n" in text
    assert "    cmnist-lff.split = 'lff'  (one of lff, holdout)" in text
    assert "    cmnist.lr = 0.02  (a number in (0, inf))" in text
    assert "  quick preset: epochs=" in text


def test_models_and_everything_at_once(capsys):
    models = listed(capsys, "models")
    assert "resnet18" in models and "timm/<name>: any timm architecture" in models
    everything = listed(capsys)
    assert "methods (" in everything and "datasets (" in everything and "models (" in everything


def test_list_takes_plugins_and_refuses_an_unknown_kind(capsys):
    try:
        text = listed(capsys, "methods", "--plugins", str(ROOT / "examples" / "poe.py"))
        assert "poe: Clark, Yatskar & Zettlemoyer" in text and "  poe.q = 0.7" in text
    finally:
        METHODS.pop("poe", None)
        LOADED.pop(str(ROOT / "examples" / "poe.py"), None)
    assert main(["list", "metrics"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown kind metrics; valid: methods, datasets, models" in err
