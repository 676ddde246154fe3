"""Fused bias + GELU MLP: c_proj(gelu_tanh(x @ W_fc^T + b_fc)).

Public functions -> autograd Functions -> torch.library ops; the Triton kernels are in
kernels/mlp.py. The reference below is the `torch` backend and the test oracle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op

linear_gelu = Op("linear_gelu")


@linear_gelu.register("torch")
def linear_gelu_reference(x, weight, bias):
    return F.gelu(F.linear(x, weight, bias), approximate="tanh")


def fused_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """gelu_tanh(x @ weight^T + bias) for x of (..., K), weight of (N, K), bias of (N,)."""
    return linear_gelu(x, weight, bias, device=x.device)


class FusedMLP(nn.Module):
    """nanoGPT's MLP (c_fc -> GELU -> c_proj -> dropout) with the bias + GELU fused."""

    def __init__(self, config=None, *, n_embd: int | None = None, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if config is not None:
            n_embd, bias, dropout = config.n_embd, config.bias, config.dropout
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = fused_linear_gelu(x, self.c_fc.weight, self.c_fc.bias)   # (B, T, 4C)
        return self.dropout(self.c_proj(h))                          # (B, T, C)
