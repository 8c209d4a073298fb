"""Device-resident splits and index-tensor batching.

A split lives on the training device as one uint8 tensor; a batch is an index tensor, gathered,
converted to float and augmented on the device. No per-sample Python or PIL work in the loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from datasets import Split
from datasets.base import Augmentation
from methods import Batch
from methods.base import Sampling


class DeviceSplit:
    def __init__(self, split: Split, device: torch.device):
        self.images = torch.from_numpy(split.images).to(device)
        self.targets = torch.from_numpy(split.targets).to(device)
        self.biases = torch.from_numpy(split.biases).to(device)

    def __len__(self) -> int:
        return len(self.targets)

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index].float().div_(255.0)


def iterate_batches(
    split: DeviceSplit,
    order: torch.Tensor,
    batch_size: int,
    augment: Augmentation | None,
    generator: torch.Generator,
) -> Iterator[Batch]:
    for index in order.split(batch_size):
        x = split.images_at(index)
        if augment is not None:
            x = augment(x, generator)
        yield Batch(index, x, split.targets[index])


def epoch_order(n: int, sampling: Sampling | None, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The sample indices of one epoch, in order (see ``methods.base.Sampling``)."""
    if sampling is None:
        return torch.randperm(n, generator=generator, device=device)
    if sampling.indices is not None:
        indices = sampling.indices.to(device)
        return indices[torch.randperm(len(indices), generator=generator, device=device)]
    weights = sampling.weights.to(device, torch.float64 if device.type == "cpu" else torch.float32)
    return torch.multinomial(weights, n, replacement=True, generator=generator)
