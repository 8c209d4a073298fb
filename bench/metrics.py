"""Evaluation on a device split: loss, accuracy, and accuracy by (target, bias) group."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.data import DeviceSplit
from methods.base import inference_batch_size


@torch.no_grad()
def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor], split: DeviceSplit, num_classes: int
) -> dict[str, float | None]:
    """Mean CE loss, accuracy, bias-aligned / bias-conflicting accuracy, worst-group accuracy over the
    (target, bias) groups present, and the mean of the groups' accuracies (``cell_mean_acc``: LfF's logged
    metric, the mean over its 10 x 10 accuracy matrix, which weights every cell equally). Everything stays
    on the device until one transfer at the end.
    Accuracies are fractions in [0, 1]; a metric with no samples (e.g. no aligned samples) is None."""
    device = split.targets.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = []
    for index in torch.arange(len(split), device=device).split(inference_batch_size(device)):
        logits = predict(split.inputs(index)).float()
        target = split.targets[index]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct.append(logits.argmax(1) == target)
    hits = torch.cat(correct).double()
    aligned = split.targets == split.biases
    groups = split.targets * num_classes + split.biases
    group_count = torch.bincount(groups, minlength=num_classes * num_classes)
    group_hits = torch.bincount(groups, weights=hits, minlength=num_classes * num_classes)
    present = group_count > 0
    group_acc = group_hits[present] / group_count[present]
    worst = group_acc.min()
    cells = torch.where(present, group_hits / group_count.clamp(min=1), torch.nan)
    stats = torch.cat([torch.stack([
        loss_sum / len(split),
        hits.mean(),
        (hits * aligned).sum(), aligned.sum().double(),
        (hits * ~aligned).sum(), (~aligned).sum().double(),
        worst,
        group_acc.mean(),
    ]), cells]).tolist()  # one transfer
    loss, acc, aligned_hits, aligned_n, conflict_hits, conflict_n, worst_acc, cell_mean = stats[:8]
    cell_values = [None if v != v else v for v in stats[8:]]  # NaN: an empty cell
    return {
        "loss": loss,
        "acc": acc,
        "aligned_acc": aligned_hits / aligned_n if aligned_n else None,
        "conflicting_acc": conflict_hits / conflict_n if conflict_n else None,
        "worst_group_acc": worst_acc,
        "cell_mean_acc": cell_mean,
        # Accuracy per (target, bias) cell, rows targets; None for an empty cell.
        "group_acc": [cell_values[row * num_classes:(row + 1) * num_classes] for row in range(num_classes)],
    }
