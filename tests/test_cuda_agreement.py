"""CUDA against the CPU on the same computation: the same initial weights, the same batches, the same
number of optimiser steps give the same weights, scores and metrics within a stated tolerance.

A whole run cannot be compared number for number: its random draws (epoch order, augmentation, dropout)
come from the device's own generator, whose stream differs between the CPU and CUDA. These tests remove
that randomness (fixed batches, models without dropout, DFA's swap after its curriculum) so that what is
compared is the arithmetic. TF32 is off here, so the only differences are float32 summation order.
Tolerance: 1e-3 relative (plus 1e-5 absolute) on weights after 5 steps; 1e-4 on PGD's scores."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.data import DeviceSplit
from bench.metrics import evaluate
from datasets import Split
from methods import METHODS, Batch, RunContext
from methods.pgd_scores import last_layer_gradient_scores
from models import build_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]
CUDA = torch.device("cuda")
WEIGHT_RTOL, WEIGHT_ATOL, SCORE_RTOL = 1e-3, 1e-5, 1e-4
N = 64
RANDPERM = torch.randperm  # the genuine one, for drawing the batches while DFA's is pinned


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def build(name: str, model: str, device: torch.device, shape: tuple[int, int, int]):
    # SGD: its update is linear in the gradient, so rounding differences stay proportional (Adam's first
    # steps move every weight by about lr whatever the gradient's size, sign flips of tiny gradients too).
    hp = {"model": model, "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "epochs": 1,
          "batch_size": 16, "lr_decay_step": 0, "lr_decay_gamma": 1.0, **METHODS[name].HPARAMS}
    if name == "dfa":
        hp["curriculum_step"] = 2  # steps 3 and 4 swap features, with a fixed permutation below
    targets = (torch.arange(N) % 10).to(device)
    torch.manual_seed(0)
    return METHODS[name](hp, RunContext(10, shape, targets, device, torch.Generator(device=device).manual_seed(0)))


@pytest.mark.parametrize("model, shape", [("mlp", (3, 28, 28)), ("resnet18", (3, 32, 32))])
@pytest.mark.parametrize("name", ["erm", "lff", "jtt", "dfa", "lc", "dpr", "pgd"])
def test_training_steps_agree_between_cpu_and_cuda(name, model, shape, monkeypatch):
    if name == "dfa":  # the swap's permutation, identical on both devices
        def reversed_order(n, generator=None, device=None):
            return torch.arange(n).flip(0).to(device)

        monkeypatch.setattr(torch, "randperm", reversed_order)
    cpu, cuda = build(name, model, torch.device("cpu"), shape), build(name, model, CUDA, shape)
    cuda.models.load_state_dict(cpu.models.state_dict())
    generator = torch.Generator().manual_seed(1)
    for step in range(5):
        index = RANDPERM(N, generator=generator)[:16]
        x = torch.rand(16, *shape, generator=generator)
        y = index % 10
        out_cpu = cpu.update(Batch(index, x, y))
        out_cuda = cuda.update(Batch(index.to(CUDA), x.to(CUDA), y.to(CUDA)))
        torch.testing.assert_close(out_cuda["loss"].cpu(), out_cpu["loss"], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL,
                                   msg=lambda m, step=step: f"step {step}: {m}")
    for (key, a), b in zip(cpu.models.state_dict().items(), cuda.models.state_dict().values(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, msg=lambda m, key=key: f"{key}: {m}")


def test_pgd_scores_and_evaluation_agree_between_cpu_and_cuda():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, (3, 32, 32)).eval()
    x, y = torch.rand(N, 3, 32, 32), torch.arange(N) % 10
    on_cuda = copy.deepcopy(model).to(CUDA)
    torch.testing.assert_close(last_layer_gradient_scores(on_cuda, x.to(CUDA), y.to(CUDA), 0.7).cpu(),
                               last_layer_gradient_scores(model, x, y, 0.7), rtol=SCORE_RTOL, atol=0)
    images = (torch.rand(N, 3, 32, 32) * 255).to(torch.uint8).numpy()
    split = Split(images, y.numpy(), (torch.arange(N) % 3 == 0).long().numpy())
    ours = evaluate(model, DeviceSplit(split, torch.device("cpu")), 10)
    theirs = evaluate(on_cuda, DeviceSplit(split, CUDA), 10)
    assert theirs["acc"] == ours["acc"] and theirs["group_acc"] == ours["group_acc"]
    assert theirs["loss"] == pytest.approx(ours["loss"], rel=SCORE_RTOL)
