"""Any timm architecture as a ``Classifier``: ``timm/<name>`` in the model registry.

timm builds the network without its classifier (``num_classes=0``), so its forward pass is timm's own
``forward_features`` then ``forward_head(pre_logits=True)``: the pooled penultimate features, of width
``num_features``. The suite's ``fc`` sits on top, so every method sees the same shape as on the built-in
backbones (DFA's encoders and heads, PGD's closed-form last-layer scores work unchanged).

``pretrained`` loads timm's weights: downloaded from the Hugging Face hub when online, read from its
cache offline; a missing cache is a one-line ``ModelError`` naming the model and the cache folder.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from models.base import Classifier

PREFIX = "timm/"
FIND_NAMES = "list names with: python -c \"import timm; print(timm.list_models('*resnet*'))\""


class ModelError(ValueError):
    """A model that cannot be built as asked; the message is one line."""


class TimmFeatures(nn.Module):
    """A timm network without its classifier: images -> pooled penultimate features."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(self.network.forward_features(x), pre_logits=True)


def _weights_cache() -> str:
    from huggingface_hub import constants

    return os.fspath(constants.HF_HUB_CACHE)


def build_timm(name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained: bool = False) -> Classifier:
    import timm

    if not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r}; {FIND_NAMES}")
    try:
        network = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=input_shape[0])
    except (OSError, RuntimeError) as error:  # huggingface_hub's "not in the local cache" is an OSError
        if not pretrained:
            raise
        raise ModelError(f"pretrained weights of timm model {name!r} are not available offline "
                         f"(timm looks for them in the Hugging Face cache {_weights_cache()}): "
                         f"{type(error).__name__}") from None
    return Classifier(TimmFeatures(network), int(network.num_features), num_classes)
