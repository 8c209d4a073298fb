"""LfF's MLP for Colored MNIST (Nam et al., NeurIPS 2020): flatten, three hidden layers of 100 with
ReLU, then a linear classifier. ``hidden`` sets the width of the last hidden layer (DFA uses 16-d
features for its encoders)."""

from __future__ import annotations

import math

from torch import nn

from models.base import Classifier


def build_mlp(num_classes: int, input_shape: tuple[int, int, int], feature_dim: int = 100) -> Classifier:
    encoder = nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 100),
        nn.ReLU(),
        nn.Linear(100, 100),
        nn.ReLU(),
        nn.Linear(100, feature_dim),
        nn.ReLU(),
    )
    return Classifier(encoder, feature_dim, num_classes)
