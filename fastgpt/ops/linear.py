"""A linear layer y = x W^T + b (+ residual) whose bias gradient is a Triton column sum
(kernels/linear.py).

The GEMMs stay cuBLAS (forward with the bias in its epilogue, both backward GEMMs as autograd
would run them), each on the algorithm kernels/gemm.py timed fastest for its shape; what changes
is dbias = dy.sum(0), which PyTorch runs as a generic reduction
well under the copy bandwidth (see kernels/linear.py). FusedCausalSelfAttention's c_attn and
c_proj go through it, and the MLP's c_proj bias gradient uses the same kernel.

The residual (optional): y = residual + x W^T + b with the add in the GEMM's epilogue (cuBLASLt's
C, read while D is written), the residual's gradient dy itself (no copy). A pre-LN block's
projection then writes the updated residual stream, and the LayerNorm after it reads that one
tensor instead of the projection's output and the stream before it and writing their sum (run
140: GEMM + LayerNorm 62.3-63.5 us against 67.6-68.6 at GPT-2's attention projection).

Where launches are not free (eager execution: fastgpt.ops.dispatch.launch_bound) the triton
backend runs F.linear itself: one more Triton launch per layer costs more host time than the
reduction saves. The kernel runs inside CUDA-graphed steps (fastgpt.cuda_graph) and under
torch.compile.

Layers: `fused_linear` (public, documented, validates) -> the `linear` Op of the backend switch
-> for the triton backend the autograd Function `_LinearFunction` (save/backward wiring) ->
the torch.library custom op "fastgpt::linear_bias_grad" (with a fake, so torch.compile traces
through) -> the launcher kernels/linear.column_sum. The torch backend is F.linear itself, which
is also the test oracle. The cuda backend runs the triton implementation (backend.FALLBACK).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgpt.backend import Op
from fastgpt.kernels import gemm
from fastgpt.ops.autocast import autocast_inputs
from fastgpt.ops.dispatch import call_custom_op, launch_bound

linear = Op("linear")


@linear.register("torch")
def linear_reference(x, weight, bias, residual=None):
    y = F.linear(x, weight, bias)
    return y if residual is None else residual + y


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_linear(x, weight, bias, name: str, in_features: int | None = None) -> None:
    """Clear errors for a linear layer's operands (fused_linear's, and both layers of the MLP's);
    in_features defaults to x's last size."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name}: x and weight must be tensors")
    if x.dim() < 1:
        raise ValueError(f"{name}: x must have at least one dimension (the features)")
    if weight.dim() != 2:
        raise ValueError(f"{name}: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    in_features = x.shape[-1] if in_features is None else in_features
    if in_features != weight.shape[1]:
        raise ValueError(f"{name}: inner sizes do not match: the input has {in_features} features "
                         f"(x of shape {tuple(x.shape)}), weight of shape {tuple(weight.shape)} "
                         f"expects {weight.shape[1]}")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for label, t in (("x", x), ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name}: {label} must be a floating-point tensor "
                            f"(float16, bfloat16, float32), got {t.dtype}")
        _check_beside_x(t, label, x, name)


def _check_beside_x(t: torch.Tensor, label: str, x: torch.Tensor, name: str) -> None:
    """t has x's dtype and device, else a clear error naming both."""
    if t.dtype != x.dtype:
        raise TypeError(f"{name}: mixed dtypes: x is {x.dtype}, {label} is {t.dtype} "
                        "(cast them to one dtype, or run under torch.autocast)")
    if t.device != x.device:
        raise ValueError(f"{name}: tensors on different devices: x on {x.device}, {label} on {t.device}")


def check_residual(residual, x, out_features: int, name: str) -> None:
    """Clear errors for a residual added to a linear layer's output (x's dtype and device)."""
    if residual is None:
        return
    if not isinstance(residual, torch.Tensor):
        raise TypeError(f"{name}: residual must be a tensor or None, got {type(residual).__name__}")
    shape = (*x.shape[:-1], out_features)
    if tuple(residual.shape) != shape:
        raise ValueError(f"{name}: residual has shape {tuple(residual.shape)}, the output's is {shape}")
    _check_beside_x(residual, "residual", x, name)


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ weight^T + bias (+ residual), as F.linear (and an add), with the bias gradient
    computed by fastgpt's kernel and the residual added in the GEMM's epilogue.

    Args:
        x: (..., in_features) tensor, float16 / bfloat16 / float32 (float64 on the torch backend).
        weight: (out_features, in_features); bias: (out_features,) or None. Under autocast all
            three are cast to the autocast dtype first, as F.linear's are.
        residual: (..., out_features) of the output's dtype, or None: added to the output (a
            pre-LN block's residual stream); its gradient is the output's.
    Returns:
        (..., out_features) tensor of x's (autocast) dtype, differentiable in all four.
    Raises:
        TypeError: a non-tensor, a non-floating dtype, or dtypes that differ outside autocast.
        ValueError: shapes that do not match, or tensors on different devices.
    """
    x, weight, bias, residual = autocast_inputs(x, weight, bias, residual)
    check_linear(x, weight, bias, "fused_linear")
    check_residual(residual, x, weight.shape[0], "fused_linear")
    return linear(x, weight, bias, residual, device=x.device)


# ---- triton backend


def _bias_grad_impl(dy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    from fastgpt.kernels import linear as kernels
    return kernels.column_sum(dy, out_dtype=dtype)


_bias_grad = torch.library.custom_op("fastgpt::linear_bias_grad", mutates_args=())(_bias_grad_impl)


@_bias_grad.register_fake
def _(dy, dtype):
    return dy.new_empty(dy.shape[1], dtype=dtype)


def bias_grad_reference(dy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """PyTorch's column sum (fp32 accumulation): the test oracle, and what runs where launches cost."""
    return dy.sum(0, dtype=torch.float32).to(dtype)


def bias_grad(dy: torch.Tensor, dtype: torch.dtype, kernel: bool) -> torch.Tensor:
    """dy (M, N) summed over rows (fp32 accumulation) -> (N,) in dtype: a linear layer's dbias.

    kernel: the column-sum kernel, for where launches are free (CUDA graphs, torch.compile),
    else PyTorch's reduction, for eager execution, where the kernel's Triton launch costs more
    host time than it saves. Callers decide in their forward, by `not launch_bound()`: a backward
    on CUDA runs on autograd's device thread, which does not see the forward's replayed_steps()
    context (fastgpt.ops.dispatch)."""
    if not kernel:
        return bias_grad_reference(dy, dtype)
    return call_custom_op(_bias_grad, _bias_grad_impl, dy, dtype)


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.has_residual = bias is not None, residual is not None
        # cuBLAS, the bias and the residual in the GEMM's epilogue, the algorithm timed per shape
        # (kernels/gemm.py; linear_triton applies this Function only where launches are free)
        addend = None if residual is None else residual.reshape(-1, weight.shape[0]).contiguous()
        return gemm.matmul(x.reshape(-1, x.shape[-1]), weight.t(), bias, addend=addend,
                           tuned=True).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = gemm.matmul(dy2, weight, tuned=True).view(x.shape) if ctx.needs_input_grad[0] else None
        dweight = (gemm.matmul(dy2.t(), x.reshape(-1, x.shape[-1]), tuned=True) if ctx.needs_input_grad[1]
                   else None)
        # linear_triton applies this Function only where launches are free: the kernel
        dbias = bias_grad(dy2, weight.dtype, kernel=True) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dweight, dbias, dy if ctx.has_residual else None


@linear.register("triton")
def linear_triton(x, weight, bias, residual=None):
    # eagerly, the bias-gradient kernel's launch (Python, Triton's launcher) costs more host time
    # than the reduction saves on the GPU: 796 against 366 us per fwd+bwd (H100 machine,
    # host_profile, run 14); inside a CUDA graph or a compiled graph the kernel runs
    if launch_bound():
        return linear_reference(x, weight, bias, residual)
    return _LinearFunction.apply(x, weight, bias, residual)
