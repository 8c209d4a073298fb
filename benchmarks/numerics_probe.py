"""Time training steps in a fresh process, under the numerics named on the command line (they must be set
before torch loads): ``python numerics_probe.py native|portable WORKLOAD STEPS [exact]`` prints one JSON
line with the median seconds per step and the trained weights' hash (the same on every machine under
portable numerics). ``exact``: the engine setting ``exact_sqrt`` (the augmentation's crop sides from
``ieee_sqrt``, Adam's fused kernel), which portable runs take by default. Workloads: ``cmnist`` (CONV
net, batch 128, PGD's augmentation, SGD) and ``cifar10c`` (ResNet-18, batch 256, crop/flip +
normalisation, Adam), each at one thread."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.numerics import apply_before_torch  # noqa: E402

NUMERICS, WORKLOAD, STEPS = sys.argv[1], sys.argv[2], int(sys.argv[3])
EXACT = sys.argv[4:] == ["exact"]
apply_before_torch(NUMERICS)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.numerics import enter, state  # noqa: E402
from bench.trainer import weights_sha256  # noqa: E402
from datasets.augment import CropFlipAugmentation, PGDColoredMNISTAugmentation  # noqa: E402
from models import build_model  # noqa: E402

WORKLOADS = {
    # name: (model, input shape, batch, augmentation, optimiser)
    "cmnist": ("conv", (3, 28, 28), 128, lambda: PGDColoredMNISTAugmentation(exact_sqrt=EXACT),
               lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, weight_decay=1e-3)),
    "cifar10c": ("resnet18", (3, 32, 32), 256, lambda: CropFlipAugmentation(4),
                 lambda p: torch.optim.Adam(p, lr=1e-3, fused=True if EXACT else None)),
}


def main() -> None:
    enter(NUMERICS)
    torch.set_num_threads(1)  # both numerics at one thread: the ratio is the instruction sets' cost alone
    name, shape, batch, augmentation, optimiser = WORKLOADS[WORKLOAD]
    torch.manual_seed(0)
    model = build_model(name, 10, shape).train()
    optimizer = optimiser(model.parameters())
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 10, (batch,), generator=generator)
    augment = augmentation()
    seconds = []
    for _ in range(STEPS + 1):  # the first step warms up
        start = time.perf_counter()
        x = augment(images.float() / 255, generator)
        loss = F.cross_entropy(model(x), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"numerics": NUMERICS, "exact_sqrt": EXACT, "workload": WORKLOAD,
                      "step_seconds": statistics.median(seconds[1:]),
                      "weights_sha256": weights_sha256(model),
                      **state()}))


if __name__ == "__main__":
    main()
