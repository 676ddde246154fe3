"""Causal flash attention and the drop-in `FusedCausalSelfAttention` module.

Layers (as flash_attn_interface.py): the public `flash_attention` (documented, validates its
inputs) -> the `attention` Op of the backend switch -> for the triton backend the autograd
Function `_FlashAttentionFunction` (save/backward wiring only) -> the torch.library custom ops
"fastgpt::attention_fwd" / "fastgpt::attention_bwd" (with fake implementations, so
torch.compile(fullgraph=True) traces through them; eager mode calls their Python
implementations directly, fastgpt.ops.dispatch) -> the launchers in kernels/attention.py.
The reference below (F.scaled_dot_product_attention) is the `torch` backend and the test oracle.

What the triton forward saves for the backward: q, k, v, the output O and the row log-sum-exp
(B, H, T) fp32, and with dropout a one-element seed tensor: the mask is regenerated, never stored.
Outputs and gradients come back as (B, H, T, D) views of (B, T, H, D) memory, as SDPA's flash
backend returns them, so the module's `y.transpose(1, 2).reshape(B, T, C)` costs no copy.

`flash_attention_qkvpacked` (op `attention_qkvpacked`, custom ops "fastgpt::attention_qkvpacked_fwd"
/ "_bwd") is the same attention on one (B, T, 3, H, D) tensor, the fused c_attn output viewed, as
flash_attn's qkvpacked interface: the same kernels read the strided q, k, v in place, and the
backward writes dq, dk, dv into the three slices of one (B, T, 3, H, D) gradient. Through the
unpacked function, autograd would stack three separate gradients into a new tensor (a copy of
the whole qkv gradient). FusedCausalSelfAttention uses it; its KV-cache path uses the views.

The packed op also takes, optionally, the bias its projection added to qkv (`bias_grad_for`), to
return that bias's gradient from tiles the triton backward holds anyway (kernels/attention.py,
"bias grad"), so the projection need not sum d(qkv) for it (FusedCausalSelfAttention's
fuse_qkv_bias_grad). The bias's value is not used: the projection added it, without gradient.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op
from fastgpt.ops.dispatch import absent, call_custom_op, column_sums_deferral, deferring
from fastgpt.ops.linear import fused_linear

attention = Op("attention")
# The same attention on one packed (B, T, 3, H, D) qkv tensor (FusedCausalSelfAttention's path):
# its triton backward writes dq, dk, dv into one (B, T, 3, H, D) gradient, where the unpacked op
# on the three views of qkv makes autograd stack three gradients into a new tensor (a copy).
attention_qkvpacked = Op("attention_qkvpacked")

# What the Triton kernels take (kernels/attention.py keeps the same lists; it is imported lazily).
KERNEL_HEAD_DIMS = (16, 32, 64, 128)
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FLOAT_DTYPES = KERNEL_DTYPES + (torch.float64,)


@attention.register("torch")
def attention_reference(q, k, v, causal, softmax_scale, dropout_p):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=softmax_scale,
                                          dropout_p=dropout_p)


@attention_qkvpacked.register("torch")
def attention_qkvpacked_reference(qkv, causal, softmax_scale, dropout_p, bias_grad_for=None):
    if bias_grad_for is not None:
        # qkv already holds the bias (added without gradient); adding bias - bias (exact zeros)
        # routes d(qkv)'s sum over tokens to it, as the projection would have
        routed = (bias_grad_for - bias_grad_for.detach()).to(qkv.dtype)
        qkv = qkv + routed.view(3, qkv.shape[3], qkv.shape[4])
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    return attention_reference(q, k, v, causal, softmax_scale, dropout_p).transpose(1, 2)


# ---- validation ----

def _check_inputs(q, k, v, dropout_p: float) -> None:
    """Errors every backend shares: types, shapes, dtypes, devices, dropout range."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(t, name)
        if t.dim() != 4:
            raise ValueError(f"flash_attention: {name} must be 4-D (B, H, T, D), got shape {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError("flash_attention: q, k and v must have the same shape (B, H, T, D), got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"flash_attention: q, k, v must be float16, bfloat16 or float32, got {q.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"flash_attention: q, k and v must share one dtype, got q {q.dtype}, "
                        f"k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"flash_attention: q, k and v are on different devices: q on {q.device}, "
                         f"k on {k.device}, v on {v.device}")
    if q.shape[2] < 1:
        raise ValueError(f"flash_attention: the sequence is empty (T = 0), shape {tuple(q.shape)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"flash_attention: dropout_p must be in [0, 1), got {dropout_p}")


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"flash_attention: {name} must be a torch.Tensor, got {type(t).__name__}")


def _check_qkvpacked(qkv, dropout_p: float) -> None:
    _check_tensor(qkv, "qkv")
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"flash_attention_qkvpacked: qkv must be 5-D (B, T, 3, H, D), got shape {tuple(qkv.shape)}")
    # _check_inputs on the three (B, H, T, D) views of qkv, less what views of one tensor satisfy
    # by construction (tensors, 4-D, one shape, dtype and device): the same errors, without
    # building three views on every call (host time; see fastgpt/ops/dispatch.py)
    if qkv.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"flash_attention: q, k, v must be float16, bfloat16 or float32, got {qkv.dtype}")
    if qkv.shape[1] < 1:
        B, T, _, H, D = qkv.shape
        raise ValueError(f"flash_attention: the sequence is empty (T = 0), shape {(B, H, T, D)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"flash_attention: dropout_p must be in [0, 1), got {dropout_p}")


def _check_kernel_inputs(q: torch.Tensor) -> None:
    """What the Triton kernels add: 16/32-bit dtypes and head dims 16, 32, 64, 128."""
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"flash_attention (triton backend): dtype {q.dtype} is not supported; "
                        "use float16, bfloat16 or float32 (or the torch backend)")
    if q.shape[-1] not in KERNEL_HEAD_DIMS:
        raise ValueError(f"flash_attention (triton backend): head dim {q.shape[-1]} is not supported; "
                         f"it must be one of {KERNEL_HEAD_DIMS} (or use the torch backend)")


def _kernel_problem(q: torch.Tensor, *args) -> str | None:
    """Why the Triton kernels cannot take q (or a packed qkv), or None: the backend switch then
    runs the torch implementation under "auto" (fastgpt.backend.Op)."""
    if q.dtype not in KERNEL_DTYPES:
        return f"the Triton kernels take float16, bfloat16 or float32, not {q.dtype}"
    if q.shape[-1] not in KERNEL_HEAD_DIMS:
        return f"the Triton kernels take head dims {KERNEL_HEAD_DIMS}, not {q.shape[-1]}"
    return None


# ---- public function ----

def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    softmax_scale: float | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention, softmax(q k^T * softmax_scale [+ causal mask]) v, fused.

    The result equals F.scaled_dot_product_attention(q, k, v, is_causal=causal,
    scale=softmax_scale, dropout_p=dropout_p) (up to rounding, and for dropout_p > 0 up to which
    elements are dropped). On the triton backend it never forms the T x T score matrix: the
    forward keeps the row log-sum-exp, and the backward recomputes the scores tile by tile.

    Args:
        q, k, v: (B, H, T, D) tensors of one dtype (float16, bfloat16, float32) on one device.
            Any strides: the transposed views a fused qkv projection yields are read in place.
            The triton backend takes head dims D in 16, 32, 64, 128 and any T >= 1.
        causal: query i attends to keys 0..i only (GPT's mask) when True.
        softmax_scale: multiplies q k^T before the softmax; default 1 / sqrt(D).
        dropout_p: probability of zeroing each attention weight (then scaled by 1 / (1 - p)),
            as nn.Dropout on the softmax output. The mask comes from a seed drawn by the
            device's default generator, so torch.manual_seed makes runs reproducible and a
            captured CUDA graph draws a new one at every replay; the backward regenerates the
            same mask. Pass 0.0 in eval mode: this function has no `training`.
    Returns:
        (B, H, T, D) tensor of q's dtype (memory laid out (B, T, H, D), as SDPA's flash backend
        does), differentiable in q, k and v.
    Raises:
        TypeError: a non-tensor, mixed dtypes, a non-floating dtype, or float64 on the triton
            backend (float64 runs on the torch backend only).
        ValueError: not 4-D, q/k/v shapes differ, tensors on different devices, T = 0,
            dropout_p outside [0, 1), or (triton backend) an unsupported head dim.
        fastgpt.BackendError: the triton backend got CPU tensors outside TRITON_INTERPRET=1.
    The backend (torch / triton; cuda runs triton) is chosen by fastgpt.backend.
    """
    _check_inputs(q, k, v, dropout_p)
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    return attention(q, k, v, bool(causal), float(softmax_scale), float(dropout_p), device=q.device)


def flash_attention_qkvpacked(qkv: torch.Tensor, causal: bool = True, softmax_scale: float | None = None,
                              dropout_p: float = 0.0) -> torch.Tensor:
    """flash_attention on one packed tensor: the output of a fused qkv projection, viewed.

    Equal to flash_attention(*qkv.permute(2, 0, 3, 1, 4), ...).transpose(1, 2) (the same kernels
    read the same strided q, k, v), but on the triton backend the backward writes dq, dk and dv
    straight into one (B, T, 3, H, D) gradient of qkv, instead of three gradients that autograd
    then stacks into a new tensor (a copy of 3 x B*T*H*D elements). As flash_attn's
    flash_attn_qkvpacked_func.

    Args:
        qkv: (B, T, 3, H, D), e.g. c_attn(x).view(B, T, 3, H, D); any strides; the dtypes, head
            dims and T of flash_attention.
        causal, softmax_scale, dropout_p: as flash_attention (the same seed gives the same mask).
    Returns:
        (B, T, H, D) tensor of qkv's dtype (contiguous on the triton backend, so
        `.view(B, T, H * D)` is free), differentiable in qkv.
    Raises:
        TypeError, ValueError: as flash_attention, and ValueError when qkv is not (B, T, 3, H, D).
        fastgpt.BackendError: the triton backend got a CPU tensor outside TRITON_INTERPRET=1.
    """
    _check_qkvpacked(qkv, dropout_p)
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(qkv.shape[-1])
    return attention_qkvpacked(qkv, bool(causal), float(softmax_scale), float(dropout_p), device=qkv.device)


# ---- triton backend: torch.library custom ops over kernels/attention.py ----

def draw_dropout_seed(device: torch.device | str) -> torch.Tensor:
    """A one-element int64 tensor on `device`, drawn by its default generator (reproducible under
    torch.manual_seed). The kernels read it from device memory, so nothing waits on the host, and a
    CUDA graph that captured the draw draws a new seed at every replay (PyTorch's CUDA generator
    is graph-safe): a captured training step with dropout drops new elements every step."""
    return torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=device)


def _empty_bthd_like(q: torch.Tensor) -> torch.Tensor:
    B, H, T, D = q.shape
    return q.new_empty(B, T, H, D).transpose(1, 2)


def _attention_fwd_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, softmax_scale: float,
                   dropout_p: float, seed: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import attention as kernels
    return kernels.attention_fwd(q, k, v, causal, softmax_scale, dropout_p, seed)


_attention_fwd = torch.library.custom_op("fastgpt::attention_fwd", mutates_args=())(_attention_fwd_impl)

@_attention_fwd.register_fake
def _(q, k, v, causal, softmax_scale, dropout_p, seed):
    B, H, T, _ = q.shape
    return _empty_bthd_like(q), q.new_empty(B, H, T, dtype=torch.float32)


def _attention_bwd_impl(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, causal: bool, softmax_scale: float, dropout_p: float,
                   seed: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import attention as kernels
    return kernels.attention_bwd(dout, q, k, v, out, lse, causal, softmax_scale, dropout_p, seed)


_attention_bwd = torch.library.custom_op("fastgpt::attention_bwd", mutates_args=())(_attention_bwd_impl)

@_attention_bwd.register_fake
def _(dout, q, k, v, out, lse, causal, softmax_scale, dropout_p, seed):
    return _empty_bthd_like(q), _empty_bthd_like(q), _empty_bthd_like(q)


class _FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, softmax_scale, dropout_p):
        seed = draw_dropout_seed(q.device) if dropout_p > 0.0 else None
        out, lse = call_custom_op(_attention_fwd, _attention_fwd_impl,
                                  q, k, v, causal, softmax_scale, dropout_p, seed)
        ctx.save_for_backward(q, k, v, out, lse, seed)
        ctx.causal, ctx.softmax_scale, ctx.dropout_p = causal, softmax_scale, dropout_p
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, seed = ctx.saved_tensors
        dq, dk, dv = call_custom_op(_attention_bwd, _attention_bwd_impl, dout, q, k, v, out, lse, ctx.causal,
                                                     ctx.softmax_scale, ctx.dropout_p, seed)
        return dq, dk, dv, None, None, None


@attention.register("triton", unsupported=_kernel_problem)
def attention_triton(q, k, v, causal, softmax_scale, dropout_p):
    _check_kernel_inputs(q)
    return _FlashAttentionFunction.apply(q, k, v, causal, softmax_scale, dropout_p)


def _attention_qkvpacked_fwd_impl(qkv: torch.Tensor, causal: bool, softmax_scale: float, dropout_p: float,
                             seed: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import attention as kernels
    return kernels.attention_qkvpacked_fwd(qkv, causal, softmax_scale, dropout_p, seed)


_attention_qkvpacked_fwd = torch.library.custom_op("fastgpt::attention_qkvpacked_fwd", mutates_args=())(
    _attention_qkvpacked_fwd_impl)

@_attention_qkvpacked_fwd.register_fake
def _(qkv, causal, softmax_scale, dropout_p, seed):
    B, T, _, H, D = qkv.shape
    return qkv.new_empty(B, T, H, D), qkv.new_empty(B, H, T, dtype=torch.float32)


def _attention_qkvpacked_bwd_impl(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                                  causal: bool, softmax_scale: float, dropout_p: float,
                                  seed: Optional[torch.Tensor], bias_grad_dtype: Optional[torch.dtype]
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """d(qkv), and with bias_grad_dtype the gradient (3 * H * D,) in that dtype of a bias added to
    qkv (else a 0-element stand-in)."""
    from fastgpt.kernels import attention as kernels
    dqkv, dbias = kernels.attention_qkvpacked_bwd(dout, qkv, out, lse, causal, softmax_scale, dropout_p,
                                                  seed, bias_grad_dtype=bias_grad_dtype)
    return dqkv, absent(qkv) if dbias is None else dbias.flatten()


_attention_qkvpacked_bwd = torch.library.custom_op("fastgpt::attention_qkvpacked_bwd", mutates_args=())(
    _attention_qkvpacked_bwd_impl)

@_attention_qkvpacked_bwd.register_fake
def _(dout, qkv, out, lse, causal, softmax_scale, dropout_p, seed, bias_grad_dtype):
    n = 3 * qkv.shape[3] * qkv.shape[4]
    dbias = absent(qkv) if bias_grad_dtype is None else qkv.new_empty(n, dtype=bias_grad_dtype)
    return qkv.new_empty(qkv.shape), dbias


class _FlashAttentionQKVPackedFunction(torch.autograd.Function):
    """(qkv, bias_grad_for) -> attention output. bias_grad_for (or None): a bias the projection
    already added to qkv; not read, its gradient comes back from the backward kernels' tiles."""

    @staticmethod
    def forward(ctx, qkv, bias_grad_for, causal, softmax_scale, dropout_p):
        seed = draw_dropout_seed(qkv.device) if dropout_p > 0.0 else None
        out, lse = call_custom_op(_attention_qkvpacked_fwd, _attention_qkvpacked_fwd_impl,
                                  qkv, causal, softmax_scale, dropout_p, seed)
        ctx.save_for_backward(qkv, out, lse, seed)
        ctx.causal, ctx.softmax_scale, ctx.dropout_p = causal, softmax_scale, dropout_p
        ctx.bias_shape = None if bias_grad_for is None else bias_grad_for.shape
        ctx.bias_dtype = None if bias_grad_for is None else bias_grad_for.dtype
        ctx.column_sums = column_sums_deferral()   # where the backward's column sums go (dispatch)
        return out

    @staticmethod
    def backward(ctx, dout):
        qkv, out, lse, seed = ctx.saved_tensors
        with deferring(ctx.column_sums):
            dqkv, dbias = call_custom_op(_attention_qkvpacked_bwd, _attention_qkvpacked_bwd_impl,
                                         dout, qkv, out, lse, ctx.causal, ctx.softmax_scale, ctx.dropout_p, seed,
                                         ctx.bias_dtype)
        return dqkv, None if ctx.bias_shape is None else dbias.view(ctx.bias_shape), None, None, None


@attention_qkvpacked.register("triton", unsupported=_kernel_problem)
def attention_qkvpacked_triton(qkv, causal, softmax_scale, dropout_p, bias_grad_for=None):
    _check_kernel_inputs(qkv)
    return _FlashAttentionQKVPackedFunction.apply(qkv, bias_grad_for, causal, softmax_scale, dropout_p)


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
    """Drop-in for nanoGPT's CausalSelfAttention: c_attn -> flash attention -> c_proj.

    fuse_qkv_bias_grad (default True): c_attn's bias gradient from the attention backward's tiles
    (d(bq) from dQ's, d(bv) from dO's, d(bk) = 0: kernels/attention.py) instead of a column sum
    over d(qkv) (75 MB a GPT-2 layer at 16k tokens); c_attn still adds the bias in its GEMM. Only
    without dropout in effect (P's rows must sum to 1) and without a KV cache (elsewhere the
    column sum runs). On by default since run 29 (benchmarks/NOTES.md, session 7): the GPT-2
    train step 1.4% faster on the triton backend, the module 1.8%.
    """

    def __init__(self, config=None, *, n_embd: int | None = None, n_head: int | None = None,
                 bias: bool = True, dropout: float = 0.0, fuse_qkv_bias_grad: bool = True):
        super().__init__()
        if config is not None:
            n_embd, n_head = config.n_embd, config.n_head
            bias, dropout = getattr(config, "bias", True), getattr(config, "dropout", 0.0)
        if n_embd is None or n_head is None:
            raise ValueError("FusedCausalSelfAttention needs a config or n_embd and n_head")
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.fuse_qkv_bias_grad = fuse_qkv_bias_grad
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C), as nanoGPT's module; with a KV cache, x holds the new positions."""
        return self.forward_branch(x, cache, leave_proj_bias_grad=False)[0]

    def forward_branch(self, x: torch.Tensor, cache: KVCache | None = None, residual: torch.Tensor | None = None,
                       leave_proj_bias_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """residual + forward(x) for a pre-LN block's residual stream (fastgpt.model's blocks), as
        (s, bias_grad_for). Without dropout in effect the residual is added in c_proj's GEMM (its
        epilogue: fastgpt.ops.linear), so the LayerNorm after it reads one tensor, and with
        leave_proj_bias_grad c_proj's bias is added there without its gradient, which that
        LayerNorm's backward returns (FusedAddLayerNorm's bias_grad_for; bias_grad_for is then
        that bias): the bias gradient costs no pass of its own. With dropout in effect (it sits
        between c_proj and the add), no bias, or leave_proj_bias_grad False, None comes back."""
        B, T, C = x.shape
        if C != self.n_embd:
            raise ValueError(f"expected input of width {self.n_embd}, got {tuple(x.shape)}")
        dropout_p = self.dropout if self.training else 0.0
        bias = self.c_attn.bias
        # fuse_qkv_bias_grad: c_attn adds its bias without gradient, the attention backward returns it
        bias_grad_in_attention = self.fuse_qkv_bias_grad and bias is not None and cache is None and dropout_p == 0.0
        # c_attn and c_proj as F.linear, with fastgpt's bias-gradient kernel (fastgpt.ops.linear)
        qkv = fused_linear(x, self.c_attn.weight, bias.detach() if bias_grad_in_attention else bias)
        qkv = qkv.view(B, T, 3, self.n_head, C // self.n_head)                # no copy
        if bias_grad_in_attention:
            y = attention_qkvpacked(qkv, True, 1.0 / math.sqrt(C // self.n_head), 0.0, bias, device=qkv.device)
        elif cache is None:
            # packed: the backward writes d(qkv) in one buffer, no stack of dq, dk, dv
            y = flash_attention_qkvpacked(qkv, causal=True, dropout_p=dropout_p)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)     # three (B, H, T, D) strided views
            k, v = cache.append(k, v)
            y = _cached_attention(q, k, v).transpose(1, 2)
        y = y.reshape(B, T, C)   # (B, T, H, D) -> (B, T, C), free when y is contiguous
        proj_bias = self.c_proj.bias
        if dropout_p > 0.0:     # the dropout sits between c_proj and the residual add
            y = self.resid_dropout(fused_linear(y, self.c_proj.weight, proj_bias))
            return (y if residual is None else residual + y), None
        leave = leave_proj_bias_grad and proj_bias is not None
        s = fused_linear(y, self.c_proj.weight, proj_bias.detach() if leave else proj_bias, residual)
        return s, (proj_bias if leave else None)
