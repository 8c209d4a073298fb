"""Device-resident splits and index-tensor batching.

A split lives on the training device as one uint8 tensor; a batch is an index tensor, gathered,
converted to float and augmented on the device. No per-sample Python or PIL work in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from datasets import Split
from datasets.base import Augmentation
from methods import Batch
from methods.base import Sampling


class DeviceSplit:
    """A split on the device. ``transform``: the dataset's deterministic input transform (e.g. resize);
    ``normalize`` = (mean, std) per channel, applied after augmentation."""

    def __init__(self, split: Split, device: torch.device,
                 normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, channels_last: bool = False):
        self.transform = transform
        self.channels_last = channels_last
        self.images = torch.from_numpy(split.images).to(device)
        self.targets = torch.from_numpy(split.targets).to(device)
        self.biases = torch.from_numpy(split.biases).to(device)
        self.normalize = None
        if normalize is not None:
            mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in normalize)
            self.normalize = (mean, std)

    def __len__(self) -> int:
        return len(self.targets)

    def inputs(self, index: torch.Tensor, augment: Augmentation | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Model inputs for ``index``: float in [0, 1], transformed, augmented if asked, normalised."""
        x = self.images[index].float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        if augment is not None:
            x = augment(x, generator)
        if self.normalize is not None:
            x = (x - self.normalize[0]) / self.normalize[1]
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def iterate_batches(
    split: DeviceSplit,
    order: torch.Tensor,
    batch_size: int,
    augment: Augmentation | None,
    generator: torch.Generator,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """Batches of ``order`` in turn; ``drop_last`` skips a last incomplete batch (as DataLoader's)."""
    for index in order.split(batch_size):
        if drop_last and len(index) < batch_size:
            return
        yield Batch(index, split.inputs(index, augment, generator), split.targets[index])


def epoch_order(n: int, sampling: Sampling | None, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The sample indices of one epoch, in order (see ``methods.base.Sampling``)."""
    if sampling is None:
        return torch.randperm(n, generator=generator, device=device)
    if sampling.indices is not None:
        indices = sampling.indices.to(device)
        return indices[torch.randperm(len(indices), generator=generator, device=device)]
    weights = sampling.weights.to(device, torch.float64 if device.type == "cpu" else torch.float32)
    return torch.multinomial(weights, n, replacement=True, generator=generator)
