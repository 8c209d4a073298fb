"""Evaluation metrics against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import DeviceSplit
from bench.metrics import evaluate
from datasets import Split


def test_group_accuracies_by_hand(device):
    targets = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    biases = np.array([0, 0, 1, 1, 1, 0, 0, 1])  # aligned: 0,1,3,4,6,7 ; conflicting: 2,5
    predictions = np.array([0, 1, 0, 1, 1, 0, 0, 1])  # wrong: 1 (aligned), 5 (conflicting)
    split = DeviceSplit(Split(np.zeros((8, 1, 1, 1), np.uint8), targets, biases), device)
    logits = torch.nn.functional.one_hot(torch.tensor(predictions, device=device), 2).float() * 10

    stats = evaluate(lambda x: logits[: len(x)], split, num_classes=2)
    assert stats["acc"] == pytest.approx(6 / 8)
    assert stats["aligned_acc"] == pytest.approx(5 / 6)
    assert stats["conflicting_acc"] == pytest.approx(1 / 2)
    # groups (0,0): 2/3, (0,1): 1/1, (1,1): 3/3, (1,0): 0/1
    assert stats["worst_group_acc"] == pytest.approx(0.0)
    # LfF's metric: every cell counts once, whatever its size
    assert stats["cell_mean_acc"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    expected_loss = torch.nn.functional.cross_entropy(logits.cpu(), torch.tensor(targets)).item()
    assert stats["loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_no_aligned_samples_gives_none():
    split = DeviceSplit(Split(np.zeros((2, 1, 1, 1), np.uint8), np.array([0, 1]), np.array([1, 0])),
                        torch.device("cpu"))
    stats = evaluate(lambda x: torch.zeros(len(x), 2), split, num_classes=2)
    assert stats["aligned_acc"] is None
    assert stats["conflicting_acc"] == pytest.approx(0.5)
