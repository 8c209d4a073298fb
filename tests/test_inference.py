"""``fused_for_inference``: batch norms folded into the layer before them, ReLUs in place where safe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import Classifier, build_model
from models.inference import fused_for_inference

SHAPES = {"mlp": (3, 28, 28), "conv": (3, 28, 28), "resnet18": (3, 32, 32)}


def trained(name: str) -> Classifier:
    """A model a few SGD steps from initialisation, so batch-norm statistics are not the defaults."""
    torch.manual_seed(0)
    model = build_model(name, 10, SHAPES[name]).double()
    x = torch.rand(8, *SHAPES[name], dtype=torch.float64)
    y = torch.arange(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def in_place_relus(module: nn.Module) -> int:
    return sum(node.target is torch.relu_ for node in module.encoder.graph.nodes)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_fused_copy_computes_the_same_function(name):
    model = trained(name)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fused = fused_for_inference(model)
    assert model.training, "the original keeps its mode"
    model.eval()
    x = torch.rand(5, *SHAPES[name], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused.features(x), model.features(x), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fused(x), model(x), rtol=1e-10, atol=1e-12)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_conv_net_loses_the_batch_norms_after_convolutions():
    """The CONV net has three batch norms; the last follows a ReLU, not a convolution, and stays."""
    model = trained("conv")
    fused = fused_for_inference(model)
    assert (batch_norms(model), batch_norms(fused)) == (3, 1)
    assert in_place_relus(fused) == 3


def test_resnet18_loses_every_batch_norm():
    model = trained("resnet18")
    assert batch_norms(model) == 20
    fused = fused_for_inference(model)
    assert batch_norms(fused) == 0
    assert in_place_relus(fused) == 17


class _ReluAndSkip(nn.Module):
    """relu(h) + h: the ReLU's input has another user, so an in-place ReLU would corrupt the sum."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return self.relu(h) + h


def test_relu_stays_out_of_place_when_its_input_is_used_again():
    torch.manual_seed(0)
    model = Classifier(_ReluAndSkip(), 4, 3).eval()
    fused = fused_for_inference(model)
    assert in_place_relus(fused) == 0
    x = torch.randn(16, 4)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


def test_relu_on_the_input_leaves_the_callers_tensor_alone():
    model = Classifier(nn.Sequential(nn.ReLU(), nn.Linear(4, 4)), 4, 3).eval()
    x = torch.randn(16, 4)
    original = x.clone()
    with torch.no_grad():
        fused_for_inference(model)(x)
    assert torch.equal(x, original)
