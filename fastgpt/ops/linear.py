"""A linear layer y = x W^T + b whose bias gradient is a Triton column sum (kernels/linear.py).

The GEMMs stay cuBLAS (forward with the bias in its epilogue, both backward GEMMs as autograd
would run them); what changes is dbias = dy.sum(0), which PyTorch runs as a generic reduction
well under the copy bandwidth (see kernels/linear.py). FusedCausalSelfAttention's c_attn and
c_proj go through it, and the MLP's c_proj bias gradient uses the same kernel.

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
from fastgpt.ops.autocast import autocast_inputs
from fastgpt.ops.dispatch import call_custom_op, launch_bound

linear = Op("linear")


@linear.register("torch")
def linear_reference(x, weight, bias):
    return F.linear(x, weight, bias)


def _check(x, weight, bias) -> None:
    for name, t in (("x", x), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fused_linear: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"fused_linear: {name} must be floating point, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"fused_linear: x is on {x.device} but {name} on {t.device}")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"fused_linear: x {tuple(x.shape)} does not match weight {tuple(weight.shape)} "
                         "(expected x (..., in_features), weight (out_features, in_features))")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"fused_linear: bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
    if not (x.dtype == weight.dtype and (bias is None or bias.dtype == x.dtype)):
        raise TypeError(f"fused_linear: x, weight and bias must share one dtype (or run under autocast), "
                        f"got x {x.dtype}, weight {weight.dtype}" + (f", bias {bias.dtype}" if bias is not None else ""))


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ weight^T + bias, as F.linear, with the bias gradient computed by fastgpt's kernel.

    Args:
        x: (..., in_features) tensor, float16 / bfloat16 / float32 (float64 on the torch backend).
        weight: (out_features, in_features); bias: (out_features,) or None. Under autocast all
            three are cast to the autocast dtype first, as F.linear's are.
    Returns:
        (..., out_features) tensor of x's (autocast) dtype, differentiable in all three.
    Raises:
        TypeError: a non-tensor, a non-floating dtype, or dtypes that differ outside autocast.
        ValueError: shapes that do not match, or tensors on different devices.
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    _check(x, weight, bias)
    return linear(x, weight, bias, device=x.device)


# ---- triton backend


def _bias_grad_impl(dy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    from fastgpt.kernels import linear as kernels
    return kernels.column_sum(dy, out_dtype=dtype)


_bias_grad = torch.library.custom_op("fastgpt::linear_bias_grad", mutates_args=())(_bias_grad_impl)


@_bias_grad.register_fake
def _(dy, dtype):
    return dy.new_empty(dy.shape[1], dtype=dtype)


def bias_grad(dy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """dy (M, N) summed over rows (fp32 accumulation) -> (N,) in dtype: a linear layer's dbias."""
    return call_custom_op(_bias_grad, _bias_grad_impl, dy, dtype)


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)        # cuBLAS, the bias in the GEMM's epilogue

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = torch.mm(dy2, weight).view(x.shape) if ctx.needs_input_grad[0] else None
        dweight = torch.mm(dy2.t(), x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
        dbias = bias_grad(dy2, weight.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dweight, dbias


@linear.register("triton")
def linear_triton(x, weight, bias):
    # eagerly, the bias-gradient kernel's launch (Python, Triton's launcher) costs more host time
    # than the reduction saves on the GPU: 796 against 366 us per fwd+bwd (H100 machine,
    # host_profile, run 14); inside a CUDA graph or a compiled graph the kernel runs
    if launch_bound():
        return F.linear(x, weight, bias)
    return _LinearFunction.apply(x, weight, bias)
