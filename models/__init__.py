"""Model registry: name -> builder(num_classes, input_shape) returning a ``Classifier``; ``timm/<name>`` is
any timm architecture (``models.timm_backbone``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from models.base import Classifier
from models.conv import build_conv
from models.mlp import build_mlp
from models.resnet import build_resnet18
from models.timm_backbone import PREFIX, ModelError, build_timm

MODELS: dict[str, Callable[[int, tuple[int, int, int]], Classifier]] = {
    "conv": build_conv,
    "mlp": build_mlp,
    "mlp16": partial(build_mlp, feature_dim=16),  # DFA's Colored MNIST encoder: 16-d features
    "resnet18": build_resnet18,
}


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained: bool = False) -> Classifier:
    if name.startswith(PREFIX):
        return build_timm(name[len(PREFIX):], num_classes, input_shape, pretrained)
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}, or {PREFIX}<name> for any "
                         "timm architecture")
    if pretrained:
        raise ModelError(f"pretrained weights exist for {PREFIX}<name> models only, not for {name!r}")
    return MODELS[name](num_classes, input_shape)


def check_model(name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained: bool = False) -> None:
    """Build the model and pass two blank images through it, so that a name, missing weights or an input
    size the architecture cannot take fail before any run starts, as one ``ModelError`` line."""
    model = build_model(name, num_classes, input_shape, pretrained).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except (RuntimeError, AssertionError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"model {name!r} cannot take {'x'.join(map(str, input_shape))} inputs: {detail}") from None


__all__ = ["MODELS", "Classifier", "ModelError", "build_model", "check_model"]
