"""Mechanism tests that would catch an unfaithful LfF, JTT, DFA or PGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from bench.data import epoch_order
from methods import METHODS, Batch, RunContext, Sampling
from methods.dfa import swap_features
from methods.jtt import error_set, upsampled_indices
from methods.losses import PerSampleEMA, generalized_ce, relative_difficulty
from methods.pgd_scores import sampling_probabilities

CPU = torch.device("cpu")


def context(n: int = 8, classes: int = 3, model_shape=(3, 28, 28), device: torch.device = CPU) -> RunContext:
    gen = torch.Generator(device=device).manual_seed(0)
    return RunContext(classes, model_shape, (torch.arange(n) % classes).to(device), device, gen)


def test_gce_gradient_is_ce_gradient_scaled_by_p_y_to_the_q():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1])
    q = 0.7
    (gce_grad,) = torch.autograd.grad(generalized_ce(logits, y, q).sum(), logits)
    ce_grads = torch.stack([torch.autograd.grad(F.cross_entropy(logits[i:i + 1], y[i:i + 1]), logits)[0][i]
                            for i in range(5)])
    p_y = torch.softmax(logits, 1).gather(1, y[:, None]).detach()
    # The authors' GCE also multiplies by the constant q.
    torch.testing.assert_close(gce_grad, q * p_y**q * ce_grads)


def test_ema_update_and_classwise_normalisation_by_hand():
    targets = torch.tensor([0, 0, 1, 1])
    ema = PerSampleEMA(targets, num_classes=2, alpha=0.7)
    ema.update(torch.tensor([0, 2]), torch.tensor([2.0, 4.0]))  # first visits store raw losses
    torch.testing.assert_close(ema.values, torch.tensor([2.0, 0.0, 4.0, 0.0]))
    ema.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    # sample 0: 0.7 * 2 + 0.3 * 1 = 1.7 ; sample 1: first visit -> 3
    torch.testing.assert_close(ema.values, torch.tensor([1.7, 3.0, 4.0, 0.0]))
    # class 0 max = 3, class 1 max = 4
    torch.testing.assert_close(ema.normalized(torch.tensor([0, 1, 2, 3])), torch.tensor([1.7 / 3, 1.0, 1.0, 0.0]))

    other = PerSampleEMA(targets, num_classes=2, alpha=0.7)
    other.update(torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    weight = relative_difficulty(ema, other, torch.tensor([0, 2]))
    # l_b = 1.7/3 and 1.0 ; l_d = 1/1 and 2/4
    expected = torch.tensor([(1.7 / 3) / (1.7 / 3 + 1 + 1e-8), 1.0 / (1.0 + 0.5 + 1e-8)])
    torch.testing.assert_close(weight, expected)


class FixedPredictor(torch.nn.Module):
    """Predicts class 0 for every image whose first pixel is 0, class 1 otherwise."""

    def forward(self, x):
        first = x.flatten(1)[:, 0]
        return torch.stack([(first == 0).float(), (first != 0).float()], dim=1) * 5


class ListView:
    def __init__(self, x, y, augment_calls):
        self.x, self.y, self.augment_calls = x, y, augment_calls

    def batches(self, batch_size, augment):
        self.augment_calls.append(augment)
        for start in range(0, len(self.y), batch_size):
            index = torch.arange(start, min(start + batch_size, len(self.y)))
            yield Batch(index, self.x[index], self.y[index])


def test_jtt_error_set_is_exactly_the_misclassified_samples_and_upsamples_them():
    x = torch.zeros(10, 1, 2, 2)
    x[[1, 4, 7], 0, 0, 0] = 1.0
    y = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1, 1, 0])  # predicted 1 at 1, 4, 7 and 0 elsewhere: only 8 is wrong
    calls = []
    errors = error_set(FixedPredictor(), ListView(x, y, calls), batch_size=4)
    assert sorted(errors.tolist()) == [8]
    assert calls == [False], "the error set is computed without augmentation"

    y[1] = 0
    errors = error_set(FixedPredictor(), ListView(x, y, calls), batch_size=4)
    assert sorted(errors.tolist()) == [1, 8]
    indices = upsampled_indices(10, errors, lambda_up=30)
    counts = torch.bincount(indices, minlength=10)
    assert counts[1] == counts[8] == 31 and counts.sum() == 10 + 2 * 30
    order = epoch_order(10, Sampling(indices=indices), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(torch.bincount(order, minlength=10), counts)


def test_dfa_swap_keeps_intrinsic_half_and_permutes_bias_half():
    z_i = torch.randn(4, 3, requires_grad=True)
    z_b = torch.randn(4, 3, requires_grad=True)
    perm = torch.tensor([2, 0, 3, 1])
    conflict, align = swap_features(z_i, z_b, perm)
    torch.testing.assert_close(conflict[:, :3], z_i)
    torch.testing.assert_close(conflict[:, 3:], z_b[perm])
    torch.testing.assert_close(align[:, :3], z_i)
    torch.testing.assert_close(align[:, 3:], z_b[perm])
    # Gradients: the intrinsic head's input reaches z_i only, the bias head's input z_b only.
    (g_i, g_b) = torch.autograd.grad(conflict.sum(), (z_i, z_b), allow_unused=True)
    assert g_b is None or torch.all(g_b == 0)
    (g_i, g_b) = torch.autograd.grad(align.sum(), (z_i, z_b), allow_unused=True)
    assert g_i is None or torch.all(g_i == 0)


def test_dfa_schedule_is_the_authors_loop_scaled_down(monkeypatch):
    """The authors' 50k-iteration loop divided by 1000: curriculum and LR step 10 (10k), gamma 0.5. Steps
    count from 0; the LR is stepped after each update from step 10 on, and features swap when step > 10."""
    import methods.dfa

    swaps = []
    real_swap = methods.dfa.swap_features

    def counting(*args):
        swaps.append(dfa.step)  # incremented just before the swap: the 0-based step is dfa.step - 1
        return real_swap(*args)

    monkeypatch.setattr(methods.dfa, "swap_features", counting)
    hp = {"model": "mlp16", "optimizer": "adam", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.0, "epochs": 1,
          "batch_size": 4, "lr_decay_step": 0, "lr_decay_gamma": 1.0, **METHODS["dfa"].HPARAMS,
          "lr_schedule": "dfa", "curriculum_step": 10, "dfa_lr_decay_step": 10, "dfa_lr_gamma": 0.5}
    dfa = METHODS["dfa"](hp, context())
    batch = Batch(torch.arange(4), torch.rand(4, 3, 28, 28), torch.tensor([0, 1, 2, 0]))
    lr_at = {}
    for step in range(50):
        lr_at[step] = dfa.optimizers["intrinsic"].param_groups[0]["lr"]
        assert dfa.optimizers["bias"].param_groups[0]["lr"] == lr_at[step]
        out = dfa.update(batch)
        assert (out["swap_loss"] > 0) == (step > 10)
    assert [lr_at[s] for s in (0, 10, 20, 30, 40)] == pytest.approx([0.01, 0.01, 0.005, 0.0025, 0.00125])
    assert lr_at[19] == 0.01 and lr_at[20] == 0.005
    assert swaps[0] - 1 == 11 and len(swaps) == 50 - 11


def test_dfa_runs_the_authors_budget_on_their_datasets():
    from bench.hparams import resolve_hparams
    from datasets import DATASETS

    for dataset, gamma in (("cmnist-lff", 0.5), ("cifar10c", 0.5), ("bffhq", 0.1)):
        hp = resolve_hparams(METHODS["dfa"], DATASETS[dataset], 0.005, "paper", None, {})
        budget = (hp["iterations"], hp["drop_last"], hp["lr_schedule"], hp["dfa_lr_gamma"])
        assert budget == (50_000, True, "dfa", gamma)
        assert (hp["curriculum_step"], hp["dfa_lr_decay_step"], hp["oracle_every_steps"]) == (10_000, 10_000, 500)
    ctx = context(n=60_000)
    hp = resolve_hparams(METHODS["dfa"], DATASETS["cmnist-lff"], 0.01, "paper", None, {})
    (stage,) = METHODS["dfa"](hp, ctx).stages()
    assert (stage.steps, stage.epochs) == (50_000, 214)  # 234 full batches of 256 per epoch


def test_pgd_sampling_frequencies_match_probabilities():
    scores = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.0, 8.0])
    probabilities = sampling_probabilities(scores)
    assert probabilities[4] > 0, "scores are clamped at 1e-8"
    torch.testing.assert_close(probabilities.sum(), torch.tensor(1.0, dtype=torch.float64))
    draws = torch.cat([
        epoch_order(6, Sampling(weights=probabilities), torch.Generator().manual_seed(seed), torch.device("cpu"))
        for seed in range(5000)
    ])
    observed = np.bincount(draws.numpy(), minlength=6)
    expected = probabilities.numpy() * len(draws)
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 0.001
    assert observed[4] < 5


@pytest.mark.parametrize("name", ["erm", "lff", "jtt", "dfa", "lc", "dpr", "pgd"])
def test_methods_train_on_a_batch_without_bias_labels(name, device):
    hp = {"model": "mlp", "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "epochs": 1,
          "batch_size": 8, "lr_decay_step": 0, "lr_decay_gamma": 1.0, **METHODS[name].HPARAMS}
    method = METHODS[name](hp, context(device=device))
    assert "bias" not in RunContext.__dataclass_fields__
    index = torch.arange(8, device=device)
    out = method.update(Batch(index, torch.rand(8, 3, 28, 28, device=device), index % 3))
    assert torch.isfinite(out["loss"]) and 0 <= out["acc"] <= 1
