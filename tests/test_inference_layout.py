"""``inference_layout``: channels_last convolution weights for passes without gradients on the CPU,
with every parameter given back its layout, values and identity afterwards; off under portable
numerics."""

from __future__ import annotations

import torch

from methods.base import inference_layout, set_channels_last_inference
from models import build_model


def test_inference_layout_is_temporary_and_changes_no_value():
    torch.manual_seed(0)
    model = build_model("conv", 10, (3, 28, 28)).eval()
    x = torch.rand(16, 3, 28, 28)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    identities = {name: id(p) for name, p in model.named_parameters()}
    with torch.no_grad():
        reference = model(x)
        with inference_layout(model):
            conv_weights = [p for p in model.parameters() if p.dim() == 4]
            assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
            assert not any(p.is_contiguous() for p in conv_weights)
            output = model(x)
    torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        assert p.is_contiguous()
        assert id(p) == identities[name]
        assert torch.equal(p, before[name])


def test_inference_layout_leaves_other_devices_alone():
    model = build_model("conv", 10, (3, 28, 28)).to("meta")
    with inference_layout(model):
        assert all(p.is_contiguous() for p in model.parameters())


def test_inference_layout_keeps_a_model_already_in_channels_last():
    model = build_model("conv", 10, (3, 28, 28)).to(memory_format=torch.channels_last)
    with inference_layout(model):
        pass
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)


def test_inference_layout_is_off_when_switched_off():
    """As under portable numerics, whose check across CPU vendors failed on channels_last's logits."""
    model = build_model("conv", 10, (3, 28, 28))
    set_channels_last_inference(False)
    try:
        with inference_layout(model):
            assert all(p.is_contiguous() for p in model.parameters())
    finally:
        set_channels_last_inference(True)
    with inference_layout(model):
        assert not all(p.is_contiguous() for p in model.parameters())
