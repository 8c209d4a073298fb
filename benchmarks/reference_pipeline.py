"""A cmnist training epoch built like the PGD authors' pipeline, as the speed baseline: a torch
DataLoader (2 workers, batch 128, shuffled) over a dataset that applies the per-sample PIL transforms
(ToPILImage, RandomResizedCrop(28, scale=(0.9, 1.1)), ColorJitter(hue=0.05, saturation=0.05),
RandomRotation(+-10, nearest), ToTensor), feeding the same CONV net and SGD step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

AUTHORS_TRANSFORM = T.Compose([
    T.ToPILImage(),
    T.RandomResizedCrop(28, scale=(0.9, 1.1)),
    T.ColorJitter(hue=0.05, saturation=0.05),
    T.RandomRotation((-10, 10), interpolation=T.InterpolationMode.NEAREST),
    T.ToTensor(),
])


class PerSampleDataset(Dataset):
    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return AUTHORS_TRANSFORM(self.images[index]), self.targets[index], index


def reference_epoch(images: torch.Tensor, targets: torch.Tensor, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, workers: int = 2) -> int:
    loader = DataLoader(PerSampleDataset(images, targets), batch_size=128, shuffle=True, num_workers=workers)
    model.train()
    seen = 0
    for x, y, _ in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


