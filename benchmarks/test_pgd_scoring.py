"""PGD scoring of the 54k cmnist training images: the closed form (one batched forward pass) against the
authors' method, one backward pass per sample, on the same CONV model and the same augmented batches.

The per-sample loop is timed on the first ``LOOP_SAMPLES`` images only (about 0.5 s per 100 samples
here) and its per-sample time is scaled to 54k; the closed form is timed on all 54k images."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bench.data import iterate_batches
from datasets.augment import PGDColoredMNISTAugmentation
from methods.base import inference_batch_size
from methods.pgd_scores import dataset_scores
from models import build_model

LOOP_SAMPLES = 2048
BATCH = 128


def biased_model():
    torch.manual_seed(0)
    return build_model("conv", 10, (3, 28, 28)).eval()


def closed_form(model, split) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    order = torch.arange(len(split))
    batch_size = inference_batch_size(torch.device("cpu"))
    batches = iterate_batches(split, order, batch_size, PGDColoredMNISTAugmentation(), generator)
    return dataset_scores(model, batches, len(split), p=0.7)


def per_sample_loop(model, split, n: int) -> torch.Tensor:
    """One backward pass per sample, gradient of the fc weight, p-norm: the official scoring."""
    generator = torch.Generator().manual_seed(0)
    scores = []
    for batch in iterate_batches(split, torch.arange(n), BATCH, PGDColoredMNISTAugmentation(), generator):
        losses = F.cross_entropy(model(batch.x), batch.y, reduction="none")
        for i in range(len(losses)):
            model.zero_grad()
            losses[i].backward(retain_graph=True)
            scores.append(torch.linalg.vector_norm(model.fc.weight.grad.flatten(), ord=0.7))
    return torch.stack(scores)


def test_pgd_scoring_closed_form_vs_loop(benchmark, cmnist_train):
    model = biased_model()
    start = time.perf_counter()
    per_sample_loop(model, cmnist_train, LOOP_SAMPLES)
    loop_seconds = time.perf_counter() - start
    benchmark.pedantic(closed_form, args=(model, cmnist_train), rounds=3, iterations=1)
    loop_full = loop_seconds / LOOP_SAMPLES * len(cmnist_train)
    benchmark.extra_info["loop_seconds_measured"] = loop_seconds
    benchmark.extra_info["loop_samples"] = LOOP_SAMPLES
    benchmark.extra_info["loop_seconds_54k_scaled"] = loop_full
    benchmark.extra_info["speedup"] = loop_full / benchmark.stats.stats.median
