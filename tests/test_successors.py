"""Mechanism tests of the methods published after PGD (issue 42): GroupDRO's exponentiated-gradient group
weights and group-balanced sampling, DPR's disagreement-probability sampling and its start from the biased
model, LC's prior, logit correction, GroupMix and joint step; and that the bias labels reach GroupDRO
alone, whose rows are marked as the upper bound."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from methods import METHODS, Batch, RunContext
from methods.dpr import disagreement_probabilities
from methods.groupdro import exponentiated_gradient_step, group_losses
from methods.lc import (
    EPS,
    corrected_cross_entropy,
    group_mix_partners,
    rampup_alpha,
    update_prior_per_batch,
    update_prior_per_sample,
)
from methods.losses import generalized_ce
from reporting.records import read_records
from reporting.significance import leads
from reporting.tables import BIAS_SUPERVISED_LABEL, method_rank, render_markdown

HP = {"model": "mlp", "optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.0, "epochs": 1,
      "batch_size": 6, "lr_decay_step": 0, "lr_decay_gamma": 1.0}


def test_group_losses_are_batch_means_and_zero_for_absent_groups():
    losses = torch.tensor([1.0, 3.0, 2.0, 5.0])
    groups = torch.tensor([0, 0, 2, 2])
    torch.testing.assert_close(group_losses(losses, groups, 4), torch.tensor([2.0, 0.0, 3.5, 0.0]))


def test_group_weights_move_toward_the_group_with_the_highest_loss():
    q = torch.full((3,), 1 / 3)
    losses = torch.tensor([1.0, 3.0, 0.0])
    updated = exponentiated_gradient_step(q, losses, 0.5)
    expected = torch.exp(0.5 * losses) / torch.exp(0.5 * losses).sum()  # q uniform: the softmax of eta * loss
    torch.testing.assert_close(updated, expected)
    assert updated.argmax() == 1 and updated[1] > q[1] and updated[2] < q[2]


def groupdro(biases: torch.Tensor, targets: torch.Tensor, **hp) -> object:
    ctx = RunContext(2, (3, 4, 4), targets, torch.device("cpu"), torch.Generator().manual_seed(0), biases)
    torch.manual_seed(0)
    return METHODS["groupdro"]({**HP, **METHODS["groupdro"].HPARAMS, **hp}, ctx)


def test_groupdro_step_updates_q_first_then_weights_the_group_losses_with_it():
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    biases = torch.tensor([0, 0, 1, 1, 1, 0])  # groups (y, b): 0, 0, 1, 3, 3, 2
    method = groupdro(biases, targets, robust_step_size=0.3)
    model = method.models["model"]
    x = torch.randn(6, 3, 4, 4)
    with torch.no_grad():
        per_sample = F.cross_entropy(model(x), targets, reduction="none")
    expected_losses = group_losses(per_sample, torch.tensor([0, 0, 1, 3, 3, 2]), 4)
    expected_q = exponentiated_gradient_step(torch.full((4,), 0.25), expected_losses, 0.3)
    out = method.update(Batch(torch.arange(6), x, targets))
    torch.testing.assert_close(method.q, expected_q)
    torch.testing.assert_close(out["loss"], (expected_losses * expected_q).sum())


def test_groupdro_draws_each_group_equally_often():
    targets = torch.tensor([0] * 8 + [1] * 2)
    biases = torch.tensor([0] * 8 + [0] * 2)  # group 0 has 8 samples, group 2 has 2
    weights = groupdro(biases, targets).sampling().weights
    torch.testing.assert_close(weights[:8].sum(), weights[8:].sum())  # N / n_g per sample: equal per group
    assert groupdro(biases, targets, reweight_groups=False).sampling() is None


def test_groupdro_refuses_to_run_without_bias_labels():
    ctx = RunContext(2, (3, 4, 4), torch.tensor([0, 1]), torch.device("cpu"), torch.Generator())
    with pytest.raises(ValueError, match="needs the training set's bias labels"):
        METHODS["groupdro"]({**HP, **METHODS["groupdro"].HPARAMS}, ctx)


def test_dpr_weights_rise_with_the_disagreement_probability():
    logits = torch.tensor([[4.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 3.0], [50.0, -50.0]])
    targets = torch.zeros(5, dtype=torch.long)
    d = disagreement_probabilities(logits, targets)
    agree = torch.softmax(logits, 1)[:, 0]
    torch.testing.assert_close(d[:4], 1 - agree[:4])
    assert d[4] == pytest.approx(1e-8)  # clamped below, never zero
    assert bool((d[:4].diff() > 0).all())  # the less the biased model agrees with y, the heavier the sample
    d_tau = disagreement_probabilities(logits, targets, tau=2.0)
    torch.testing.assert_close(d_tau[:4], 1 - torch.softmax(logits / 2, 1)[:4, 0])


class ListView:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def batches(self, batch_size, augment):
        for start in range(0, len(self.y), batch_size):
            index = torch.arange(start, min(start + batch_size, len(self.y)))
            yield Batch(index, self.x[index], self.y[index])


@pytest.mark.parametrize("released", [False, True])
def test_dpr_samples_by_disagreement_from_the_biased_model_and_starts_from_it(released):
    targets = torch.tensor([0, 1] * 5)
    ctx = RunContext(2, (3, 4, 4), targets, torch.device("cpu"), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    method = METHODS["dpr"]({**HP, **METHODS["dpr"].HPARAMS, "released_untrained_scorer": released}, ctx)
    x = torch.randn(10, 3, 4, 4)
    biased = method.models["biased"]
    for _ in range(5):  # a biased model that is not its initialisation
        method.update(Batch(torch.arange(10), x, targets))
    stages = method.stages()
    method.start_stage(stages[0], ListView(x, targets))
    method.start_stage(stages[1], ListView(x, targets))
    with torch.no_grad():
        d = disagreement_probabilities(biased.eval()(x), targets)
    same = all(torch.equal(a, b) for a, b in zip(method.models["debiased"].state_dict().values(),
                                                 biased.state_dict().values(), strict=True))
    if released:  # the released code's untrained scorer: neither the weights nor the start are the biased model's
        assert not same and not torch.allclose(method.probabilities, d / d.sum())
    else:
        assert same
        torch.testing.assert_close(method.probabilities, d / d.sum())
        assert math.isclose(float(method.probabilities.sum()), 1.0, rel_tol=1e-6)
    assert method.sampling().weights is method.probabilities


def test_a_bias_supervised_method_goes_last_even_if_the_papers_order_names_it():
    records = [{"method": m, "bias_supervised": m == "erm"} for m in ("pgd", "erm", "mine")]
    assert sorted(method_rank(records), key=method_rank(records).get)[-1] == "erm"


def test_bias_labels_reach_groupdro_alone_and_its_row_is_the_upper_bound(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    assert main(["--methods", "erm,dpr,groupdro", "--ratios", "0.05", "--epochs", "1", "--out", str(out),
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--no-progress",
                 "--set", "cmnist.train_size=512", "--set", "cmnist.eval_size=256"]) == 0
    records = read_records(out / "results.jsonl")
    assert [(r["method"], r.get("bias_supervised", False)) for r in records] == [
        ("erm", False), ("dpr", False), ("groupdro", True)]
    table = render_markdown(records)
    first = next(block for block in table.split("\n\n") if block.startswith("| method"))  # unbiased accuracy
    rows = [line.split("|")[1].strip() for line in first.splitlines()[2:]]
    assert rows == ["erm", "dpr", f"groupdro{BIAS_SUPERVISED_LABEL}"]
    for lead in leads(records):  # the best and the runner-up never include the upper bound
        assert "groupdro" not in (lead["best"], lead["runner_up"])


def test_lc_prior_per_sample_stores_a_first_visit_then_averages_in_batch_order():
    prior = torch.zeros(2, 2, dtype=torch.float64)
    visited = torch.zeros(2, 2, dtype=torch.float64)
    y, a = torch.tensor([0, 0, 1]), torch.tensor([1, 1, 1])
    update_prior_per_sample(prior, visited, y, a, torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64), 0.5)
    # cell (0, 1): first 0.2 stored, then 0.5 * 0.2 + 0.5 * 0.6; cell (1, 1): 0.9 stored
    torch.testing.assert_close(prior, torch.tensor([[0.0, 0.4], [0.0, 0.9]], dtype=torch.float64))
    torch.testing.assert_close(visited, torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64))


def test_lc_prior_per_batch_moves_every_cell_and_pulls_absent_ones_toward_zero():
    prior = torch.full((2, 2), 0.8, dtype=torch.float64)
    y, a = torch.tensor([0, 0]), torch.tensor([1, 1])
    new = update_prior_per_batch(prior, y, a, torch.tensor([0.2, 0.6]), 0.5)
    present = 0.5 * 0.8 + 0.5 * (0.8 / (2 + EPS))
    torch.testing.assert_close(new, torch.tensor([[0.4, present], [0.4, 0.4]], dtype=torch.float64))


def test_lc_correction_changes_the_loss_exactly_as_its_formula_says():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    prior = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.0, 0.8]], dtype=torch.float64)  # M[:, a_i] per sample
    got = corrected_cross_entropy(logits, y, prior)
    weighted = (prior + EPS) * torch.exp(logits)  # softmax(z + log(c + eps)) = (c + eps) e^z / sum
    expected = -torch.log(weighted.gather(1, y[:, None]).squeeze(1) / weighted.sum(1))
    torch.testing.assert_close(got, expected)
    # A label the prior makes likely for the sample's pseudo-bias costs less: the bias is explained away.
    assert corrected_cross_entropy(logits, y, torch.ones_like(prior))[0] > got[0]


def test_lc_rampup_and_group_mix_partners():
    assert rampup_alpha(0, 0) == 0.5 and rampup_alpha(5, 2) == 0.5
    assert rampup_alpha(0, 2) == pytest.approx(0.5 * math.exp(-5))
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    minority = torch.tensor([False, True, False, False, False, True])
    partners = group_mix_partners(y, minority, 3, torch.Generator().manual_seed(0))
    assert partners[:3].tolist() == [1, 1, 1]  # class 0: its one misclassified sample, for every member
    assert sorted(partners[3:5].tolist()) == [3, 4]  # class 1 has none: a permutation of the class
    assert partners[5] == 5


def test_lc_step_is_mixed_corrected_ce_plus_lambda_gce_of_the_biased_model():
    targets = torch.tensor([0, 1, 0, 1, 0, 1])
    gen = torch.Generator().manual_seed(3)
    ctx = RunContext(2, (3, 4, 4), targets, torch.device("cpu"), gen)
    torch.manual_seed(0)
    hp = {**HP, **METHODS["lc"].HPARAMS, "lambda_biased": 0.5, "ema_alpha": 0.9}
    method = METHODS["lc"](hp, ctx)
    x = torch.randn(6, 3, 4, 4)
    debiased, biased = (copy.deepcopy(method.models[k]) for k in ("debiased", "biased"))
    replay = torch.Generator().manual_seed(0)
    replay.set_state(gen.get_state())
    out = method.update(Batch(torch.arange(6), x, targets))

    with torch.no_grad():
        b_logits = biased(x)
        p = torch.softmax(b_logits, 1)
        a = p.argmax(1)
        prior = torch.zeros(2, 2, dtype=torch.float64)
        update_prior_per_sample(prior, torch.zeros(2, 2, dtype=torch.float64), targets, a,
                                p.gather(1, targets[:, None]).squeeze(1).double(), 0.9)
        torch.testing.assert_close(method.prior, prior)
        lam = (1 - 2 * 0.5) + 0.5 * torch.rand(1, generator=replay).item()
        partners = group_mix_partners(targets, a != targets, 2, replay)
        correction = prior.float()[:, a].T
        mixed = lam * correction + (1 - lam) * correction[partners]
        lc_loss = corrected_cross_entropy(debiased(lam * x + (1 - lam) * x[partners]), targets, mixed).mean()
        torch.testing.assert_close(out["loss"], lc_loss)
        torch.testing.assert_close(out["biased_loss"], generalized_ce(b_logits, targets, 0.7).mean())
    # One backward pass moved both models.
    assert not torch.equal(next(method.models["biased"].parameters()), next(biased.parameters()))
    assert not torch.equal(next(method.models["debiased"].parameters()), next(debiased.parameters()))
