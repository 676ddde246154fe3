"""Fused bias + GELU MLP: y = c_proj(gelu_tanh(c_fc(x))), forward and backward.

Public functions (`fused_linear_gelu`, `fused_mlp`, the module `FusedMLP`) -> autograd Functions
(save/backward wiring) -> torch.library custom ops ("fastgpt::linear_gelu_fwd", ...) that call
the Triton launchers in kernels/mlp.py (eager mode calls the ops' Python implementations
directly: fastgpt.ops.dispatch). The references below are the `torch` backend and the
test oracle. Two ops go through the backend switch: `linear_gelu` (the first layer alone) and
`mlp` (the whole c_fc -> GELU -> c_proj, so the backward makes dpre, h and db_fc in one pass
after the GEMM that produces dh; dropout stays outside, in the module).

What the forward saves for the backward (M tokens, C -> H = 4C -> C, element size s bytes):
  x (M x C; autograd would keep it anyway for dW_fc) and the pre-activation pre = x W_fc^T + b_fc
  (M x H: M*4C*s bytes, 4x the input). h = gelu(pre) is NOT kept: the backward's pass that
  makes dpre = (dy @ W_proj) * gelu'(pre) reads pre anyway and writes h beside dpre, for
  dW_proj = dy^T @ h (a transient buffer, freed when the backward returns).
  Eager PyTorch keeps pre and h (2*M*4C*s); so this halves the MLP's saved activations.
  `MLPOptions(save_gelu=True)` keeps h as eager does, to time the difference.
  For GPT-2 small at 65536 tokens in bf16: pre is 384 MiB per layer, h would be another 384 MiB.
  (The default is save_gelu=True, see below.) With h kept, the backward needs only gelu'(pre):
  where the activations are bf16 the MLP keeps that instead of pre, as 8-bit codes (uint8, M*4C
  bytes; `MLPOptions.gelu_grad_code`, kernels/mlp_gluon.py's GRAD_CODE format: within 0.0025 of
  the derivative, as fine as bf16's own spacing for derivatives in [0.5, 1.13]). Half pre's bytes
  in the forward's store, the backward's load and the memory held between them, and the backward
  computes no tanh: the GPT-2 step 26.01 -> 25.67 ms, peak 7.35 -> 6.73 GiB (run 173, H100). Tests
  hold the kernels to a float64 MLP whose GELU backward multiplies by the same decoded codes, and
  the codes to the exact derivative within the format's bound.

Which GEMMs run where (`MLPOptions`; benchmarks/bench_mlp.py times every choice side by side):
  fc forward + bias + GELU (+ store pre)      fc="gluon" (default): kernels/mlp_gluon.py's
                                              warp-specialised Hopper kernel, the epilogue of one
                                              tile overlapping the next one's main loop; elsewhere
                                              (and fc="triton") kernels/mlp.py's Triton GEMM
  dpre = (dy W_proj) * gelu'(pre), h, db_fc   gelu_grad="gluon" (default): the same Gluon kernel
                                              with gelu'(pre) and the db_fc partials (column sums
                                              on the tensor cores) in its epilogue, h kept from
                                              the forward; elsewhere, and gelu_grad="cublas":
                                              dh = dy @ W_proj by cuBLAS, then ONE Triton
                                              elementwise pass that reads dh and pre and writes
                                              dpre (into dh's buffer), h and fp32 per-program
                                              column sums for db_fc; "gemm_epilogue": one Triton
                                              GEMM with all of that in its epilogue
  proj forward + bias                         cuBLAS addmm ("torch", default) or Triton epilogue
  dx = dpre W_fc                              cuBLAS ("torch", default) or Triton
  dW_proj, dW_fc (K = M tokens, small output) cuBLAS ("torch", default), Triton ("triton"), or
                                              Triton with h recomputed from pre in the prologue
  ("torch" is cuBLAS through kernels/gemm.py: PyTorch's call or a cuBLASLt algorithm, whichever
  the first call timed the faster for the shape)
  db_proj = dy.sum(0), db_fc from fp32 partial column sums in dpre's pass ("fused") or dpre.sum(0)
Measured at GPT-2's step shapes (16384 tokens, H100, benchmarks/NOTES.md session 11): the Gluon
fc forward ~160 us against ~195 for the Triton GEMM (cuBLAS's plain GEMM: ~119); the Gluon dpre
with db_fc ~157 us against ~243 for cuBLAS's dh + our pass; the training step 27.99 ms against
29.27 with session 10's MLP (run 67).
Why this split: the first H100 run (bf16, 65536 x 768 -> 3072) had cuBLAS 7-36% ahead of the
tiled Triton kernel on every plain GEMM, so Triton is kept only where a fusion removes a pass
over a (tokens x 4C) tensor. In the forward that pays: the persistent TMA kernel with bias +
GELU in its epilogue (0.752 ms in run 3) ties cuBLAS + a separate bias-GELU pass.
In the backward it does not: run 3 timed the gelu-grad GEMM (writing dpre and h) at 1.199 ms
against 0.883 for cuBLAS + eager's gelu_backward (two passes), and 1.052 vs 0.863 without h;
our Triton GEMM's main loop is that much slower than cuBLAS's at these shapes, more than the
pass it saves. Hence gelu_grad="cublas": cuBLAS makes dh (a plain GEMM, about 0.44 ms near
700 TFLOP/s), then one elementwise pass reads dh and pre and writes dpre and h (4 x 384 MiB
= 1.6 GB, about 0.55 ms at 3 TB/s): predicted about 1.0 ms, against 1.2 for the epilogue.
dpre overwrites dh in place, so this path holds no more (M, 4C) buffers at once (pre, dpre, h)
than the fused GEMM: peak memory is unchanged. The fused-epilogue GEMM stays selectable
("gemm_epilogue") so every run keeps timing it.
`save_gelu` trades memory for time: True keeps h from the forward (+M*4C*s bytes held between
forward and backward), and dpre's pass then writes dpre only (one M*4C store fewer, about
0.1 ms). The default is False: run 3 measured peak memory 1.96 GiB with save_gelu against
1.73 for torch.compile, and a default must not hold more than what a user would otherwise
pick; with save_gelu=False the MLP keeps only pre (half of eager's saved activations).

The `cuda` backend (fastgpt._cuda, csrc/) has four MLPs (`MLPOptions.cuda_gemm`). "cublas": the
GEMMs by torch (cuBLAS) and the elementwise bias + GELU forward and backward by the extension,
keeping a = x W_fc^T (M x 4C, as pre above) and recomputing h in the backward.
"cublaslt": every pass inside a GEMM, by cuBLASLt's epilogues (csrc/fastgpt/mlp.cu): the fc
GEMM adds the bias and applies GELU, keeping pre (and h, for dW_proj); the backward's dh GEMM
applies gelu'(pre) and sums db_fc (DGELU_BGRAD), the dW_proj GEMM sums db_proj (BGRADB).
"cublaslt_forward": the forward's epilogue only; the backward is "cublas"'s on the kept h.
"cublaslt_dgelu": "cublaslt" with the dh GEMM's DGELU epilogue alone and db_fc by fastgpt's
column-sum kernel.
Measured on an H100 (benchmarks/NOTES.md, runs 21-24, 65536 tokens, bf16): the forward epilogue
GEMM 0.64-0.68 ms against 0.762 for cuBLAS + a GELU pass; DGELU_BGRAD 1.749 ms (the GEMM at 177
TFLOP/s) but DGELU alone 0.642, against 0.910 for cuBLAS + our one pass: cuBLASLt's bias-gradient
reduction is what is slow, not the GELU gradient; BGRADB 0.489 against 0.436 for the plain GEMM
(less than a separate column sum). The MLP fwd+bwd: "cublaslt_dgelu" 3.36 ms, "cublaslt_forward"
3.47, "cublas" 3.75, "cublaslt" 4.10 (the triton backend's: 3.57). "auto" (the default) takes
"cublaslt_dgelu" where it applies (an extension built with cublasLt.h, fp16 / bf16, contiguous
weights, sizes multiples of 8), else "cublas".
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.backend import Op
from fastgpt.kernels import gemm
from fastgpt.ops.dispatch import absent, call_custom_op, column_sums_deferral, deferring, launch_bound
from fastgpt.ops.linear import bias_grad as linear_bias_grad
from fastgpt.ops.linear import bias_grad_reference, check_linear, check_residual, linear_reference
from fastgpt.ops.autocast import autocast_inputs

linear_gelu = Op("linear_gelu")
mlp = Op("mlp")



@dataclasses.dataclass(frozen=True)
class MLPOptions:
    """Which kernel runs each GEMM of the triton backend (see the module docstring)."""

    # dpre: "gluon" (kernels/mlp_gluon.py's ping-pong GEMM with gelu' and the db_fc partials in its
    # epilogue; Hopper, h kept from the forward; elsewhere "cublas") | "cublas" (dh by cuBLAS +
    # one elementwise pass) | "gemm_epilogue" (kernels/mlp.py's GEMM)
    gelu_grad: str = "gluon"
    proj: str = "torch"         # c_proj forward: "torch" (cuBLAS addmm) | "triton" (bias in the epilogue)
    dgrad: str = "torch"        # dx = dpre @ W_fc: "torch" | "triton"
    wgrad: str = "torch"        # dW GEMMs: "torch" | "triton" | "recompute" (gelu(pre) in the prologue)
    bias_grad: str = "fused"    # db_fc: "fused" (partial sums in dpre's pass) | "torch" (dpre.sum(0))
    # keep h from the forward (eager's choice) instead of re-deriving it in dpre's pass: on the
    # H100 this was the one variant at or under torch.compile's fwd+bwd time (3.648 ms against
    # 3.689, benchmarks/results/runs/run5-mlp.json), for one more (N, 4C) activation held
    save_gelu: bool = True
    # with save_gelu, keep gelu'(pre) as 8-bit codes (uint8, within 0.0025 of the derivative:
    # kernels/mlp_gluon's GRAD_CODE) instead of pre: half the bytes of the forward's second output,
    # of the backward's load and of the activation held between them (run 172: the graphed step
    # -0.20 to -0.31 ms, peak -0.54 GiB). "bf16": where the activations are bf16, whose own
    # spacing near gelu' ~ 1 (2^-8 to 2^-7) the codes' error matches; fp16 and fp32 keep pre |
    # "always" | "never". Without save_gelu pre is kept whatever this says (h is rebuilt from it)
    gelu_grad_code: str = "bf16"
    schedule: str = "persistent_tma"   # Triton GEMMs: "tiled" | "persistent" | "persistent_tma"
    # c_fc's forward GEMM (bias + GELU epilogue, pre stored): "gluon" (kernels/mlp_gluon.py's
    # warp-specialised ping-pong kernel, Hopper; where it does not apply, the triton kernel runs) |
    # "triton" (kernels/mlp.py, any GPU)
    fc: str = "gluon"
    # the cuda backend's MLP: "cublas" (cuBLAS GEMMs + the extension's bias+GELU passes) |
    # "cublaslt" (cuBLASLt GEMMs with the bias, GELU and bias-gradient epilogues; see above) |
    # "cublaslt_forward" (the forward's epilogue only, the backward as "cublas" but on the kept h) |
    # "cublaslt_dgelu" ("cublaslt" with DGELU alone: db_fc by fastgpt's column-sum kernel) |
    # "auto": "cublaslt_dgelu" where it applies (extension built with cuBLASLt, 16-bit
    # operands, sizes multiples of 8), else "cublas"
    cuda_gemm: str = "auto"

    def __post_init__(self):
        choices = {"schedule": ("tiled", "persistent", "persistent_tma"), "proj": ("triton", "torch"),
                   "gelu_grad": ("cublas", "gemm_epilogue", "gluon"), "dgrad": ("triton", "torch"),
                   "wgrad": ("torch", "triton", "recompute"), "bias_grad": ("fused", "torch"), "fc": ("triton", "gluon"),
                   "gelu_grad_code": ("bf16", "always", "never"),
                   "cuda_gemm": ("auto", "cublas", "cublaslt", "cublaslt_dgelu", "cublaslt_forward")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"MLPOptions.{field} must be one of {allowed}, got {getattr(self, field)!r}")

    def keeps_codes(self, dtype: torch.dtype) -> bool:
        """Whether the triton backend's MLP on activations of this dtype keeps gelu'(pre)'s codes."""
        return self.save_gelu and (self.gelu_grad_code == "always"
                                   or (self.gelu_grad_code == "bf16" and dtype == torch.bfloat16))


DEFAULT_OPTIONS = MLPOptions()


# ---- references: the torch backend and the test oracle ----

@linear_gelu.register("torch")
def linear_gelu_reference(x, weight, bias, options=DEFAULT_OPTIONS):
    return F.gelu(F.linear(x, weight, bias), approximate="tanh")


@mlp.register("torch")
def mlp_reference(x, fc_weight, fc_bias, proj_weight, proj_bias, options=DEFAULT_OPTIONS, residual=None):
    return linear_reference(linear_gelu_reference(x, fc_weight, fc_bias), proj_weight, proj_bias, residual)


# ---- validation (public functions) ----

# ---- public functions ----

def fused_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      options: MLPOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """gelu_tanh(x @ weight^T + bias), the first layer of a GPT-2 MLP, with the bias and GELU fused.

    Args:
        x: (..., K) input, any leading shape; float16, bfloat16 or float32.
        weight: (N, K), as nn.Linear.weight.
        bias: (N,) or None.
        options: which kernels the triton backend uses for the backward's GEMMs (MLPOptions).
    Returns:
        (..., N) tensor of x's dtype. Differentiable in x, weight and bias; the backward keeps the
        pre-activation (..., N) and computes dpre = dh * gelu'(pre) in one Triton pass.
    Raises:
        ValueError for inner sizes that do not match or tensors on different devices,
        TypeError for mixed or non-floating dtypes. Under torch.autocast the operands are first
        cast to the autocast dtype.
    The backend (torch / triton / cuda) is chosen by fastgpt.backend.
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    check_linear(x, weight, bias, "fused_linear_gelu")
    return linear_gelu(x, weight, bias, options, device=x.device)


def fused_mlp(x: torch.Tensor, fc_weight: torch.Tensor, fc_bias: torch.Tensor | None,
              proj_weight: torch.Tensor, proj_bias: torch.Tensor | None,
              options: MLPOptions = DEFAULT_OPTIONS, residual: torch.Tensor | None = None) -> torch.Tensor:
    """GPT-2's MLP without dropout: gelu_tanh(x @ fc_weight^T + fc_bias) @ proj_weight^T + proj_bias
    (+ residual).

    Args:
        x: (..., C) input, any leading shape; float16, bfloat16 or float32.
        fc_weight: (H, C) and fc_bias (H,) or None: c_fc of nanoGPT (H = 4C there, any H works).
        proj_weight: (C_out, H) and proj_bias (C_out,) or None: c_proj.
        options: kernel choices of the triton backend (MLPOptions); results agree for all.
        residual: (..., C_out) of x's dtype, or None: added to the output in c_proj's GEMM (its
            epilogue: fastgpt.ops.linear's "residual"); its gradient is the output's.
    Returns:
        (..., C_out) tensor of x's dtype, differentiable in x, all four parameters and the residual.
        The forward keeps x and the pre-activation (..., H) for the backward (see the module docstring).
    Raises:
        ValueError / TypeError as fused_linear_gelu, for either layer, and for the residual.
    """
    x, fc_weight, fc_bias, proj_weight, proj_bias, residual = autocast_inputs(
        x, fc_weight, fc_bias, proj_weight, proj_bias, residual)
    check_linear(x, fc_weight, fc_bias, "fused_mlp (c_fc)")
    check_linear(x, proj_weight, proj_bias, "fused_mlp (c_proj)", in_features=fc_weight.shape[0])
    check_residual(residual, x, proj_weight.shape[0], "fused_mlp")
    return mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, options, residual, device=x.device)


class FusedMLP(nn.Module):
    """nanoGPT's MLP (c_fc -> GELU(tanh) -> c_proj -> dropout) with bias + GELU fused into the GEMMs.

    Parameter names and shapes are nanoGPT's, so its state dicts load unchanged.
    """

    def __init__(self, config=None, *, n_embd: int | None = None, bias: bool = True,
                 dropout: float = 0.0, options: MLPOptions = DEFAULT_OPTIONS):
        super().__init__()
        if config is not None:
            n_embd, bias, dropout = config.n_embd, config.bias, config.dropout
        if n_embd is None:
            raise ValueError("FusedMLP needs a config or n_embd")
        self.options = options
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.forward_branch(x, leave_proj_bias_grad=False)[0]

    def forward_branch(self, x, residual=None, leave_proj_bias_grad: bool = True):
        """residual + forward(x) for a pre-LN block's residual stream (fastgpt.model), as
        (s, bias_grad_for). Without dropout in effect the residual is added in c_proj's GEMM
        (fused_mlp), and with leave_proj_bias_grad c_proj's bias is added there without its
        gradient, which the next LayerNorm's backward returns (bias_grad_for is that bias);
        else (dropout, no bias, leave_proj_bias_grad False) bias_grad_for is None. See
        FusedCausalSelfAttention.forward_branch."""
        proj_bias = self.c_proj.bias
        if self.dropout.p > 0.0 and self.training:       # the dropout sits between c_proj and the add
            y = self.dropout(fused_mlp(x, self.c_fc.weight, self.c_fc.bias, self.c_proj.weight, proj_bias,
                                       self.options))
            return (y if residual is None else residual + y), None
        leave = leave_proj_bias_grad and proj_bias is not None
        s = fused_mlp(x, self.c_fc.weight, self.c_fc.bias, self.c_proj.weight,
                      proj_bias.detach() if leave else proj_bias, self.options, residual)    # (B, T, C)
        return s, (proj_bias if leave else None)


# ---- triton backend: torch.library custom ops over kernels/mlp.py ----
# Optional outputs that were not asked for come back as empty tensors (custom ops return
# tensors only: dispatch.absent); the Functions turn them into None.

def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _linear_gelu_fwd_impl(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     save_pre: bool, schedule: str, fc: str = "triton") -> tuple[torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import mlp as kernels
    h, pre = kernels.linear_gelu(x, weight, bias, store_pre=save_pre, schedule=schedule, kernel=fc)
    return h, pre if pre is not None else absent(x)


_linear_gelu_fwd = torch.library.custom_op("fastgpt::linear_gelu_fwd", mutates_args=())(_linear_gelu_fwd_impl)

@_linear_gelu_fwd.register_fake
def _(x, weight, bias, save_pre, schedule, fc="triton"):
    out = x.new_empty(x.shape[0], weight.shape[0])
    return out, torch.empty_like(out) if save_pre else absent(x)


def _matmul(a, b, backend: str, schedule: str, tuned: bool = False) -> torch.Tensor:
    """a @ b for the plain GEMMs of the backward, on the kernel MLPOptions picked ("torch": cuBLAS,
    on the algorithm timed per shape where launches are free, kernels/gemm.py)."""
    if backend == "torch":
        return gemm.matmul(a, b, tuned=tuned)
    from fastgpt.kernels import mlp as kernels
    return kernels.matmul(a, b, schedule=schedule)


def _linear_gelu_bwd_impl(dh: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                     has_bias: bool, dgrad: str, wgrad: str, schedule: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import mlp as kernels
    dpre, _, dbias = kernels.gelu_bwd(dh, pre, bias_grad=has_bias, bias_dtype=weight.dtype)
    dx = _matmul(dpre, weight, dgrad, schedule)
    dweight = _matmul(dpre.t(), x, "torch" if wgrad == "torch" else "triton", schedule)
    return dx, dweight, dbias if has_bias else absent(x)


_linear_gelu_bwd = torch.library.custom_op("fastgpt::linear_gelu_bwd", mutates_args=())(_linear_gelu_bwd_impl)

@_linear_gelu_bwd.register_fake
def _(dh, x, weight, pre, has_bias, dgrad, wgrad, schedule):
    return (torch.empty_like(x), torch.empty_like(weight),
            weight.new_empty(weight.shape[0]) if has_bias else absent(x))


def _mlp_fwd_impl(x: torch.Tensor, fc_weight: torch.Tensor, fc_bias: Optional[torch.Tensor],
             proj_weight: torch.Tensor, proj_bias: Optional[torch.Tensor], save_pre: bool,
             save_gelu: bool, proj: str, schedule: str, fc: str = "triton", residual: Optional[torch.Tensor] = None,
             pre_code: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from fastgpt.kernels import mlp as kernels
    h, pre = kernels.linear_gelu(x, fc_weight, fc_bias, store_pre=save_pre, schedule=schedule, kernel=fc,
                                 pre_code=pre_code)
    if proj == "triton":
        y = kernels.linear(h, proj_weight, proj_bias, schedule=schedule)
        y = y if residual is None else y.add_(residual)
    else:       # the residual in the GEMM's epilogue
        y = gemm.matmul(h, proj_weight.t(), proj_bias, addend=residual, tuned=not launch_bound())
    return y, pre if pre is not None else absent(x), h if save_gelu else absent(x)


_mlp_fwd = torch.library.custom_op("fastgpt::mlp_fwd", mutates_args=())(_mlp_fwd_impl)

@_mlp_fwd.register_fake
def _(x, fc_weight, fc_bias, proj_weight, proj_bias, save_pre, save_gelu, proj, schedule, fc="triton", residual=None,
      pre_code=False):
    hidden = x.new_empty(x.shape[0], fc_weight.shape[0])
    return (x.new_empty(x.shape[0], proj_weight.shape[0]),
            torch.empty_like(hidden, dtype=torch.uint8 if pre_code else None) if save_pre else absent(x),
            torch.empty_like(hidden) if save_gelu else absent(x))


def _mlp_bwd_impl(dy: torch.Tensor, x: torch.Tensor, fc_weight: torch.Tensor, proj_weight: torch.Tensor,
             pre: torch.Tensor, saved_gelu: torch.Tensor, has_fc_bias: bool, has_proj_bias: bool,
             gelu_grad: str, dgrad: str, wgrad: str, bias_grad: str, schedule: str, launches_free: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # launches_free: not launch_bound() in the forward (the backward's thread cannot ask): the
    # c_proj bias gradient by the column-sum kernel, the plain GEMMs on their timed choices
    from fastgpt.kernels import mlp as kernels
    have_h = saved_gelu.numel() > 0
    flags = dict(store_gelu=not have_h and wgrad != "recompute", bias_grad=has_fc_bias and bias_grad == "fused",
                 bias_dtype=x.dtype)   # the partials summed straight into the bias's dtype: no cast kernel
    if gelu_grad == "cublas":    # dh by cuBLAS, then one pass: dpre (over dh), h, db_fc partials
        dpre, h, dfc_bias = kernels.gelu_bwd(gemm.matmul(dy, proj_weight, tuned=launches_free), pre,
                                             overwrite_dh=True, **flags)
    else:
        dpre, h, dfc_bias = kernels.matmul_gelu_grad(dy, proj_weight, pre, schedule=schedule,
                                                     kernel="gluon" if gelu_grad == "gluon" else "triton", **flags)
    if have_h:
        h = saved_gelu
    if wgrad == "recompute" and not have_h:
        dproj_weight = kernels.matmul(dy.t(), pre, prologue_gelu=True, schedule=schedule)
    else:
        dproj_weight = _matmul(dy.t(), h, "torch" if wgrad == "torch" else "triton", schedule, launches_free)
    del h
    dx = _matmul(dpre, fc_weight, dgrad, schedule, launches_free)
    dfc_weight = _matmul(dpre.t(), x, "torch" if wgrad == "torch" else "triton", schedule, launches_free)
    if has_fc_bias and dfc_bias is None:    # the kernels' sums come in x's dtype already
        dfc_bias = bias_grad_reference(dpre, x.dtype)
    return (dx, dfc_weight, dfc_bias if has_fc_bias else absent(x), dproj_weight,
            linear_bias_grad(dy, x.dtype, launches_free) if has_proj_bias else absent(x))


_mlp_bwd = torch.library.custom_op("fastgpt::mlp_bwd", mutates_args=())(_mlp_bwd_impl)

@_mlp_bwd.register_fake
def _(dy, x, fc_weight, proj_weight, pre, saved_gelu, has_fc_bias, has_proj_bias, gelu_grad, dgrad, wgrad,
      bias_grad, schedule, launches_free):
    return (torch.empty_like(x), torch.empty_like(fc_weight),
            x.new_empty(fc_weight.shape[0]) if has_fc_bias else absent(x),
            torch.empty_like(proj_weight),
            x.new_empty(proj_weight.shape[0]) if has_proj_bias else absent(x))


def _will_backward(*tensors) -> bool:
    """Whether autograd will call the backward (Function.forward runs with grad mode off)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _LinearGeluFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, options, needs_grad):
        x2d = _rows(x)
        h, pre = call_custom_op(_linear_gelu_fwd, _linear_gelu_fwd_impl,
                                x2d, weight, bias, needs_grad, options.schedule, options.fc)
        ctx.save_for_backward(x2d, weight, pre)
        ctx.has_bias, ctx.options = bias is not None, options
        return h.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dh):
        x2d, weight, pre = ctx.saved_tensors
        dx, dweight, dbias = call_custom_op(_linear_gelu_bwd, _linear_gelu_bwd_impl,
            _rows(dh), x2d, weight, pre, ctx.has_bias, ctx.options.dgrad, ctx.options.wgrad,
            ctx.options.schedule)
        return (dx.view(*dh.shape[:-1], x2d.shape[1]), dweight, dbias if ctx.has_bias else None,
                None, None)


def _residual_rows(residual: torch.Tensor | None) -> torch.Tensor | None:
    """A residual as the (M, C) rows the c_proj GEMM adds (None stays None)."""
    return None if residual is None else _rows(residual).contiguous()


class _MLPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fc_weight, fc_bias, proj_weight, proj_bias, residual, options, needs_grad):
        x2d = _rows(x)
        y, pre, saved_gelu = call_custom_op(_mlp_fwd, _mlp_fwd_impl,
            x2d, fc_weight, fc_bias, proj_weight, proj_bias, needs_grad,
            needs_grad and options.save_gelu, options.proj, options.schedule, options.fc, _residual_rows(residual),
            options.keeps_codes(x.dtype))
        ctx.has_residual = residual is not None
        ctx.save_for_backward(x2d, fc_weight, proj_weight, pre, saved_gelu)
        # c_proj's bias gradient only where it is wanted (not for a bias the next LayerNorm differentiates)
        ctx.has_biases, ctx.options = (fc_bias is not None, proj_bias is not None and ctx.needs_input_grad[4]), options
        # decided here: the backward runs on autograd's device thread, blind to replayed_steps()
        ctx.launches_free = not launch_bound()
        ctx.column_sums = column_sums_deferral()   # where the backward's column sums go (dispatch)
        return y.view(*x.shape[:-1], proj_weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2d, fc_weight, proj_weight, pre, saved_gelu = ctx.saved_tensors
        o = ctx.options
        with deferring(ctx.column_sums):
            dx, dfc_w, dfc_b, dproj_w, dproj_b = call_custom_op(_mlp_bwd, _mlp_bwd_impl,
                _rows(dy), x2d, fc_weight, proj_weight, pre, saved_gelu, *ctx.has_biases,
                o.gelu_grad, o.dgrad, o.wgrad, o.bias_grad, o.schedule, ctx.launches_free)
        has_fc_bias, has_proj_bias = ctx.has_biases
        return (dx.view(*dy.shape[:-1], x2d.shape[1]), dfc_w, dfc_b if has_fc_bias else None,
                dproj_w, dproj_b if has_proj_bias else None, dy if ctx.has_residual else None, None, None)


@linear_gelu.register("triton")
def linear_gelu_triton(x, weight, bias, options=DEFAULT_OPTIONS):
    return _LinearGeluFunction.apply(x, weight, bias, options, _will_backward(x, weight, bias))


@mlp.register("triton")
def mlp_triton(x, fc_weight, fc_bias, proj_weight, proj_bias, options=DEFAULT_OPTIONS, residual=None):
    return _MLPFunction.apply(x, fc_weight, fc_bias, proj_weight, proj_bias, residual, options,
                              _will_backward(x, fc_weight, fc_bias, proj_weight, proj_bias, residual))


# ---- cuda backend: cuBLAS GEMMs (torch) + the extension's bias + GELU epilogues ----
# Extension API (fastgpt._cuda.load()): bias_gelu_fwd(a, bias) -> h = gelu_tanh(a + bias);
# bias_gelu_bwd(dh, a, bias) -> (da, dbias), da = dh * gelu'(a + bias), dbias = da.sum(0) in fp32.

def _extension():
    from fastgpt import _cuda
    ext = _cuda.load()
    if ext is None:
        raise RuntimeError("the fastgpt CUDA extension is not built. " + _cuda.BUILD_HINT)
    return ext


def _bias_gelu_fwd_impl(a: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _extension().bias_gelu_fwd(a.contiguous(), bias.contiguous())


_bias_gelu_fwd = torch.library.custom_op("fastgpt::bias_gelu_fwd", mutates_args=())(_bias_gelu_fwd_impl)

@_bias_gelu_fwd.register_fake
def _(a, bias):
    return torch.empty_like(a)


def _bias_gelu_bwd_impl(dh: torch.Tensor, a: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    da, dbias = _extension().bias_gelu_bwd(dh.contiguous(), a.contiguous(), bias.contiguous())
    return da, dbias.to(bias.dtype)


_bias_gelu_bwd = torch.library.custom_op("fastgpt::bias_gelu_bwd", mutates_args=())(_bias_gelu_bwd_impl)

@_bias_gelu_bwd.register_fake
def _(dh, a, bias):
    return torch.empty_like(a), torch.empty_like(bias)


def _bias_or_zeros(bias, weight):
    """The extension always adds a bias: zeros stand in for None (their gradient is dropped)."""
    return bias if bias is not None else weight.new_zeros(weight.shape[0])


class _CudaLinearGeluFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x2d = _rows(x)
        bias_t = _bias_or_zeros(bias, weight)
        a = torch.mm(x2d, weight.t())                       # (M, N), no bias
        h = call_custom_op(_bias_gelu_fwd, _bias_gelu_fwd_impl, a, bias_t)
        ctx.save_for_backward(x2d, weight, a, bias_t)
        ctx.has_bias = bias is not None
        return h.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dh):
        x2d, weight, a, bias_t = ctx.saved_tensors
        da, dbias = call_custom_op(_bias_gelu_bwd, _bias_gelu_bwd_impl, _rows(dh), a, bias_t)
        dx = torch.mm(da, weight).view(*dh.shape[:-1], x2d.shape[1])
        return dx, torch.mm(da.t(), x2d), dbias if ctx.has_bias else None


class _CudaMLPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fc_weight, fc_bias, proj_weight, proj_bias, residual):
        x2d = _rows(x)
        fc_bias_t = _bias_or_zeros(fc_bias, fc_weight)
        a = torch.mm(x2d, fc_weight.t())                    # (M, H): kept, as the triton path's pre
        h = call_custom_op(_bias_gelu_fwd, _bias_gelu_fwd_impl, a, fc_bias_t)
        y = gemm.matmul(h, proj_weight.t(), proj_bias, addend=_residual_rows(residual))
        ctx.save_for_backward(x2d, fc_weight, fc_bias_t, proj_weight, a)
        ctx.has_biases = (fc_bias is not None, proj_bias is not None and ctx.needs_input_grad[4])
        ctx.has_residual = residual is not None
        return y.view(*x.shape[:-1], proj_weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2d, fc_weight, fc_bias_t, proj_weight, a = ctx.saved_tensors
        dy2d = _rows(dy)
        h = call_custom_op(_bias_gelu_fwd, _bias_gelu_fwd_impl, a, fc_bias_t)   # recomputed, not saved
        dproj_w = torch.mm(dy2d.t(), h)
        del h
        da, dfc_b = call_custom_op(_bias_gelu_bwd, _bias_gelu_bwd_impl,
                                   torch.mm(dy2d, proj_weight), a, fc_bias_t)
        dx = torch.mm(da, fc_weight).view(*dy.shape[:-1], x2d.shape[1])
        has_fc_bias, has_proj_bias = ctx.has_biases
        return (dx, torch.mm(da.t(), x2d), dfc_b if has_fc_bias else None, dproj_w,
                bias_grad_reference(dy2d, dy.dtype) if has_proj_bias else None, dy if ctx.has_residual else None)


@linear_gelu.register("cuda")
def linear_gelu_cuda(x, weight, bias, options=DEFAULT_OPTIONS):
    return _CudaLinearGeluFunction.apply(x, weight, bias)


# The backward of each cuBLASLt MLP (MLPOptions.cuda_gemm -> _CudaLtMLPFunction's `backward`):
#   "epilogues"  dh GEMM with DGELU_BGRAD (dpre, db_fc), dW_proj GEMM with BGRADB (db_proj)
#   "dgelu"      dh GEMM with DGELU (dpre), db_fc by the column-sum kernel, dW_proj with BGRADB
#   "passes"     cuBLAS dh then the extension's GELU-backward pass (dpre, db_fc), cuBLAS dW_proj
#                and PyTorch's sum for db_proj
# Without a c_proj bias every kind runs dW_proj as the plain cuBLAS GEMM.
_CUBLASLT_BACKWARDS = {"cublaslt": "epilogues", "cublaslt_dgelu": "dgelu", "cublaslt_forward": "passes"}


class _CudaLtMLPFunction(torch.autograd.Function):
    """The cuda backend's MLPs whose forward is the extension's cuBLASLt GEMM with the bias + GELU
    epilogue (keeping h and pre); `backward` picks the backward (_CUBLASLT_BACKWARDS)."""

    @staticmethod
    def forward(ctx, x, fc_weight, fc_bias, proj_weight, proj_bias, residual, backward):
        ext = _extension()
        if not ext.gemm_epilogues:
            raise RuntimeError("MLPOptions(cuda_gemm='cublaslt*') needs fastgpt's CUDA extension built with "
                               "cuBLASLt (cublasLt.h was not found at build time: install nvidia-cublas, or a "
                               "CUDA toolkit with cuBLAS, and rebuild); MLPOptions(cuda_gemm='cublas') runs "
                               "without it")
        x2d = _rows(x).contiguous()
        h, pre = ext.linear_bias_gelu(x2d, fc_weight, _bias_or_zeros(fc_bias, fc_weight))
        # decided here: the backward runs on autograd's device thread, blind to replayed_steps();
        # where launches are free, the bias-gradient kernel and the plain GEMMs' timed choices
        ctx.launches_free = not launch_bound()
        y = gemm.matmul(h, proj_weight.t(), proj_bias, addend=_residual_rows(residual), tuned=ctx.launches_free)
        ctx.save_for_backward(x2d, fc_weight, proj_weight, h, pre)
        ctx.has_biases = (fc_bias is not None, proj_bias is not None and ctx.needs_input_grad[4])
        ctx.has_residual = residual is not None
        ctx.backward_kind = backward
        return y.view(*x.shape[:-1], proj_weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2d, fc_weight, proj_weight, h, pre = ctx.saved_tensors
        dy2d = _rows(dy).contiguous()
        has_fc_bias, has_proj_bias = ctx.has_biases
        if ctx.backward_kind != "passes" and has_proj_bias:
            dproj_w, dproj_b = _extension().weight_grad_bias_grad(dy2d, h)           # (C, H), db_proj
        else:   # no c_proj bias (GPT's blocks leave it to the next add+LayerNorm): the plain GEMM,
            # 0.436 ms against BGRADB's 0.489 (run 22)
            dproj_w = gemm.matmul(dy2d.t(), h, tuned=ctx.launches_free)
            dproj_b = bias_grad_reference(dy2d, dy.dtype) if has_proj_bias else None
        if ctx.backward_kind == "passes":
            # the extension's GELU-backward pass over pre (the bias is in it: a zero bias)
            dh = gemm.matmul(dy2d, proj_weight, tuned=ctx.launches_free)
            dpre, dfc_b = call_custom_op(_bias_gelu_bwd, _bias_gelu_bwd_impl, dh, pre, pre.new_zeros(pre.shape[1]))
        else:
            ext = _extension()
            if ctx.backward_kind == "epilogues":
                dpre, dfc_b = ext.matmul_gelu_grad_bias_grad(dy2d, proj_weight, pre)  # (M, H), db_fc
            else:
                dpre = ext.matmul_gelu_grad(dy2d, proj_weight, pre)                  # (M, H)
                dfc_b = linear_bias_grad(dpre, dy.dtype, ctx.launches_free) if has_fc_bias else None
        dx = gemm.matmul(dpre, fc_weight, tuned=ctx.launches_free).view(*dy.shape[:-1], x2d.shape[1])
        dfc_w = gemm.matmul(dpre.t(), x2d, tuned=ctx.launches_free)
        return (dx, dfc_w, dfc_b if has_fc_bias else None, dproj_w, dproj_b if has_proj_bias else None,
                dy if ctx.has_residual else None, None)


def _cublaslt_applies(x, fc_weight, proj_weight) -> bool:
    """Whether the cuBLASLt GEMMs take these operands (MLPOptions(cuda_gemm="auto"))."""
    return (x.dtype in (torch.float16, torch.bfloat16) and _extension().gemm_epilogues
            and fc_weight.is_contiguous() and proj_weight.is_contiguous()
            and all(n % 8 == 0 for n in (*fc_weight.shape, proj_weight.shape[0])))


@mlp.register("cuda")
def mlp_cuda(x, fc_weight, fc_bias, proj_weight, proj_bias, options=DEFAULT_OPTIONS, residual=None):
    kind = options.cuda_gemm
    if kind == "auto":
        kind = "cublaslt_dgelu" if _cublaslt_applies(x, fc_weight, proj_weight) else "cublas"
    if kind != "cublas":
        return _CudaLtMLPFunction.apply(x, fc_weight, fc_bias, proj_weight, proj_bias, residual,
                                        _CUBLASLT_BACKWARDS[kind])
    return _CudaMLPFunction.apply(x, fc_weight, fc_bias, proj_weight, proj_bias, residual)
