"""Bias labels by exact per-class counts, as the LfF code assigns them (``make_attr_labels``).

Within class c (samples in dataset order), the fraction 1 - r goes to bias c and r / (K - 1) to each
other bias; the k-th sample of the class gets the first bias value whose rounded cumulative milestone
n_c * cumsum(ratios)[b] exceeds k. Counts are therefore exact, not drawn."""

from __future__ import annotations

import numpy as np


def exact_bias_labels(targets: np.ndarray, conflict_ratio: float, num_classes: int) -> np.ndarray:
    aligned = 1.0 - conflict_ratio
    ratios = aligned * np.eye(num_classes) + conflict_ratio / (num_classes - 1) * (1 - np.eye(num_classes))
    counts = np.bincount(targets, minlength=num_classes)
    milestones = np.round(counts[:, None] * np.cumsum(ratios, axis=1))
    biases = np.empty_like(targets)
    for label in range(num_classes):
        positions = np.flatnonzero(targets == label)
        rank = np.arange(len(positions))
        biases[positions] = np.argmax(milestones[label][None, :] > rank[:, None], axis=1)
    return biases.astype(np.int64)
