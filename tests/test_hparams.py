"""Hyperparameter layering, epoch scaling and --set parsing."""

from __future__ import annotations

import pytest

from bench.hparams import HparamError, parse_sets, resolve_hparams, resolve_options
from datasets import DATASETS
from methods import METHODS

ERM, CMNIST = METHODS["erm"], DATASETS["cmnist"]


def test_paper_preset_is_the_published_cmnist_setting():
    hp = resolve_hparams(ERM, CMNIST, 0.01, "paper", None, {})
    assert hp == {"model": "conv", "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3,
                  "batch_size": 128, "epochs": 100, "lr_decay_step": 40, "lr_decay_gamma": 0.1,
                  "selection": "best_valid_loss", "iterations": 0, "drop_last": False, "oracle_every_steps": 0,
                  "pretrained": False}


def test_shorter_schedule_scales_epoch_counted_hparams():
    hp = resolve_hparams(ERM, CMNIST, 0.01, "paper", 10, {})
    assert (hp["epochs"], hp["lr_decay_step"]) == (10, 4)
    assert resolve_hparams(ERM, CMNIST, 0.01, "quick", None, {})["epochs"] == CMNIST.QUICK["epochs"]
    lc = resolve_hparams(METHODS["lc"], CMNIST, 0.01, "paper", 50, {})  # LC's group-mixup ramp: 2 of 100 epochs
    assert (lc["rampup"], lc["rampup_unit"]) == (1, "epochs")



def test_lc_on_the_lff_protocol_takes_the_official_codes_network_and_batching():
    """LC's official code (``MLP_DISENTANGLE``) has a 16-d penultimate layer and drops the last batch; the
    protocol's other methods keep LfF's 100-d MLP and its full last batch."""
    cmnist_lff = DATASETS["cmnist-lff"]
    lc = resolve_hparams(METHODS["lc"], cmnist_lff, 0.01, "paper", None, {})
    assert (lc["model"], lc["drop_last"], lc["optimizer"], lc["lr"]) == ("mlp16", True, "adam", 1e-2)
    groupdro = resolve_hparams(METHODS["groupdro"], cmnist_lff, 0.01, "paper", None, {})
    assert (groupdro["model"], groupdro["drop_last"]) == ("mlp", False)
    assert resolve_hparams(METHODS["lc"], CMNIST, 0.01, "paper", None, {})["model"] == "conv"

def test_set_overrides_last_and_is_typed():
    hp = resolve_hparams(ERM, CMNIST, 0.01, "paper", 10, {"lr": "0.1", "lr_decay_step": "7", "model": "mlp"})
    assert hp["lr"] == 0.1 and hp["lr_decay_step"] == 7 and hp["model"] == "mlp"


@pytest.mark.parametrize("sets, message", [
    ({"nope": "1"}, "unknown key; valid:"),
    ({"batch_size": "1.5"}, "expected a int"),
])
def test_bad_set_values_name_the_problem(sets, message):
    with pytest.raises(HparamError, match=message):
        resolve_hparams(ERM, CMNIST, 0.01, "paper", None, sets)


def test_parse_sets_and_dataset_options():
    sets = parse_sets(["erm.lr=0.5", "cmnist.train_size=100"])
    assert sets == {"erm": {"lr": "0.5"}, "cmnist": {"train_size": "100"}}
    assert resolve_options(CMNIST, sets["cmnist"])["train_size"] == 100
    with pytest.raises(HparamError, match=r"SCOPE\.KEY=VALUE"):
        parse_sets(["lr=0.5"])


def test_dfa_per_dataset_and_per_ratio_settings():
    dfa, cifar = METHODS["dfa"], DATASETS["cifar10c"]
    at = {r: resolve_hparams(dfa, cifar, r, "paper", None, {}) for r in (0.005, 0.01, 0.02, 0.05)}
    assert at[0.005]["lr"] == 5e-4 and at[0.01]["lr"] == 1e-3
    assert [at[r]["lambda_dis_align"] for r in (0.005, 0.01, 0.02, 0.05)] == [1.0, 5.0, 5.0, 1.0]
    assert at[0.05]["lr_schedule"] == "dfa" and at[0.05]["model"] == "resnet18"
    lff_protocol = resolve_hparams(dfa, DATASETS["cmnist-lff"], 0.01, "paper", None, {})
    assert (lff_protocol["model"], lff_protocol["lr"], lff_protocol["lambda_swap_align"]) == ("mlp16", 0.01, 10.0)
    shared = resolve_hparams(dfa, CMNIST, 0.01, "paper", None, {})
    assert (shared["model"], shared["optimizer"], shared["lr_schedule"]) == ("conv", "sgd", "shared")


@pytest.mark.parametrize("method, rule", [("erm", "best_valid_loss"), ("pgd", "best_valid_loss"),
                                          ("jtt", "best_valid_loss"), ("lff", "last_epoch"), ("dfa", "last_epoch")])
def test_cmnist_selection_per_method(method, rule):
    """One-model reweighting methods are selected at the last epoch on cmnist: the biased validation
    split's loss is lowest before they debias. Two-stage methods select within their second stage."""
    for preset in ("paper", "quick"):
        assert resolve_hparams(METHODS[method], CMNIST, 0.01, preset, None, {})["selection"] == rule
