"""PGD scoring of the 54k cmnist training images: the closed form (one batched forward pass) against the
authors' scoring, one backward pass per sample, on the same CONV model and the same augmented batches.

The per-sample loop is timed on the first ``LOOP_SAMPLES`` images only and its per-sample time is scaled
to 54k; the closed form is timed on all 54k images. Both see the same first batches, so the benchmark
also checks that their scores agree."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bench.data import iterate_batches
from datasets.augment import PGDColoredMNISTAugmentation
from methods.pgd_scores import dataset_scores, scoring_batch_size
from models import build_model

LOOP_SAMPLES = 2048
BATCH = 128  # the authors' training loader, which their scoring loop reads
SCORING_BATCH = scoring_batch_size(torch.device("cpu"), fold_batch_norm=True)


def biased_model():
    torch.manual_seed(0)
    return build_model("conv", 10, (3, 28, 28)).eval()


def augmented_batches(split, n: int):
    """The first ``n`` training images, augmented ``SCORING_BATCH`` at a time: the same images for both."""
    generator = torch.Generator().manual_seed(0)
    return iterate_batches(split, torch.arange(n), SCORING_BATCH, PGDColoredMNISTAugmentation(), generator)


def closed_form(model, split) -> torch.Tensor:
    return dataset_scores(model, augmented_batches(split, len(split)), len(split), p=0.7)


def per_sample_loop(model, split, n: int) -> torch.Tensor:
    """The authors' scoring (``trainer/learner.py`` with ``module/gradient.py``), step for step: inputs
    that require grad, penultimate features copied to the host, then per sample ``optimizer.zero_grad()``
    and one ``backward(retain_graph=True)``, a hook on ``fc.weight`` copying each gradient into a row of
    an (n, 640) matrix; the p-norms of the rows at the end. Each backward pass runs through the graph of
    the whole batch of ``BATCH``, which is what makes the loop's cost per sample grow with the batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-3)
    gradients = torch.zeros(n, model.fc.weight.numel())
    features = torch.zeros(n, model.feature_dim)
    saved = 0

    def save_gradient(gradient: torch.Tensor) -> None:
        nonlocal saved
        gradients[saved] = gradient.reshape(1, -1).detach().cpu()
        saved += 1

    hook = model.fc.weight.register_hook(save_gradient)
    start = 0
    for augmented in augmented_batches(split, n):
        for x, y in zip(augmented.x.split(BATCH), augmented.y.split(BATCH), strict=True):
            penultimate = model.features(x.requires_grad_(True))
            features[start:start + len(penultimate)] = penultimate.detach().cpu()
            start += len(penultimate)
            losses = F.cross_entropy(model.fc(penultimate), y, reduction="none")
            for i in range(len(losses)):
                optimizer.zero_grad()
                losses[i].backward(retain_graph=True)
    hook.remove()
    return torch.linalg.vector_norm(gradients, ord=0.7, dim=1)


def test_pgd_scoring_closed_form_vs_loop(benchmark, cmnist_train):
    model = biased_model()
    start = time.perf_counter()
    loop_scores = per_sample_loop(model, cmnist_train, LOOP_SAMPLES)
    loop_seconds = time.perf_counter() - start
    scores = benchmark.pedantic(closed_form, args=(model, cmnist_train), rounds=3, iterations=1)
    torch.testing.assert_close(scores[:LOOP_SAMPLES], loop_scores, rtol=1e-4, atol=0)
    loop_full = loop_seconds / LOOP_SAMPLES * len(cmnist_train)
    benchmark.extra_info["loop_seconds_measured"] = loop_seconds
    benchmark.extra_info["loop_samples"] = LOOP_SAMPLES
    benchmark.extra_info["loop_seconds_54k_scaled"] = loop_full
    benchmark.extra_info["speedup"] = loop_full / benchmark.stats.stats.median
