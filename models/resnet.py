"""torchvision's ResNet-18, randomly initialised, as DFA uses it for CIFAR10C and BFFHQ
(Lee et al., NeurIPS 2021): the standard ImageNet stem, 512-d pooled features."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

from models.base import Classifier


def build_resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> Classifier:
    backbone = resnet18(weights=None)
    backbone.fc = nn.Identity()
    return Classifier(backbone, 512, num_classes)
