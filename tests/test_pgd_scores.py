"""PGD's closed-form per-sample gradient scores against a slow per-sample backward loop (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from methods.base import Batch
from methods.pgd_scores import dataset_scores, last_layer_gradient_scores, parameter_gradient_scores
from models import build_model

SHAPES = {"mlp": (3, 28, 28), "conv": (3, 28, 28), "resnet18": (3, 32, 32)}


def loop_scores(model, x, y, p, parameter="fc.weight"):
    """The authors' way: one backward pass per sample, then the p-norm of that sample's gradient."""
    weight = dict(model.named_parameters())[parameter]
    scores = []
    for i in range(len(y)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        scores.append(torch.linalg.vector_norm(weight.grad.flatten(), ord=p))
    return torch.stack(scores)


@pytest.fixture(scope="module", params=sorted(SHAPES))
def model_and_batch(request):
    torch.manual_seed(0)
    model = build_model(request.param, 10, SHAPES[request.param]).double()
    # A few SGD steps so BN statistics and weights are not at initialisation.
    x = torch.rand(6, *SHAPES[request.param], dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 7, 9, 1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    return model, x, y


@pytest.mark.parametrize("p", [2.0, 0.7])
def test_closed_form_matches_per_sample_backward(model_and_batch, p, device):
    model, x, y = model_and_batch
    expected = loop_scores(model, x, y, p)
    got = last_layer_gradient_scores(copy.deepcopy(model).to(device), x.to(device), y.to(device), p).cpu()
    relative = ((got - expected).abs() / expected.abs()).max().item()
    assert relative < 1e-9, relative


@pytest.mark.parametrize("p", [2.0, 0.7])
def test_torch_func_path_matches_the_loop_for_another_layer(p):
    torch.manual_seed(1)
    model = build_model("mlp", 10, (3, 28, 28)).double().eval()
    x = torch.rand(5, 3, 28, 28, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4, 5])
    for parameter in ("fc.weight", "encoder.3.weight"):
        expected = loop_scores(model, x, y, p, parameter)
        torch.testing.assert_close(parameter_gradient_scores(model, x, y, parameter, p), expected, rtol=1e-9, atol=0)
    torch.testing.assert_close(parameter_gradient_scores(model, x, y, "fc.weight", p),
                               last_layer_gradient_scores(model, x, y, p), rtol=1e-9, atol=0)


def test_unknown_parameter_is_named():
    model = build_model("mlp", 10, (3, 28, 28))
    with pytest.raises(KeyError, match=r"no parameter 'fc\.nope'"):
        parameter_gradient_scores(model, torch.rand(1, 3, 28, 28), torch.tensor([0]), "fc.nope")


def test_dataset_scores_fold_batch_norm_without_changing_them(model_and_batch):
    model, x, y = model_and_batch
    batches = [Batch(torch.arange(len(y)), x, y)]
    unfolded = dataset_scores(model, batches, len(y), 0.7, fold_batch_norm=False)
    torch.testing.assert_close(unfolded, last_layer_gradient_scores(model, x, y, 0.7), rtol=1e-12, atol=0)
    torch.testing.assert_close(dataset_scores(model, batches, len(y), 0.7), unfolded, rtol=1e-10, atol=0)


def test_dataset_scores_do_not_fold_a_model_in_training_mode():
    """Folding holds only for running statistics: in training mode the model is scored as it is."""
    torch.manual_seed(0)
    model = build_model("conv", 10, (3, 28, 28))
    x, y = torch.rand(8, 3, 28, 28), torch.arange(8)
    batches = [Batch(torch.arange(8), x, y)]
    torch.manual_seed(1)
    folded_request = dataset_scores(model, batches, 8, 0.7, fold_batch_norm=True)
    torch.manual_seed(1)
    plain = dataset_scores(model, batches, 8, 0.7, fold_batch_norm=False)
    assert model.training
    assert torch.equal(folded_request, plain)
