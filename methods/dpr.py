"""DPR -- Disagreement Probability based Resampling (Han et al., NeurIPS 2024; arXiv 2411.01757), built on
PGD's code (``hygnhan/DPR``).

1. Train a biased model with GCE (q = 0.7) on uniform batches, with the same data, augmentation,
   optimiser and schedule as the debiased stage.
2. With the trained biased model in eval mode, one pass over the training set (training augmentation on,
   as the authors' loop reads the training loader): each sample's disagreement probability
   d_i = 1 - softmax(f_b(x_i) / tau)[y_i], tau = 1, clamped below at 1e-8.
3. Initialise the debiased model from the biased one and train it with plain CE on batches drawn with
   replacement with probability d_i / sum_j d_j (N draws per epoch), same schedule; selection by the
   lowest validation loss, within the debiased stage.
On ``cmnist`` its ``--reproduce`` settings are PGD's protocol (the CONV net, SGD lr 0.02, momentum 0.9,
weight decay 1e-3, batch 128, 100 epochs, lr x 0.1 every 40): this suite's ``cmnist`` defaults.

Deviation from the released code, stated and switchable: ``train_dpr`` in the released trainer never
loads the trained biased model (``train_pgd`` and ``train_jtt`` beside it do), so as released the
disagreement probabilities and the debiased model's initialisation come from an untrained network. This
implements the paper's design (the trained biased model); ``dpr.released_untrained_scorer=true``
reproduces the released behaviour: the first stage still trains, but a freshly initialised model (drawn
from torch's global generator, whose state the run's checkpoints keep) scores and initialises the second.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from methods.base import TrainView
from methods.registry import register_method
from methods.two_stage import BiasedThenResampled
from spaces import OneOf, Uniform
from spaces.domains import POSITIVE, UNIT_OPEN_CLOSED

CLAMP = 1e-8


def disagreement_probabilities(logits: torch.Tensor, targets: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """1 - softmax(logits / tau)[y], clamped below at 1e-8: the probability that the biased model's
    prediction disagrees with the target."""
    agree = torch.softmax(logits.float() / tau, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (1 - agree).clamp_min(CLAMP)


@register_method
class DPR(BiasedThenResampled):
    name: ClassVar[str] = "dpr"
    PAPER: ClassVar[str] = ("Han et al., Mitigating Spurious Correlations via Disagreement Probability, "
                            "NeurIPS 2024")
    HPARAMS: ClassVar[dict] = {"q": 0.7, "tau": 1.0, "released_untrained_scorer": False}
    HPARAM_SPACE: ClassVar[dict] = {"q": Uniform(0.5, 0.9)}
    HPARAM_DOMAINS: ClassVar[dict] = {"q": UNIT_OPEN_CLOSED, "tau": POSITIVE,
                                      "released_untrained_scorer": OneOf((True, False))}
    # The released learner selects by validation loss on every dataset, as PGD's, which it is built on.
    DATASET_HPARAMS: ClassVar[dict] = {"cifar10c": {"selection": "best_valid_loss"}}
    def between_stages(self, train: TrainView) -> None:
        scorer = self.models[self.FIRST]
        if bool(self.hp["released_untrained_scorer"]):
            scorer = self.new_model().eval()
        disagreement = torch.empty(self.ctx.train_size, device=self.ctx.device)
        with self.phase("score"), torch.no_grad():
            for batch in train.batches(int(self.hp["batch_size"]), augment=True):
                disagreement[batch.index] = disagreement_probabilities(scorer(batch.x), batch.y,
                                                                       float(self.hp["tau"]))
        self.probabilities = disagreement / disagreement.sum()
        self.models[self.SECOND].load_state_dict(scorer.state_dict())

    def summary(self) -> dict[str, float]:
        if self.probabilities is None:
            return {}
        return {"max_over_mean_probability": float(self.probabilities.max() * len(self.probabilities))}
