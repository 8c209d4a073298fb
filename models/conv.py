"""PGD's CONV net for Colored MNIST (Ahn, Kim & Yun, ICLR 2023, official ``net.py``): three 4x4
convolutions 3->8->32->64 with batch norm, ReLU, dropout 0.5 and average pooling, then fc 64->classes.
The authors apply ReLU before BN in the last block; kept as they wrote it."""

from __future__ import annotations

from torch import nn

from models.base import Classifier
from models.layers import Dropout


def conv_encoder() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Dropout(0.5),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(8, 32, 4, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        Dropout(0.5),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(32, 64, 4, 1),
        nn.ReLU(),
        nn.BatchNorm2d(64),
        Dropout(0.5),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


def build_conv(num_classes: int, input_shape: tuple[int, int, int]) -> Classifier:
    return Classifier(conv_encoder(), 64, num_classes)
