"""torchvision's ResNet-18, randomly initialised, as DFA uses it for CIFAR10C and BFFHQ
(Lee et al., NeurIPS 2021): the standard ImageNet stem, 512-d pooled features."""

from __future__ import annotations

from torch import nn

from models.base import Classifier


def build_resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> Classifier:
    # Imported here: torchvision's models pull in torch._dynamo, about 2 s of every process's start-up, and
    # most runs (every Colored MNIST one) never build a ResNet.
    from torchvision.models import resnet18

    backbone = resnet18(weights=None)
    backbone.fc = nn.Identity()
    return Classifier(backbone, 512, num_classes)
