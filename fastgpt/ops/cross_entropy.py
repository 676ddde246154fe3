"""Fused LM head + cross-entropy: mean CE of (x @ W^T) against targets without full fp32 logits.

Public function -> autograd Function -> torch.library ops; the Triton kernels are in
kernels/cross_entropy.py. The reference below is the `torch` backend and the test oracle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgpt.backend import Op

linear_cross_entropy = Op("linear_cross_entropy")


@linear_cross_entropy.register("torch")
def linear_cross_entropy_reference(x, weight, targets, ignore_index):
    logits = F.linear(x, weight)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1),
                           ignore_index=ignore_index)


def fused_linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -1):
    """Mean cross-entropy of logits x @ weight^T (x of (..., C), weight of (V, C)) against targets."""
    return linear_cross_entropy(x, weight, targets, ignore_index, device=x.device)
