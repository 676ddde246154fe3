"""An embedding lookup whose backward is fastgpt's one-pass, deterministic kernel (kernels/embedding.py).

The forward is F.embedding's gather (a copy of the looked-up rows: nothing to fuse). The backward
of GPT-2's token table is where the time goes: PyTorch's embedding_dense_backward zero-fills the
(V, C) gradient and reduces the sorted indices in several kernels (~0.3 ms a GPT-2 step on an
H100); the kernel writes the gradient once, from one sort (see its header).

Layers: `fused_embedding` (public, documented, validates) -> the `embedding` Op of the backend
switch -> for the triton backend the autograd Function `_EmbeddingFunction` (save/backward
wiring) -> the torch.library custom op "fastgpt::embedding_bwd" (with a fake, so torch.compile
traces through) -> the launcher kernels/embedding.embedding_bwd. The torch backend is F.embedding
itself, also the test oracle; the cuda backend runs the triton implementation (backend.FALLBACK).
`FusedEmbedding` is an nn.Embedding (same parameter, initialisation and state_dict) whose forward
calls fused_embedding: GPT's token and position tables.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op
from fastgpt.ops.dispatch import call_custom_op

embedding = Op("embedding")

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@embedding.register("torch")
def embedding_reference(idx, weight):
    return F.embedding(idx, weight)


def fused_embedding(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """weight[idx]: the rows of a lookup table, as F.embedding, with fastgpt's backward.

    Args:
        idx: integer tensor (int32 / int64) of any shape, every value in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim) float table on idx's device; float16 / bfloat16 /
            float32. float64 runs on the torch backend: under "auto" on a GPU with a one-time
            warning, and the triton backend chosen by name raises TypeError.
    Returns:
        (*idx.shape, embedding_dim) tensor of weight's dtype; differentiable in weight, whose
        gradient on the triton and cuda backends is the same bit for bit from run to run.
    Raises:
        TypeError: idx not integer, weight not floating point (or float64 on the triton backend).
        ValueError: weight not 2-D, or the two on different devices.
    """
    if not isinstance(idx, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("fused_embedding: idx and weight must be tensors")
    if idx.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"fused_embedding: idx must hold int32 or int64 indices, got {idx.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"fused_embedding: weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise TypeError(f"fused_embedding: weight must be a floating-point tensor, got {weight.dtype}")
    if idx.device != weight.device:
        raise ValueError(f"fused_embedding: idx on {idx.device}, weight on {weight.device}")
    return embedding(idx, weight, device=weight.device)


class FusedEmbedding(nn.Embedding):
    """nn.Embedding(num_embeddings, embedding_dim) whose forward is fused_embedding (no padding_idx,
    max_norm, scale_grad_by_freq or sparse gradients: what a GPT's tables use)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return fused_embedding(idx, self.weight)


# ---- triton backend


def _embedding_bwd_impl(dy: torch.Tensor, idx: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    from fastgpt.kernels import embedding as kernels
    return kernels.embedding_bwd(dy, idx, num_embeddings)


_embedding_bwd = torch.library.custom_op("fastgpt::embedding_bwd", mutates_args=())(_embedding_bwd_impl)


@_embedding_bwd.register_fake
def _(dy, idx, num_embeddings):
    return dy.new_empty(num_embeddings, dy.shape[1])


class _EmbeddingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx, weight):
        ctx.save_for_backward(idx)
        ctx.table = (weight.shape[0], weight.dtype)
        return F.embedding(idx, weight)

    @staticmethod
    def backward(ctx, dy):
        if not ctx.needs_input_grad[1]:
            return None, None
        idx, = ctx.saved_tensors
        num_embeddings, dtype = ctx.table
        dw = call_custom_op(_embedding_bwd, _embedding_bwd_impl, dy.reshape(-1, dy.shape[-1]),
                            idx.reshape(-1), num_embeddings)
        return None, dw.to(dtype)


def _kernel_problem(idx, weight) -> str | None:
    if weight.dtype not in _KERNEL_DTYPES:
        return f"the embedding kernel takes float16, bfloat16 or float32 tables, not {weight.dtype}"
    return None


@embedding.register("triton", unsupported=_kernel_problem)
def embedding_triton(idx, weight):
    why = _kernel_problem(idx, weight)
    if why is not None:      # the backend chosen by name ("auto" has run the torch one instead)
        raise TypeError(f"fused_embedding: {why}")
    return _EmbeddingFunction.apply(idx, weight)
