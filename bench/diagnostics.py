"""Diagnostics every run records, for analysis only: bias labels enter here and nowhere in training or
selection.

- Conflict detection, the claim PGD's paper rests on: how well a per-sample signal ranks the
  bias-conflicting training samples first. Each method's own signal (``Method.conflict_signals``: PGD's
  sampling probabilities, LfF's and DFA's final relative-difficulty weights, JTT's error set) and, for
  every method, the selected model's final per-sample training loss as the common baseline. ROC-AUC and
  average precision from ``sklearn.metrics``; a set (JTT's error set) also gets precision, recall, size.
- Bias probe: a logistic regression (scikit-learn) on the selected model's penultimate test features
  predicting the bias label, fit on one half of the test split and scored on the other: how much of the
  bias the representation still carries (against the majority-label rate of the scored half).
The group accuracy map is part of every evaluation (``bench.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import DeviceSplit
from methods.base import inference_batch_size

PR_POINTS = 51  # recall grid of the stored precision-recall curve


def ranking_quality(scores: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """ROC-AUC and average precision of ``scores`` (higher = more likely positive) against ``positive``,
    with the precision-recall curve at PR_POINTS recall levels (the best precision at or beyond each
    recall level, the curve's usual interpolation). None where the labels are all one class."""
    # scikit-learn is imported where used: a second of start-up for every process, which only the end of a
    # run needs (a sweep's driver, a worker's import, a killed run never get here).
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    positive = positive.astype(bool)
    result: dict[str, Any] = {"prevalence": float(positive.mean()) if len(positive) else None}
    if positive.all() or not positive.any():
        return {**result, "roc_auc": None, "average_precision": None, "pr_curve": None}
    precision, recall, _ = precision_recall_curve(positive, scores)
    levels = np.linspace(0.0, 1.0, PR_POINTS)
    best = [float(precision[recall >= level].max()) for level in levels]
    return {
        **result,
        "roc_auc": float(roc_auc_score(positive, scores)),
        "average_precision": float(average_precision_score(positive, scores)),
        "pr_curve": [[float(r), p] for r, p in zip(levels, best, strict=True)],
    }


def set_quality(selected: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """A selected set (e.g. JTT's error set) against the positives: precision, recall, size, plus the
    ranking figures of its 0/1 indicator."""
    selected, positive = selected.astype(bool), positive.astype(bool)
    hits = int((selected & positive).sum())
    return {
        **ranking_quality(selected.astype(np.float64), positive),
        "size": int(selected.sum()),
        "precision": hits / int(selected.sum()) if selected.any() else None,
        "recall": hits / int(positive.sum()) if positive.any() else None,
    }


def bias_probe(features: np.ndarray, biases: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Logistic regression predicting ``biases`` from ``features``: fit on a random half, scored on the
    other. ``chance``: the majority label's share of the scored half."""
    order = np.random.default_rng(seed).permutation(len(biases))
    fit, score = order[: len(order) // 2], order[len(order) // 2:]
    result = {"n_fit": len(fit), "n_score": len(score), "feature_dim": int(features.shape[1])}
    if len(np.unique(biases[fit])) < 2 or len(score) == 0:
        return {**result, "accuracy": None, "chance": None}
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(features[fit], biases[fit])
    chance = np.bincount(biases[score]).max() / len(score)
    return {**result, "accuracy": float(probe.score(features[score], biases[score])), "chance": float(chance)}


@torch.no_grad()
def _per_batch(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], split: DeviceSplit) -> torch.Tensor:
    device = split.targets.device
    parts = [fn(split.inputs(index), index) for index in torch.arange(len(split), device=device).split(
        inference_batch_size(device))]
    return torch.cat(parts) if parts else torch.empty(0, device=device)


def per_sample_loss(predict: Callable[[torch.Tensor], torch.Tensor], split: DeviceSplit) -> torch.Tensor:
    """Cross-entropy of each sample of ``split`` (no augmentation), in dataset order."""
    return _per_batch(lambda x, index: F.cross_entropy(predict(x).float(), split.targets[index], reduction="none"),
                      split)


def conflict_detection(signals: dict[str, torch.Tensor], conflicting: torch.Tensor) -> dict[str, Any]:
    """Each signal (float scores, or a bool set) against the training split's conflicting samples."""
    positive = conflicting.cpu().numpy()
    out = {}
    for name, signal in signals.items():
        values = signal.detach().cpu()
        if values.dtype == torch.bool:
            out[name] = set_quality(values.numpy(), positive)
        else:
            out[name] = ranking_quality(values.double().numpy(), positive)
    return out


def run_diagnostics(method, train: DeviceSplit, test: DeviceSplit) -> dict[str, Any]:
    """The diagnostics of a trained method (models in eval mode, the selected checkpoint restored)."""
    conflicting = train.targets != train.biases
    signals = {"train_loss": per_sample_loss(method.predict, train), **method.conflict_signals()}
    result: dict[str, Any] = {"conflict_detection": conflict_detection(signals, conflicting)}
    with torch.no_grad():
        defined = len(test) > 0 and method.representation(test.inputs(torch.arange(1, device=test.targets.device)))
    if defined is None or defined is False:
        result["bias_probe"] = None  # the method names no representation (``Method.representation``)
    else:
        features = _per_batch(lambda x, _: method.representation(x).float().flatten(1), test)
        result["bias_probe"] = bias_probe(features.cpu().numpy(), test.biases.cpu().numpy())
    return result
