"""Model registry and the CPU dropout's law."""

from __future__ import annotations

import pytest
import torch

from models import MODELS, build_model
from models.layers import Dropout


@pytest.mark.parametrize("name, shape", [("conv", (3, 28, 28)), ("mlp", (3, 28, 28)), ("mlp16", (3, 28, 28)),
                                         ("resnet18", (3, 32, 32))])
def test_models_expose_features_and_last_layer(name, shape):
    model = build_model(name, 10, shape).eval()
    x = torch.rand(2, *shape)
    features = model.features(x)
    assert features.shape == (2, model.feature_dim)
    torch.testing.assert_close(model.fc(features), model(x))
    assert set(MODELS) == {"conv", "mlp", "mlp16", "resnet18"}


def test_cpu_dropout_keeps_with_probability_one_minus_p_and_rescales():
    torch.manual_seed(0)
    layer = Dropout(0.5).train()
    x = torch.ones(200_000)
    out = layer(x)
    kept = out != 0
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs(kept.float().mean().item() - 0.5) < 0.005
    x.requires_grad_(True)
    out = layer(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # gradient = the scaled mask
    layer.eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_cpu_dropout_flips_are_independent(p):
    """Neighbouring elements (bits of one random byte when p = 0.5) are kept independently, and a shape
    whose size is not a multiple of 8 is handled."""
    torch.manual_seed(1)
    kept = (Dropout(p).train()(torch.ones(50_001, 7)) != 0).float()
    keep = 1 - p
    assert abs(kept.mean().item() - keep) < 0.005
    for lag in (1, 3, 7, 8):
        both = (kept.flatten()[:-lag] * kept.flatten()[lag:]).mean().item()
        assert abs(both - keep * keep) < 0.005, lag
    patterns = (kept[:, :3] * torch.tensor([1.0, 2.0, 4.0])).sum(1).long().bincount(minlength=8).float()
    ones = patterns.new_tensor([bin(i).count("1") for i in range(8)])
    expected = len(kept) * keep**ones * (1 - keep) ** (3 - ones)
    assert float(((patterns - expected) ** 2 / expected).sum()) < 24.3  # chi-square, 7 dof, p = 0.001
