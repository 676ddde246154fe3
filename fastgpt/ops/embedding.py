"""An embedding lookup whose backward is fastgpt's one-pass, deterministic kernel (kernels/embedding.py),
optionally with a GPT's position table added and its LM head's gradient summed in.

The forward is a gather of the looked-up rows, with the position table's rows added in the same
pass when one is given (a GPT's token + position embedding: F.embedding and a broadcast add took
two kernels). The backward of GPT-2's token table is where the time goes: PyTorch's
embedding_dense_backward zero-fills the (V, C) gradient and reduces the sorted indices in several
kernels (~0.3 ms a GPT-2 step on an H100); the kernel writes the gradient once, from one sort
(see its header).

Tied tables (fused_tied_embedding): a GPT's LM head shares the token table, so autograd would get
two (V, C) gradients for it and add them (a pass over 3 x 77 MB at GPT-2's size in bf16), after
the lookup's backward had zero-filled its own (77 MB more). fused_tied_embedding returns the table
a second time, for the head to use: the head's gradient then reaches this op's backward as that
output's gradient, and the lookup's row sums are added into it, only in the looked-up rows. By
default into a copy (2 x 77 MB: the incoming gradient may be the caller's tensor, or shared with
another node); with add_in_place=True, which GPT passes (it uses the table once, in its LM head,
and never hands it out), into the head's fresh gradient itself.

Layers: `fused_embedding` / `fused_tied_embedding` (public, documented, validate) -> the
`embedding` Op of the backend switch -> for the triton backend the autograd Function
`_EmbeddingFunction` (save/backward wiring) -> the torch.library custom ops "fastgpt::embedding_fwd",
"fastgpt::embedding_bwd" and "fastgpt::embedding_bwd_accumulate" (with fakes, so torch.compile
traces through) -> the launchers kernels/embedding.embedding_fwd / embedding_bwd. The torch
backend is F.embedding (+ the positions) itself, also the test oracle; the cuda backend runs the
triton implementation (backend.FALLBACK). `FusedEmbedding` is an nn.Embedding (same parameter,
initialisation and state_dict) whose forward calls fused_embedding: GPT's token and position tables.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op
from fastgpt.ops.dispatch import call_custom_op

embedding = Op("embedding")

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# how the tied op sums the head's gradient with the lookup's: None (not tied), or one of these
TIED_COPY, TIED_IN_PLACE = "copy", "in_place"


@embedding.register("torch")
def embedding_reference(idx, weight, positions=None, tied=None):
    x = F.embedding(idx, weight)
    if positions is not None:
        x = x + positions
    return (x, weight) if tied else x


def _check(name: str, idx, weight, positions) -> None:
    if not isinstance(idx, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name}: idx and weight must be tensors")
    if idx.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name}: idx must hold int32 or int64 indices, got {idx.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"{name}: weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise TypeError(f"{name}: weight must be a floating-point tensor, got {weight.dtype}")
    if idx.device != weight.device:
        raise ValueError(f"{name}: idx on {idx.device}, weight on {weight.device}")
    if positions is None:
        return
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name}: positions must be a tensor or None")
    T = idx.shape[-1] if idx.dim() else 1
    if positions.shape != (T, weight.shape[1]):
        raise ValueError(f"{name}: positions must be (T, embedding_dim) = ({T}, {weight.shape[1]}) for idx "
                         f"of shape {tuple(idx.shape)}, got {tuple(positions.shape)}")
    if positions.dtype != weight.dtype:
        raise TypeError(f"{name}: positions ({positions.dtype}) and weight ({weight.dtype}) must have "
                        "the same dtype")
    if positions.device != weight.device:
        raise ValueError(f"{name}: positions on {positions.device}, weight on {weight.device}")


def fused_embedding(idx: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """weight[idx] (+ positions): the rows of a lookup table, as F.embedding, with fastgpt's backward.

    Args:
        idx: integer tensor (int32 / int64) of any shape, every value in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim) float table on idx's device; float16 / bfloat16 /
            float32. float64 runs on the torch backend: under "auto" on a GPU with a one-time
            warning, and the triton backend chosen by name raises TypeError.
        positions: None, or a (T, embedding_dim) table of weight's dtype with T = idx.shape[-1],
            added to every sequence: out[..., t, :] = weight[idx[..., t]] + positions[t] (a GPT's
            position embedding; on the triton backend summed in fp32 and rounded once).
    Returns:
        (*idx.shape, embedding_dim) tensor of weight's dtype; differentiable in weight (and
        positions), whose gradient on the triton and cuda backends is the same bit for bit from
        run to run.
    Raises:
        TypeError: idx not integer, weight not floating point (or float64 on the triton backend),
            positions of another dtype.
        ValueError: weight not 2-D, positions not (T, embedding_dim), tensors on different devices.
    """
    _check("fused_embedding", idx, weight, positions)
    return embedding(idx, weight, positions, None, device=weight.device)


def fused_tied_embedding(idx: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor | None = None,
                         *, add_in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """fused_embedding for a table that an LM head shares: returns (x, head_weight).

    x is fused_embedding(idx, weight, positions); head_weight is `weight` itself (a view of it),
    for the LM head to use instead of weight. The gradient the head gives head_weight then comes
    back into this op's backward, which adds the lookup's row sums to a copy of it (or to it, with
    add_in_place), only in the rows idx looked up, and returns the sum as weight's gradient:
    autograd neither zero-fills a (V, C) table for the lookup nor adds two (V, C) gradients (on
    the triton and cuda backends; the torch backend returns weight as it is and leaves the sum to
    autograd). The gradient is that of the two uses of weight, as if the head had used weight
    directly.

    Args, raises: as fused_embedding, and
        add_in_place: add the lookup's rows into head_weight's incoming gradient itself, saving a
            (V, C) copy. Only for a caller that owns that gradient: head_weight used once, by an op
            whose backward makes a fresh tensor (fused_linear_cross_entropy, F.linear), and never
            handed out, as GPT does. Not while torch.compile traces (a copy then).
    """
    _check("fused_tied_embedding", idx, weight, positions)
    return embedding(idx, weight, positions, TIED_IN_PLACE if add_in_place else TIED_COPY, device=weight.device)


class FusedEmbedding(nn.Embedding):
    """nn.Embedding(num_embeddings, embedding_dim) whose forward is fused_embedding (no padding_idx,
    max_norm, scale_grad_by_freq or sparse gradients: what a GPT's tables use)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)

    def forward(self, idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return fused_embedding(idx, self.weight, positions)

    def forward_tied(self, idx: torch.Tensor, positions: torch.Tensor | None = None, *, add_in_place: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """fused_tied_embedding(idx, self.weight, positions, add_in_place=...): (x, the table for the
        tied LM head)."""
        return fused_tied_embedding(idx, self.weight, positions, add_in_place=add_in_place)


# ---- triton backend


def _embedding_fwd_impl(idx: torch.Tensor, weight: torch.Tensor, positions: Optional[torch.Tensor]) -> torch.Tensor:
    from fastgpt.kernels import embedding as kernels
    return kernels.embedding_fwd(idx, weight, positions)


def _embedding_bwd_impl(dy: torch.Tensor, idx: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    from fastgpt.kernels import embedding as kernels
    return kernels.embedding_bwd(dy, idx, num_embeddings)


def _embedding_bwd_accumulate_impl(dy: torch.Tensor, idx: torch.Tensor, dw: torch.Tensor) -> None:
    from fastgpt.kernels import embedding as kernels
    kernels.embedding_bwd(dy, idx, dw.shape[0], out=dw)


_embedding_fwd = torch.library.custom_op("fastgpt::embedding_fwd", mutates_args=())(_embedding_fwd_impl)
_embedding_bwd = torch.library.custom_op("fastgpt::embedding_bwd", mutates_args=())(_embedding_bwd_impl)
_embedding_bwd_accumulate = torch.library.custom_op("fastgpt::embedding_bwd_accumulate", mutates_args=("dw",))(
    _embedding_bwd_accumulate_impl)


@_embedding_fwd.register_fake
def _(idx, weight, positions):
    return weight.new_empty(idx.shape[0], weight.shape[1])


@_embedding_bwd.register_fake
def _(dy, idx, num_embeddings):
    return dy.new_empty(num_embeddings, dy.shape[1])


@_embedding_bwd_accumulate.register_fake
def _(dy, idx, dw):
    return None


class _EmbeddingFunction(torch.autograd.Function):
    """(idx, weight, positions, tied) -> x, or (x, weight as the head's table) when tied (TIED_COPY
    or TIED_IN_PLACE)."""

    @staticmethod
    def forward(ctx, idx, weight, positions, tied):
        flat = idx.reshape(-1)
        x = call_custom_op(_embedding_fwd, _embedding_fwd_impl, flat, weight, positions)
        ctx.save_for_backward(flat)
        ctx.table = (weight.shape[0], weight.dtype)
        ctx.positions = None if positions is None else positions.shape[0]
        ctx.in_place = tied == TIED_IN_PLACE and not torch.compiler.is_compiling()
        ctx.set_materialize_grads(False)     # an unused output's gradient stays None
        x = x.view(*idx.shape, weight.shape[1])
        # weight returned as an output of this node: the head's gradient of it comes to backward
        return (x, weight.view_as(weight)) if tied else x

    @staticmethod
    def backward(ctx, dx, dhead=None):
        flat, = ctx.saved_tensors
        num_embeddings, dtype = ctx.table
        dpos = dw = None
        if dx is not None:
            dy = dx.reshape(-1, dx.shape[-1])
            if ctx.positions is not None and ctx.needs_input_grad[2]:
                dpos = dy.view(-1, ctx.positions, dy.shape[1]).sum(0)
        if not ctx.needs_input_grad[1]:
            return None, None, dpos, None
        if dx is None:
            dw = dhead
        elif dhead is None:
            dw = call_custom_op(_embedding_bwd, _embedding_bwd_impl, dy, flat, num_embeddings).to(dtype)
        else:
            # the lookup's rows added into the head's gradient where the caller owns it, else into
            # a copy (it may be the caller's tensor, or shared with another node). Telling the two
            # apart here, by autograd's own test (use counts of 1), was tried: the counts a Python
            # backward sees differ between torch builds (run 82)
            in_place = ctx.in_place and dhead.dtype == dtype and dhead.is_contiguous()
            dw = dhead if in_place else dhead.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)
            call_custom_op(_embedding_bwd_accumulate, _embedding_bwd_accumulate_impl, dy, flat, dw)
        return None, dw, dpos, None


def _kernel_problem(idx, weight, positions=None, tied=None) -> str | None:
    if weight.dtype not in _KERNEL_DTYPES:
        return f"the embedding kernel takes float16, bfloat16 or float32 tables, not {weight.dtype}"
    return None


@embedding.register("triton", unsupported=_kernel_problem)
def embedding_triton(idx, weight, positions=None, tied=None):
    why = _kernel_problem(idx, weight)
    if why is not None:      # the backend chosen by name ("auto" has run the torch one instead)
        raise TypeError(f"fused_embedding: {why}")
    return _EmbeddingFunction.apply(idx, weight, positions, tied)
