"""Fused LM head + cross-entropy: mean CE of (x @ W^T) against targets without full fp32 logits.

Public function -> autograd Function -> torch.library ops; the Triton kernels are in
kernels/cross_entropy.py. The reference below is the `torch` backend and the test oracle.

The triton backend computes the gradients of x and W in the forward pass, one chunk of tokens
at a time (the (tokens x vocab) logits never exist whole), and stores them; backward only scales
them by grad_output. So the forward costs the whole LM head's forward and backward, and the
backward is nearly free. The forward is one torch.library custom op with a fake (meta)
implementation, so torch.compile(fullgraph=True) traces through it without a graph break;
eager mode calls its Python implementation directly (fastgpt.ops.dispatch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgpt.backend import Op
from fastgpt.ops.dispatch import call_custom_op, launch_bound

linear_cross_entropy = Op("linear_cross_entropy")

COMPUTE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
@linear_cross_entropy.register("torch")
def linear_cross_entropy_reference(x, weight, targets, ignore_index, chunk_rows=None):
    """Eager reference: full logits, upcast to fp32, F.cross_entropy (chunk_rows is ignored)."""
    logits = F.linear(x, weight)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=ignore_index)


# ---- torch.library op: the whole chunked forward + gradient, opaque to the compiler ----

def _linear_cross_entropy_fwd_impl(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                              ignore_index: int, compute_dtype: torch.dtype, need_grad_x: bool,
                              need_grad_weight: bool, rows_per_chunk: int
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from fastgpt.kernels.cross_entropy import linear_cross_entropy_fwd_bwd, target_stats  # imports triton

    targets = targets.contiguous()
    n_valid, in_range = target_stats(targets, weight.shape[0], ignore_index)
    _check_target_range(targets, weight.shape[0], ignore_index, in_range)
    # the gradients are computed here, in the forward (its thread sees replayed_steps()): the
    # plain GEMMs on their timed choices where launches are free (kernels/gemm.py)
    return linear_cross_entropy_fwd_bwd(x, weight, targets, ignore_index, compute_dtype,
                                        need_grad_x, need_grad_weight, rows_per_chunk,
                                        tuned_gemms=not launch_bound(), n_valid=n_valid)


_linear_cross_entropy_fwd = torch.library.custom_op("fastgpt::linear_cross_entropy_fwd", mutates_args=())(
    _linear_cross_entropy_fwd_impl)

@_linear_cross_entropy_fwd.register_fake
def _(x, weight, targets, ignore_index, compute_dtype, need_grad_x, need_grad_weight, rows_per_chunk):
    loss = x.new_empty((), dtype=torch.float32)
    grad_x = torch.empty_like(x) if need_grad_x else x.new_empty(0)
    grad_w = torch.empty_like(weight, dtype=torch.float32) if need_grad_weight else weight.new_empty(0)
    return loss, grad_x, grad_w


def _scale_gradient_impl(grad: torch.Tensor, grad_output: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    from fastgpt.kernels.cross_entropy import scale_gradient  # imports triton
    return scale_gradient(grad, grad_output, dtype)


# the backward's one pass over each stored gradient: * grad_output, and grad_W's cast from fp32
_scale_gradient = torch.library.custom_op("fastgpt::scale_gradient", mutates_args=())(_scale_gradient_impl)

@_scale_gradient.register_fake
def _(grad, grad_output, dtype):
    return torch.empty(grad.shape, dtype=dtype, device=grad.device)


def _check_target_range(targets: torch.Tensor, vocab: int, ignore_index: int,
                        in_range: torch.Tensor | None = None) -> None:
    """targets in [0, vocab) or equal to ignore_index; in_range: that already computed (0-d bool on
    targets' device: kernels/cross_entropy.target_stats'), else computed here by the same rule
    (an ignored target is never out of range, whatever ignore_index is)."""
    if in_range is None:
        in_range = ((targets >= 0) & (targets < vocab) | (targets == ignore_index)).all()
    message = f"targets must lie in [0, {vocab}) or equal ignore_index={ignore_index}"
    if targets.is_cuda:
        torch._assert_async(in_range, message)   # no host sync; a failure is a device assert
    elif not in_range:
        raise ValueError(message + f"; got values in [{targets.min().item()}, {targets.max().item()}]")


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Forward computes loss and gradients (custom op; grad_W as its fp32 accumulator); backward
    scales them by grad_output, casting grad_W to the weight's dtype in the same pass."""

    @staticmethod
    def forward(ctx, x, weight, targets, ignore_index, compute_dtype, need_grad_x, need_grad_weight,
                rows_per_chunk):
        loss, grad_x, grad_w = call_custom_op(_linear_cross_entropy_fwd, _linear_cross_entropy_fwd_impl,
            x, weight, targets, ignore_index, compute_dtype, need_grad_x, need_grad_weight,
            rows_per_chunk)
        ctx.save_for_backward(grad_x, grad_w)
        ctx.need_grad_x, ctx.need_grad_weight = need_grad_x, need_grad_weight
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_x, grad_w = ctx.saved_tensors
        if ctx.need_grad_x:
            grad_x = call_custom_op(_scale_gradient, _scale_gradient_impl, grad_x, grad_output, grad_x.dtype)
        if ctx.need_grad_weight:
            grad_w = call_custom_op(_scale_gradient, _scale_gradient_impl, grad_w, grad_output, ctx.weight_dtype)
        return (grad_x if ctx.need_grad_x else None, grad_w if ctx.need_grad_weight else None,
                None, None, None, None, None, None)


@linear_cross_entropy.register("triton")
def linear_cross_entropy_triton(x, weight, targets, ignore_index, chunk_rows=None):
    """x (N, C), weight (V, C), targets (N,) int64, already validated and flattened."""
    # autocast does not reach inside the custom op: decide its compute dtype here, at trace time
    if torch.is_autocast_enabled(x.device.type):
        compute_dtype = torch.get_autocast_dtype(x.device.type)
    else:
        compute_dtype = x.dtype
    grad_on = torch.is_grad_enabled()
    need_grad_x = grad_on and x.requires_grad
    need_grad_weight = grad_on and weight.requires_grad
    if chunk_rows is None:
        from fastgpt.kernels.cross_entropy import chunk_rows as default_chunk_rows
        chunk_rows = default_chunk_rows(x.shape[0], weight.shape[0], compute_dtype.itemsize)
    return LinearCrossEntropyFunction.apply(x, weight, targets, ignore_index, compute_dtype,
                                            need_grad_x, need_grad_weight, chunk_rows)


def _validate(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int,
              chunk_rows: int | None) -> None:
    for name, t in (("x", x), ("weight", weight), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be (vocab, n_embd), got shape {tuple(weight.shape)}")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x must be (..., {weight.shape[1]}) to match weight {tuple(weight.shape)}, "
                         f"got shape {tuple(x.shape)}")
    if targets.shape != x.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(x.shape[:-1])} (x without its last dim), "
                         f"got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"targets must hold integer class ids, got {targets.dtype}")
    for name, t in (("x", x), ("weight", weight)):
        if t.dtype not in COMPUTE_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"x ({x.dtype}) and weight ({weight.dtype}) must have the same dtype "
                        "outside autocast")
    if not x.device == weight.device == targets.device:
        raise ValueError(f"x, weight and targets must be on one device, got {x.device}, "
                         f"{weight.device}, {targets.device}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")


def fused_linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -1, *, chunk_rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of the logits x @ weight^T against targets, without materialising them.

    Equal to ``F.cross_entropy(F.linear(x, weight).float().view(-1, V), targets.view(-1),
    ignore_index=ignore_index)``, the LM head and loss of a GPT.

    Args:
        x: (..., C) hidden states (float16, bfloat16 or float32).
        weight: (V, C) LM head weight, same dtype as x (under autocast both are cast to the
            autocast dtype, as F.linear would be).
        targets: (...) integer class ids in [0, V), or ignore_index for positions that do not
            count; same leading shape as x.
        ignore_index: target value to skip; the mean is over the other positions (NaN when
            there are none, as F.cross_entropy).
        chunk_rows: tokens per chunk on the triton backend (default: 8192, fewer when a
            chunk's logits would pass 1 GiB; see kernels/cross_entropy.py). Ignored by the
            torch backend.

    Returns:
        The 0-d float32 mean loss. On the triton backend the gradients of x and weight are
        computed during this call (only if they require grad) and held until backward, which
        scales them by the incoming gradient.
    """
    _validate(x, weight, targets, ignore_index, chunk_rows)
    C = x.shape[-1]
    return linear_cross_entropy(x.reshape(-1, C), weight, targets.reshape(-1).long(), ignore_index,
                                chunk_rows, device=x.device)
