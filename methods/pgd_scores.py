"""PGD's per-sample scores: the p-norm of each sample's gradient of plain CE (Ahn, Kim & Yun, ICLR 2023).

For the last linear layer z = W h + b under cross-entropy, the per-sample gradient with respect to W is
the outer product g_i = (softmax(z_i) - onehot(y_i)) h_i^T, and for any p > 0 the entrywise p-norm of an
outer product factorises: ||a b^T||_p = ||a||_p * ||b||_p. So every score comes from one batched forward
pass with no backward pass at all -- exact, not an approximation. ``parameter_gradient_scores`` is the
general path (torch.func per-sample gradients) for any other parameter.

``torch.linalg.vector_norm`` with a non-integer ``ord`` computes (sum |x|^p)^(1/p), as ``torch.norm`` does
in the authors' code (their default p = 0.7, flag ``--norm_scale``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from methods.base import Batch, inference_batch_size, inference_layout
from models import Classifier
from models.inference import fused_for_inference


def last_layer_gradient_scores(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float = 0.7) -> torch.Tensor:
    """Scores s_i = ||d CE(f(x_i), y_i) / d fc.weight||_p for a batch, in closed form, (B,).

    The model is used as it is (call ``model.eval()`` first for the authors' setting)."""
    with torch.no_grad():
        features = model.features(x)
        logits = model.fc(features)
        residual = torch.softmax(logits.to(features.dtype), dim=1) - F.one_hot(y, logits.shape[1]).to(features.dtype)
        return torch.linalg.vector_norm(residual, ord=p, dim=1) * torch.linalg.vector_norm(features, ord=p, dim=1)


def parameter_gradient_scores(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, parameter: str = "fc.weight", p: float = 0.7
) -> torch.Tensor:
    """Scores ||d CE(f(x_i), y_i) / d parameter||_p for any named parameter, with torch.func per-sample
    gradients (one vmapped backward). Slower than the closed form; use it to score another layer."""
    params = {name: value.detach() for name, value in model.named_parameters()}
    buffers = {name: value.detach() for name, value in model.named_buffers()}
    if parameter not in params:
        raise KeyError(f"no parameter {parameter!r}; valid: {', '.join(params)}")

    def sample_loss(value: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**params, parameter: value}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params[parameter], x, y)
    return torch.linalg.vector_norm(grads.flatten(1), ord=p, dim=1)


def scoring_batch_size(device: torch.device, fold_batch_norm: bool) -> int:
    """Batch size of the scoring pass. With batch norms folded and ReLUs in place, the CONV net's CPU
    forward pass no longer streams fresh activation tensors, and augmentation costs less per image in
    larger batches: 54k images scored in 2.2 s at 512 against 2.7 s at 128 (at 1024 no faster than
    512). Unfolded, or on an accelerator, scoring uses ``inference_batch_size``."""
    return 512 if device.type == "cpu" and fold_batch_norm else inference_batch_size(device)


def dataset_scores(model: Classifier, batches: Iterable[Batch], size: int, p: float = 0.7,
                   fold_batch_norm: bool = True) -> torch.Tensor:
    """Closed-form scores for a whole dataset, placed by dataset index, (size,). On the CPU the
    convolutions run in channels_last (``inference_layout``).

    ``fold_batch_norm``: score an eval-mode ``model`` (the authors' setting) through
    ``fused_for_inference(model)``, batch norms folded into the convolutions and ReLUs in place: the
    same function up to float32 rounding (about 1e-6 relative), its forward pass twice as fast on the
    CPU. A model in training mode is always scored as it is, since folding holds only for running
    statistics."""
    scorer = fused_for_inference(model) if fold_batch_norm and not model.training else model
    scores = None
    with inference_layout(scorer):
        for batch in batches:
            batch_scores = last_layer_gradient_scores(scorer, batch.x, batch.y, p)
            if scores is None:
                scores = torch.zeros(size, dtype=batch_scores.dtype, device=batch_scores.device)
            scores[batch.index] = batch_scores
    if scores is None:
        raise ValueError("no batches to score")
    return scores


def sampling_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """P_i = s_i / sum_j s_j, scores clamped at 1e-8 as in the authors' code."""
    clamped = scores.clamp(min=1e-8).double()
    return clamped / clamped.sum()
