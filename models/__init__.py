"""Model registry: name -> builder(num_classes, input_shape) returning a ``Classifier``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from models.base import Classifier
from models.conv import build_conv
from models.mlp import build_mlp
from models.resnet import build_resnet18

MODELS: dict[str, Callable[[int, tuple[int, int, int]], Classifier]] = {
    "conv": build_conv,
    "mlp": build_mlp,
    "mlp16": partial(build_mlp, feature_dim=16),  # DFA's Colored MNIST encoder: 16-d features
    "resnet18": build_resnet18,
}


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> Classifier:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, input_shape)


__all__ = ["MODELS", "Classifier", "build_model"]
