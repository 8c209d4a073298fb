"""DomainBed-style random search: deterministic draws within the declared spaces, selection by
validation only."""

from __future__ import annotations

import pytest

from bench.hparams import resolve_hparams
from bench.search import draw
from datasets import DATASETS
from methods import METHODS
from reporting.tables import latest_ok, summarize
from spaces import Choice, IntUniform, LogUniform, Uniform


def test_draws_are_deterministic_per_method_dataset_and_seed():
    space = {"lr": LogUniform(1e-4, 1e-1), "q": Uniform(0.5, 0.9), "T": IntUniform(1, 20), "p": Choice((1, 2))}
    assert draw(space, "pgd", "cmnist", 0) == {}
    first = draw(space, "pgd", "cmnist", 3)
    assert first == draw(space, "pgd", "cmnist", 3)
    assert first != draw(space, "pgd", "cmnist", 4) and first != draw(space, "lff", "cmnist", 3)
    for k in range(1, 30):
        values = draw(space, "pgd", "cmnist", k)
        assert 1e-4 <= values["lr"] <= 1e-1 and 0.5 <= values["q"] <= 0.9
        assert 1 <= values["T"] <= 20 and values["p"] in (1, 2)


def test_resolved_hparams_use_the_draw_and_set_still_wins():
    pgd, cmnist = METHODS["pgd"], DATASETS["cmnist"]
    default = resolve_hparams(pgd, cmnist, 0.01, "paper", None, {})
    searched = resolve_hparams(pgd, cmnist, 0.01, "paper", None, {}, hparams_seed=1)
    assert searched["lr"] != default["lr"] and 2e-3 <= searched["lr"] <= 2e-1
    assert searched["score_norm_p"] in (0.7, 1.0, 2.0) and searched["model"] == "conv"
    pinned = resolve_hparams(pgd, cmnist, 0.01, "paper", None, {"lr": "0.05"}, hparams_seed=1)
    assert pinned["lr"] == 0.05


def record(seed, hparams_seed, valid_loss, test_acc):
    return {"key": f"{seed}-{hparams_seed}", "method": "pgd", "dataset": "cmnist", "ratio": 0.01, "seed": seed,
            "status": "ok", "hparams_seed": hparams_seed, "selected": {"valid_loss": valid_loss},
            "test_acc": test_acc, "test_conflicting_acc": test_acc}


def test_tables_keep_the_draw_with_the_best_validation_loss_not_the_best_test():
    records = [record(0, 1, 0.10, 0.50), record(1, 1, 0.12, 0.52),  # better validation, worse test
               record(0, 2, 0.30, 0.90), record(1, 2, 0.28, 0.92)]
    kept = latest_ok(records)
    assert {r["hparams_seed"] for r in kept} == {1}
    summary = summarize(records).set_index("metric")
    assert summary.loc["test_acc", "mean"] == pytest.approx(51.0)
