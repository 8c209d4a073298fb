"""A copy of a classifier prepared for passes without gradients (PGD's scoring pass).

Two rewrites of the encoder's torch.fx graph, neither of which changes the function computed:
- each batch norm that directly follows a convolution or linear layer is folded into that layer's
  weights (``torch.fx.experimental.optimization.fuse``), so it costs nothing;
- each ReLU whose input feeds nothing else runs in place.

Exact in real arithmetic; in float32 the outputs move by about 1e-6 relative, from the folded
weights' rounding. On the CPU this halves the CONV net's forward time at batch 128: batch norm and
ReLU each allocated and streamed a fresh activation tensor, and were half of it.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from models.base import Classifier


def _relu_in_place(module: fx.GraphModule) -> fx.GraphModule:
    """Replace each ReLU whose input has no other user (and is not the graph's input) by ``relu_``."""
    modules = dict(module.named_modules())
    graph = module.graph
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.ReLU):
            continue
        source = node.args[0]
        if source.op == "placeholder" or len(source.users) > 1:
            continue
        with graph.inserting_after(node):
            in_place = graph.call_function(torch.relu_, (source,))
        node.replace_all_uses_with(in_place)
        graph.erase_node(node)
    graph.lint()
    module.recompile()
    return module


def fused_for_inference(model: Classifier) -> Classifier:
    """An eval-mode copy of ``model`` with its batch norms folded and its ReLUs in place (see the
    module docstring). ``model`` itself is left untouched, in its own mode."""
    fused = copy.deepcopy(model).eval()
    fused.encoder = _relu_in_place(fuse(fused.encoder, inplace=True))
    return fused
