"""Fused residual-add + LayerNorm: y = LayerNorm(x + residual) * weight + bias, and s = x + residual.

Optionally with the bias of the branch that produced x (x_bias): s = x + x_bias + residual, so a
projection can leave its bias, and that bias's gradient (a column sum), to this op
(kernels/layernorm.py, "The branch's bias"). Or the projection adds its bias itself (and the
residual, in its GEMM's epilogue: fastgpt/model.py's blocks) and leaves only the gradient here
(bias_grad_for): the same column sum of s's gradient, which the backward makes anyway.

Layers, top to bottom:
  fused_add_layernorm        public function: documented, validates its inputs, dispatches on the
                             backend switch (fastgpt.backend)
  AddLayerNormFunction       autograd Function: flattens to (N, C), saves for backward, wires the
                             gradients of both outputs (y and s) into one backward call
  fastgpt::add_layernorm_fwd / fastgpt::add_layernorm_bwd
                             torch.library custom ops with fake (meta) implementations, so
                             torch.compile(fullgraph=True) traces through them; eager mode
                             calls their Python implementations directly (fastgpt.ops.dispatch)
  launchers                  kernels/layernorm.py (Triton), or the same two functions from the CUDA
                             extension (fastgpt._cuda); `impl` names which pair the ops call
The pure-PyTorch reference below is the `torch` backend and the test oracle.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastgpt.backend import Op
from fastgpt.ops.autocast import autocast_inputs
from fastgpt.ops.dispatch import absent, call_custom_op, column_sums_deferral, deferring

add_layernorm = Op("add_layernorm")


@add_layernorm.register("torch")
def add_layernorm_reference(x, residual, weight, bias, eps, x_bias=None, bias_grad_for=None):
    s = x if x_bias is None else x + x_bias
    s = s if residual is None else s + residual
    if bias_grad_for is not None:
        # x already holds that bias (added without gradient); adding bias - bias (exact zeros)
        # routes s's gradient summed over rows to it, as the layer that added it would have
        s = s + (bias_grad_for - bias_grad_for.detach())
    return F.layer_norm(s, (s.shape[-1],), weight, bias, eps), s


# ---- launcher pairs: (add_layernorm_fwd, add_layernorm_bwd) with one contract (kernels/layernorm.py)


def _triton_launchers():
    from fastgpt.kernels import layernorm   # deferred: `import fastgpt` works without triton

    return layernorm.add_layernorm_fwd, layernorm.add_layernorm_bwd


def _cuda_launchers():
    from fastgpt import _cuda

    ext = _cuda.load()
    if ext is None or not hasattr(ext, "add_layernorm_fwd"):
        return _triton_launchers()          # an extension without this op runs it as triton
    return _parameters_in_activation_dtype(ext.add_layernorm_fwd, ext.add_layernorm_bwd)


def _parameters_in_activation_dtype(fwd: Callable, bwd: Callable) -> tuple[Callable, Callable]:
    """The extension's kernels take weight and bias in the activations' dtype; the Triton ones take
    any (fp32 parameters beside half-precision activations). Cast them on the way in, and their
    gradients back on the way out (no-ops when the dtypes already agree). The extension has no
    x_bias: a call with one runs the Triton pair (whose forward also measured faster, run 25), and
    so does a plain LayerNorm (no residual), where the extension's forward writes a copy of x as s
    that nothing reads."""
    triton_fwd, triton_bwd = _triton_launchers()

    def forward(x, residual, weight, bias, eps, x_bias=None):
        if x_bias is not None or residual is None:
            return triton_fwd(x, residual, weight, bias, eps, x_bias=x_bias)
        return fwd(x, residual, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), eps)

    def backward(dy, ds, s, weight, mean, rstd, has_bias, x_bias_grad=None):
        if x_bias_grad is not None:
            return triton_bwd(dy, ds, s, weight, mean, rstd, has_bias, x_bias_grad=x_bias_grad)
        dx, dweight, dbias = bwd(dy, ds, s, weight.to(s.dtype), mean, rstd, has_bias)
        return dx, dweight.to(weight.dtype), None if dbias is None else dbias.to(weight.dtype)
    return forward, backward


LAUNCHERS: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "triton": _triton_launchers, "cuda": _cuda_launchers}


def _none_as_empty(t: Tensor | None, like: Tensor) -> Tensor:
    # custom ops return Tensors only: an absent output (s without residual, dbias without
    # bias) crosses the op boundary as a 0-element tensor
    return absent(like) if t is None else t


# ---- torch.library custom ops


def _add_layernorm_fwd_impl(x: Tensor, residual: Optional[Tensor], weight: Tensor,
                          bias: Optional[Tensor], eps: float, impl: str, x_bias: Optional[Tensor] = None
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    fwd, _ = LAUNCHERS[impl]()
    y, s, mean, rstd = fwd(x, residual, weight, bias, eps, x_bias=x_bias)
    return y, _none_as_empty(s, x), mean, rstd


_add_layernorm_fwd_op = torch.library.custom_op("fastgpt::add_layernorm_fwd", mutates_args=())(
    _add_layernorm_fwd_impl)


@_add_layernorm_fwd_op.register_fake
def _(x, residual, weight, bias, eps, impl, x_bias=None):
    stats = x.new_empty(x.shape[0], dtype=torch.float32)
    s = x.new_empty(0) if residual is None and x_bias is None else torch.empty_like(x)
    return torch.empty_like(x), s, stats, torch.empty_like(stats)


def _add_layernorm_bwd_impl(dy: Tensor, ds: Optional[Tensor], s: Tensor, weight: Tensor,
                          mean: Tensor, rstd: Tensor, has_bias: bool, impl: str,
                          x_bias: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    # x_bias (the forward's, passed for its dtype and shape only) asks for its gradient too
    _, bwd = LAUNCHERS[impl]()
    dx_bias = None if x_bias is None else torch.empty_like(x_bias)
    dx, dweight, dbias = bwd(dy, ds, s, weight, mean, rstd, has_bias, x_bias_grad=dx_bias)
    return dx, dweight, _none_as_empty(dbias, weight), _none_as_empty(dx_bias, weight)


_add_layernorm_bwd_op = torch.library.custom_op("fastgpt::add_layernorm_bwd", mutates_args=())(
    _add_layernorm_bwd_impl)


@_add_layernorm_bwd_op.register_fake
def _(dy, ds, s, weight, mean, rstd, has_bias, impl, x_bias=None):
    dbias = torch.empty_like(weight) if has_bias else weight.new_empty(0)
    dx_bias = weight.new_empty(0) if x_bias is None else torch.empty_like(x_bias)
    return torch.empty_like(s), torch.empty_like(weight), dbias, dx_bias


# ---- autograd Function


class AddLayerNormFunction(torch.autograd.Function):
    """(x, residual, weight, bias, eps, impl, x_bias=None, bias_grad_for=None) -> (y, s); s is x
    itself (as a view, an output of this node) when there is neither residual nor x_bias.

    `impl` names the launcher pair (a key of LAUNCHERS). The backward receives the gradients of
    both outputs and makes one kernel call: dx = ds + dLayerNorm(dy), returned to x and residual,
    and its column sum to x_bias, or to bias_grad_for (a bias x already holds: not read, not
    added). Returning x as s matters where x goes on as the residual stream (GPT's blocks): its
    two gradients are then summed by the kernel, not by an add pass of autograd's.
    """

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, impl, x_bias=None, bias_grad_for=None):
        C = x.shape[-1]
        x2 = x.reshape(-1, C).contiguous()
        r2 = None if residual is None else residual.reshape(-1, C).contiguous()
        weight = weight.contiguous()
        bias = None if bias is None else bias.contiguous()
        x_bias = None if x_bias is None else x_bias.contiguous()
        y, s, mean, rstd = call_custom_op(_add_layernorm_fwd_op, _add_layernorm_fwd_impl,
                                          x2, r2, weight, bias, eps, impl, x_bias)
        has_sum = r2 is not None or x_bias is not None
        # the bias whose gradient the backward sums (x_bias, or bias_grad_for: shape and dtype only)
        grad_bias = x_bias if x_bias is not None else bias_grad_for
        ctx.save_for_backward(s if has_sum else x2, weight, mean, rstd, grad_bias)
        ctx.bias_added = x_bias is not None
        ctx.column_sums = column_sums_deferral()   # where the backward's column sums go (dispatch)
        ctx.shape, ctx.impl = x.shape, impl
        ctx.has_residual, ctx.has_bias = r2 is not None, bias is not None
        ctx.set_materialize_grads(False)    # an unused output's gradient stays None: not read
        return y.view(x.shape), (s if has_sum else x2).view(x.shape)

    @staticmethod
    def backward(ctx, dy, ds=None):
        s, weight, mean, rstd, grad_bias = ctx.saved_tensors
        C = s.shape[-1]
        dy = torch.zeros_like(s) if dy is None else dy.reshape(-1, C).contiguous()
        ds = None if ds is None else ds.reshape(-1, C).contiguous()
        with deferring(ctx.column_sums):
            dx, dweight, dbias, dgrad_bias = call_custom_op(
                _add_layernorm_bwd_op, _add_layernorm_bwd_impl,
                dy, ds, s, weight, mean, rstd, ctx.has_bias, ctx.impl, grad_bias)
        dx = dx.view(ctx.shape)
        dgrad_bias = None if grad_bias is None else dgrad_bias
        return (dx, dx if ctx.has_residual else None, dweight, dbias if ctx.has_bias else None, None, None,
                dgrad_bias if ctx.bias_added else None, None if ctx.bias_added else dgrad_bias)


def _implementation(impl: str):
    """The backend implementation that runs AddLayerNormFunction on the launcher pair `impl`."""
    def run(x, residual, weight, bias, eps, x_bias=None, bias_grad_for=None):
        return AddLayerNormFunction.apply(x, residual, weight, bias, eps, impl, x_bias, bias_grad_for)
    return run


add_layernorm.register("triton")(_implementation("triton"))
add_layernorm.register("cuda")(_implementation("cuda"))


# ---- public function and module


def _check_inputs(x, residual, weight, bias, eps, x_bias=None, bias_grad_for=None) -> None:
    named = {"x": x, "residual": residual, "weight": weight, "bias": bias, "x_bias": x_bias,
             "bias_grad_for": bias_grad_for}
    for name, t in named.items():
        if t is None and name in ("residual", "bias", "x_bias", "bias_grad_for"):
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (float32, float16, bfloat16), "
                            f"got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; put them on one device")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension, the hidden size, got a scalar")
    C = x.shape[-1]
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"residual has shape {tuple(residual.shape)} but x has "
                             f"{tuple(x.shape)}; they must match")
        if residual.dtype != x.dtype:
            raise TypeError(f"x is {x.dtype} but residual is {residual.dtype}; they must match "
                            "(cast one, e.g. residual.to(x.dtype))")
    if weight.shape != (C,):
        raise ValueError(f"weight has shape {tuple(weight.shape)}; x's hidden size {C} needs ({C},)")
    if bias is not None:
        if bias.shape != (C,):
            raise ValueError(f"bias has shape {tuple(bias.shape)}; x's hidden size {C} needs ({C},)")
        if bias.dtype != weight.dtype:
            raise TypeError(f"weight is {weight.dtype} but bias is {bias.dtype}; they must match")
    if x_bias is not None and bias_grad_for is not None:
        raise ValueError("x_bias and bias_grad_for are one bias either added here or already in x: "
                         "pass one of them")
    for name, t in (("x_bias", x_bias), ("bias_grad_for", bias_grad_for)):
        if t is None:
            continue
        if t.shape != (C,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}; x's hidden size {C} needs ({C},)")
        if t.dtype != x.dtype:
            raise TypeError(f"x is {x.dtype} but {name} is {t.dtype}; they must match (as a "
                            "linear layer's input and bias must), or run under torch.autocast")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def fused_add_layernorm(x: Tensor, residual: Tensor | None, weight: Tensor,
                        bias: Tensor | None = None, eps: float = 1e-5,
                        x_bias: Tensor | None = None, bias_grad_for: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
    """Residual add fused with the LayerNorm that follows it.

    Computes, over the last dimension C,
        s = x + x_bias + residual              (leaving out whichever of the two is None)
        y = (s - mean(s)) / sqrt(var(s) + eps) * weight + bias
    and returns (y, s). In a pre-LN transformer s is the updated residual stream and y the
    input of the next sublayer, so one pass replaces an add and a LayerNorm; x_bias lets the
    projection that made x leave its bias (and the column sum that is its gradient) to this pass.

    Args:
        x: (..., C) float32, float16 or bfloat16; any leading shape (flattened to rows).
        residual: same shape and dtype as x, or None for a plain LayerNorm.
        x_bias: (C,) of x's dtype, or None: the bias of the layer that produced x.
        bias_grad_for: (C,) of x's dtype, or None: a bias the layer that produced x has already
            added (without gradient; its value is not read). Its gradient, s's summed over rows,
            comes back here, so that layer needs no column sum of its own (GPT's blocks, whose
            projections add the bias and the residual in their GEMMs). Not with x_bias.
        weight: (C,) scale; may be of another float dtype than x (e.g. fp32 parameters with
            bf16 activations); its gradient comes back in its own dtype.
        bias: (C,) shift of weight's dtype, or None.
        eps: added to the variance, >= 0.

    Returns:
        (y, s), both shaped and typed as x. Without residual and x_bias, s holds x (as cast by
        autocast): on the triton and cuda backends a view of it whose gradient this op's backward
        adds to the LayerNorm's, so x's two uses cost no add pass of autograd's.

    Gradients flow to x, residual, weight and bias; those of y and s are combined in one
    backward pass, and x and residual receive the same gradient (that of s), x_bias its sum over
    rows. Statistics and
    the weight/bias reductions are float32 whatever the input dtype, and the reductions are
    deterministic (no atomics): two runs give bit-identical gradients. Which implementation
    runs (torch, triton, cuda) is decided by fastgpt.backend; the triton and cuda ones copy
    non-contiguous inputs to contiguous rows first. Under torch.autocast every floating input
    is first cast to the autocast dtype (fastgpt.ops.autocast), so an fp32 residual stream
    meets bf16 sublayer outputs without a dtype error and the kernel runs in one dtype.

    Raises:
        TypeError: a non-float tensor, or x and residual / x_bias / bias_grad_for (weight and
            bias) of different dtypes.
        ValueError: residual not shaped as x, weight/bias/x_bias/bias_grad_for not (C,), both
            x_bias and bias_grad_for, tensors on different devices, a scalar x, eps < 0.
    """
    if isinstance(x, Tensor):       # (anything else gets its clear error from _check_inputs)
        x, residual, weight, bias, x_bias, bias_grad_for = autocast_inputs(x, residual, weight, bias, x_bias,
                                                                           bias_grad_for)
    _check_inputs(x, residual, weight, bias, eps, x_bias, bias_grad_for)
    return add_layernorm(x, residual, weight, bias, float(eps), x_bias, bias_grad_for, device=x.device)


class FusedAddLayerNorm(nn.Module):
    """LayerNorm over the last dimension that first adds a residual: forward(x, residual=None,
    x_bias=None, bias_grad_for=None) returns (LayerNorm(s), s) with s = x + x_bias + residual
    (fused_add_layernorm). Parameters and state dict as nn.LayerNorm (weight, and bias unless
    bias=False), so nn.LayerNorm checkpoints load unchanged."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: Tensor, residual: Tensor | None = None, x_bias: Tensor | None = None,
                bias_grad_for: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return fused_add_layernorm(x, residual, self.weight, self.bias, self.eps, x_bias, bias_grad_for)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, bias={self.bias is not None}"
