"""Causal flash attention and the drop-in `FusedCausalSelfAttention` module.

Public function -> autograd Function -> torch.library ops; the Triton kernels are in
kernels/attention.py. The reference below is the `torch` backend and the test oracle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op

attention = Op("attention")


@attention.register("torch")
def attention_reference(q, k, v, causal, softmax_scale, dropout_p):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=softmax_scale,
                                          dropout_p=dropout_p)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    softmax_scale: float | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention of q, k, v of shape (B, H, T, D), as F.scaled_dot_product_attention."""
    return attention(q, k, v, causal, softmax_scale, dropout_p, device=q.device)


class KVCache:
    """Keys and values of one attention layer for incremental decoding: (B, H, block_size, D) each."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, device, dtype):
        self.k = torch.empty(batch, n_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Store k, v of (B, H, T, D) after the cached positions; return all keys and values so far."""
        end = self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions, asked for {end}")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


def _cached_attention(q, k, v):
    """Causal attention of the newest q positions against all cached k, v (positions aligned at the end)."""
    t_new, t_all = q.size(2), k.size(2)
    if t_new == 1:
        return F.scaled_dot_product_attention(q, k, v)
    # query i sits at absolute position t_all - t_new + i and sees keys 0 .. that position
    rows = torch.arange(t_all - t_new, t_all, device=q.device)[:, None]
    mask = torch.arange(t_all, device=q.device)[None, :] <= rows
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class FusedCausalSelfAttention(nn.Module):
    """Drop-in for nanoGPT's CausalSelfAttention: c_attn -> flash attention -> c_proj."""

    def __init__(self, config=None, *, n_embd: int | None = None, n_head: int | None = None,
                 bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if config is not None:
            n_embd, n_head = config.n_embd, config.n_head
            bias, dropout = getattr(config, "bias", True), getattr(config, "dropout", 0.0)
        if n_embd is None or n_head is None:
            raise ValueError("FusedCausalSelfAttention needs a config or n_embd and n_head")
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        if C != self.n_embd:
            raise ValueError(f"expected input of width {self.n_embd}, got {tuple(x.shape)}")
        head_dim = C // self.n_head
        # (B, T, 3C) -> three (B, H, T, D) strided views, no copy
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, head_dim).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = flash_attention(q, k, v, causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            k, v = cache.append(k, v)
            y = _cached_attention(q, k, v)
        y = y.transpose(1, 2).reshape(B, T, C)   # (B, H, T, D) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))
