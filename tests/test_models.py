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
