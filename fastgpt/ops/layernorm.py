"""Fused residual-add + LayerNorm: y = LayerNorm(x + residual) * weight + bias, and s = x + residual.

Public function -> autograd Function -> torch.library ops; the Triton kernels are in
kernels/layernorm.py. The reference below is the `torch` backend and the test oracle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op

add_layernorm = Op("add_layernorm")


@add_layernorm.register("torch")
def add_layernorm_reference(x, residual, weight, bias, eps):
    s = x if residual is None else x + residual
    return F.layer_norm(s, (s.shape[-1],), weight, bias, eps), s


def fused_add_layernorm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                        bias: torch.Tensor | None = None, eps: float = 1e-5):
    """Return (y, s): s = x + residual (x when residual is None), y = LayerNorm(s) * weight + bias."""
    return add_layernorm(x, residual, weight, bias, eps, device=x.device)


class FusedAddLayerNorm(nn.Module):
    """LayerNorm over the last dimension that first adds a residual; state dict as nn.LayerNorm."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x, residual=None):
        return fused_add_layernorm(x, residual, self.weight, self.bias, self.eps)
