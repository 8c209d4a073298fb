"""ResNet-18 (torchvision, from scratch) training step on cifar10c-sized inputs at batch 256, as the
cifar10c default protocol runs it: batched crop/flip + normalisation, then forward, backward, Adam step.
The model's own forward+backward on device-resident random tensors is timed in the same run."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datasets.augment import CropFlipAugmentation
from models import build_model

BATCH = 256


def make():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, (3, 32, 32)).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def step(model, optimizer, x, y):
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def test_resnet18_train_step(benchmark):
    model, optimizer = make()
    images = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (BATCH,))
    generator = torch.Generator().manual_seed(0)
    augment = CropFlipAugmentation(4)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)

    def pipeline_step():
        x = (augment(images.float() / 255, generator) - mean) / std
        step(model, optimizer, x, y)

    step(model, optimizer, torch.randn(BATCH, 3, 32, 32), y)  # warm-up
    benchmark.pedantic(pipeline_step, rounds=5, iterations=1)
    benchmark.extra_info["batch"] = BATCH
    benchmark.extra_info["threads"] = torch.get_num_threads()
