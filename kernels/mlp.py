"""Fused bias + GELU MLP: one Triton GEMM whose prologue and epilogue carry the MLP's elementwise
work, so no separate pass over the (tokens x 4C) activation is spent on the bias or the GELU.

The kernel computes C[M, N] = A[M, K] @ B[K, N] with fp32 accumulation (tf32 tensor cores for
fp32 inputs unless torch's float32 matmul precision is "highest"), then one of three epilogues:

    EPILOGUE="linear"     C = acc (+ bias)
    EPILOGUE="gelu"       P = acc (+ bias); C = gelu_tanh(P); P is also stored when STORE_PRE
    EPILOGUE="gelu_grad"  C = acc * gelu_tanh'(P), P loaded from memory; gelu_tanh(P) is also
                          stored when STORE_GELU; per-tile column sums of C (fp32, before the
                          rounding to the output dtype) when BIAS_GRAD: the bias gradient
    PRE_CODE              P is stored / loaded as gelu_tanh'(P)'s 8-bit codes (a uint8 Pre:
                          kernels/mlp_gluon.gelu_grad_encode's format), half a 16-bit P's bytes;
                          the backward needs only the derivative when h was kept (not STORE_GELU)
    PROLOGUE_GELU         B tiles pass through gelu_tanh as they are loaded, so dW_proj =
                          dy^T @ gelu(pre) needs the saved pre-activation only

How the MLP y = gelu(x @ W_fc^T + b_fc) @ W_proj^T + b_proj uses it (M tokens, C -> 4C -> C):

    forward   h, pre = gelu(x @ W_fc^T + b_fc)            EPILOGUE="gelu", STORE_PRE
              y      = h @ W_proj^T + b_proj               EPILOGUE="linear"
    backward  dpre, h, db_fc = (dy @ W_proj) * gelu'(pre)  EPILOGUE="gelu_grad", STORE_GELU, BIAS_GRAD,
                                                          or (MLPOptions.gelu_grad="cublas", and the
                                                          default's fallback off Hopper)
                                                          dh = dy @ W_proj by cuBLAS, then
                                                          _mlp_gelu_bwd_kernel, STORE_GELU, BIAS_GRAD
              (on Hopper the default runs both GELU GEMMs in kernels/mlp_gluon.py)
              dW_proj = dy^T @ h   (or dy^T @ gelu(pre) with PROLOGUE_GELU), db_proj = sum(dy)
              dx = dpre @ W_fc,  dW_fc = dpre^T @ x

Why: eager PyTorch writes and re-reads the (M, 4C) activation for the bias, the GELU, and in
the backward for dh and the GELU derivative; here each of those rides on a GEMM that already
holds the tile in registers. Transposed operands are passed as strides, never copied.

Limits: 2-D operands with any strides; fp16, bf16, fp32 (fp32 via tf32 unless "highest");
the output has the dtype of A. Sizes that are not multiples of the tile are masked (rows and
columns past the edge are clamped on load, masked on store; the K tail is masked only when
K % BLOCK_K != 0). The bias gradient comes as (cdiv(M, BLOCK_M_MIN), N) fp32 partial sums,
summed by the launcher: deterministic, no atomics. Offsets switch to int64 when a tensor has
2**31 elements or more. Under TRITON_INTERPRET=1 one small tile is used so CPU tests are fast;
on the GPU the tile is autotuned per (M, N, K, flags) over Hopper configurations
(FASTGPT_AUTOTUNE=0: one pinned tile).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode
from fastgpt.kernels import mlp_gluon
from fastgpt.kernels.mlp_gluon import GELU_GRAD_MIN, GELU_GRAD_STEP, GELU_GRAD_TOP
from fastgpt.kernels.common import sm_count, sum_partials, tma_row_major, tuning_configs

_INTERPRET = interpreter_mode()

# Two schedules of the one kernel below, each with its own short list of H100 configurations
# (after the Hopper tutorials: 128-row tiles, 64-deep K steps, 3-4 stage pipelines, GROUP_M=8
# swizzle for L2 reuse). Configs that do not fit in shared memory are skipped by the autotuner.
#   tiled       one program per output tile (grid = number of tiles)
#   persistent  PROGRAMS_PER_SM programs per SM, each looping over tiles; the tile loop and the K
#               loop are flattened into one software-pipelined loop, so the next tile's first
#               loads are in flight while this tile's epilogue (bias, GELU, the stores) runs.
#               With TMA the operands come through tensor descriptors and the epilogue stores
#               are asynchronous bulk copies from shared memory.
# PROGRAMS_PER_SM=2 (two-stage, ~98 KB of shared memory each) lets one program's epilogue run
# while the other's main loop does. Shared memory with TMA (triton 3.6, sm_90, bf16): 128x256x64
# with 3 stages is 214 KB for the forward (fits) and 279 KB for dpre (skipped: over 227 KB).
# K = 768 (the two fused GEMMs) is only 12 steps of 64: the epilogue is a large share of each
# tile, which is why hiding it matters more here than in a square GEMM.
# WARP_SPECIALIZE (off in every launch) asks triton 3.6 to split the persistent loop into a TMA
# producer and two consumer warpgroups. benchmarks/probe_warp_specialize.py (run 42, H100) found
# it no faster at GPT-2's shapes (fc forward 206 us against 196 for the flattened pipeline), wrong
# output (NaN) in some configurations, and it does not compile with the bias-gradient sums.
def _configs(rows):
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "PROGRAMS_PER_SM": p},
                          num_stages=s, num_warps=w) for bm, bn, bk, s, w, p in rows]


_TILED_CONFIGS = _configs([
    (128, 256, 64, 3, 8, 1), (128, 128, 64, 4, 8, 1), (128, 128, 64, 3, 8, 1), (128, 128, 64, 4, 4, 1),
    (256, 128, 64, 3, 8, 1), (64, 128, 64, 4, 4, 1),
])
_PERSISTENT_CONFIGS = _configs([
    (128, 256, 64, 3, 8, 1), (128, 128, 64, 4, 8, 1), (128, 128, 64, 3, 8, 1), (128, 128, 64, 4, 4, 1),
    (128, 128, 64, 2, 8, 2), (128, 128, 64, 2, 4, 2),
])
_INTERPRETER_CONFIG, = _configs([(32, 32, 16, 1, 4, 1)])
# FASTGPT_AUTOTUNE=0 (GPU test runs): tiles that fit shared memory for fp32 operands too
_PINNED_TILED, _PINNED_PERSISTENT = _configs([(64, 128, 32, 3, 4, 1), (128, 128, 32, 3, 8, 1)])
# The bias-gradient partials have one row per BLOCK_M rows: sized for the smallest tile tried.
_BLOCK_M_MIN = min(c.kwargs["BLOCK_M"] for c in [_INTERPRETER_CONFIG, _PINNED_TILED, _PINNED_PERSISTENT]
                   + _TILED_CONFIGS + _PERSISTENT_CONFIGS)
_INT32_LIMIT = 2**31
SCHEDULES = ("tiled", "persistent", "persistent_tma")
DEFAULT_SCHEDULE = "persistent_tma"


@triton.jit
def _mlp_gelu(x):
    """gelu_tanh of an fp32 tile: 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).

    tanh through sigmoid: no libdevice call, and no overflow for large |x|."""
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x * tl.sigmoid(2.0 * u)


@triton.jit
def _mlp_gelu_grad(x):
    """d gelu_tanh / dx of an fp32 tile: s + x * 2 s (1 - s) du/dx, s = sigmoid(2u)."""
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    s = tl.sigmoid(2.0 * u)
    du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x)
    return s + 2.0 * x * s * (1.0 - s) * du


_GRAD_CODE_MIN = tl.constexpr(GELU_GRAD_MIN)
_GRAD_CODE_STEP = tl.constexpr(GELU_GRAD_STEP)
_GRAD_CODE_TOP = tl.constexpr(float(GELU_GRAD_TOP))


@triton.jit
def _mlp_gelu_grad_code(x):
    """gelu_tanh'(x) of an fp32 tile as PRE_CODE's uint8 codes (the nearest level)."""
    code = (_mlp_gelu_grad(x) - _GRAD_CODE_MIN) / _GRAD_CODE_STEP + 0.5
    return tl.minimum(tl.maximum(code, 0.0), _GRAD_CODE_TOP).to(tl.uint8)


@triton.jit
def _mlp_gelu_grad_of(pre, PRE_CODE: tl.constexpr):
    """gelu_tanh' of an fp32 tile loaded from Pre: the pre-activation itself, or its codes (PRE_CODE)."""
    if PRE_CODE:
        return pre * _GRAD_CODE_STEP + _GRAD_CODE_MIN
    else:
        return _mlp_gelu_grad(pre)


@triton.jit
def _mlp_store_bias_grad(DbiasPartial, tile_row, g, rows_ok, offs_n, cols_ok, N):
    """Column sums of the fp32 gradient tile g (rows past M zeroed) into row tile_row of the partials."""
    colsum = tl.sum(tl.where(rows_ok[:, None], g, 0.0), axis=0)
    tl.store(DbiasPartial + tile_row.to(tl.int64) * N + offs_n, colsum, mask=cols_ok)


@triton.jit
def _mlp_tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped ordering: GROUP_M row-tiles sweep the column-tiles together, so B stays in L2."""
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile_id // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile_id % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def _mlp_descriptor(Ptr, rows, cols, stride_row, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
                    TMA: tl.constexpr):
    """A TMA descriptor of a row-major (rows, cols) matrix, or the pointer itself without TMA."""
    if TMA:
        return tl.make_tensor_descriptor(Ptr, shape=[rows, cols], strides=[stride_row, 1],
                                         block_shape=[BLOCK_ROWS, BLOCK_COLS])
    else:
        return Ptr


@triton.jit
def _mlp_load_tile(Ptr, desc, off_m, off_n, rows, offs_n, stride_m, stride_n, mask, TMA: tl.constexpr):
    """One (BLOCK_M, BLOCK_N) epilogue operand as fp32; out-of-bounds elements read 0."""
    if TMA:
        t = desc.load([off_m, off_n])
    else:
        t = tl.load(Ptr + rows[:, None] * stride_m + offs_n[None, :] * stride_n, mask=mask, other=0.0)
    return t.to(tl.float32)


@triton.jit
def _mlp_store_tile(Ptr, desc, x, off_m, off_n, rows, offs_n, stride_m, stride_n, mask, TMA: tl.constexpr):
    """One (BLOCK_M, BLOCK_N) output tile in Ptr's dtype; TMA clips the edges, pointers mask them."""
    x = x.to(Ptr.dtype.element_ty)
    if TMA:
        desc.store([off_m, off_n], x)
    else:
        tl.store(Ptr + rows[:, None] * stride_m + offs_n[None, :] * stride_n, x, mask=mask)


@triton.jit
def _mlp_gemm_kernel(
    A, B, C, Bias, Pre, Gelu, DbiasPartial,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    stride_pm, stride_pn, stride_gm, stride_gn,
    EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_PRE: tl.constexpr, PRE_CODE: tl.constexpr,
    STORE_GELU: tl.constexpr, BIAS_GRAD: tl.constexpr, PROLOGUE_GELU: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, INDEX_64: tl.constexpr, EVEN_K: tl.constexpr,
    FLATTEN: tl.constexpr, TMA: tl.constexpr, B_NK: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    PROGRAMS_PER_SM: tl.constexpr,   # read by the launcher's grid only
):
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    k_tiles = tl.cdiv(K, BLOCK_K)
    HAS_PRE: tl.constexpr = (EPILOGUE == "gelu" and STORE_PRE) or EPILOGUE == "gelu_grad"

    # TMA: A row-major (M, K); B row-major (K, N), or (N, K) row-major when B_NK (a transposed
    # nn.Linear weight, loaded as stored and transposed in shared memory); the epilogue
    # tensors row-major (M, N). The launcher checks layouts and 16-byte alignment.
    a_desc = _mlp_descriptor(A, M, K, stride_am, BLOCK_M, BLOCK_K, TMA)
    if B_NK:
        b_desc = _mlp_descriptor(B, N, K, stride_bn, BLOCK_N, BLOCK_K, TMA)
    else:
        b_desc = _mlp_descriptor(B, K, N, stride_bk, BLOCK_K, BLOCK_N, TMA)
    c_desc = _mlp_descriptor(C, M, N, stride_cm, BLOCK_M, BLOCK_N, TMA)
    pre_desc = _mlp_descriptor(Pre, M, N, stride_pm, BLOCK_M, BLOCK_N, TMA and HAS_PRE)
    gelu_desc = _mlp_descriptor(Gelu, M, N, stride_gm, BLOCK_M, BLOCK_N, TMA and STORE_GELU)

    # tiled: the grid has one program per tile and the loop runs once; persistent: the grid has
    # a few programs per SM. The epilogue's tile index is a second counter (tile_id_c), as in the
    # Triton persistent-matmul tutorial, so the flattened pipeline does not carry one value from
    # the prologue of a tile to its epilogue.
    tile_id_c = tl.program_id(0) - tl.num_programs(0)
    for tile_id in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=FLATTEN,
                            warp_specialize=WARP_SPECIALIZE):
        pid_m, pid_n = _mlp_tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if TMA:   # out-of-bounds rows, columns and K tail are zero-filled by the copy engine
            for k in range(k_tiles):
                a = a_desc.load([pid_m * BLOCK_M, k * BLOCK_K])
                if B_NK:
                    b = b_desc.load([pid_n * BLOCK_N, k * BLOCK_K]).T
                else:
                    b = b_desc.load([k * BLOCK_K, pid_n * BLOCK_N])
                if PROLOGUE_GELU:
                    b = _mlp_gelu(b.to(tl.float32)).to(A.dtype.element_ty)   # gelu(0) = 0
                acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        else:
            # rows/columns past the edge are clamped to 0 on load (no masks in the main loop)
            # and masked on store
            offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
            offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            offs_am = tl.max_contiguous(tl.multiple_of(tl.where(offs_m < M, offs_m, 0), BLOCK_M), BLOCK_M)
            offs_bn = tl.max_contiguous(tl.multiple_of(tl.where(offs_n < N, offs_n, 0), BLOCK_N), BLOCK_N)
            if INDEX_64:
                offs_am = offs_am.to(tl.int64)
                offs_bn = offs_bn.to(tl.int64)
            for k in range(k_tiles):
                offs_k = k * BLOCK_K + tl.arange(0, BLOCK_K)
                if INDEX_64:
                    offs_k = offs_k.to(tl.int64)
                a_ptrs = A + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
                b_ptrs = B + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
                if EVEN_K:
                    a = tl.load(a_ptrs)
                    b = tl.load(b_ptrs)
                else:
                    a = tl.load(a_ptrs, mask=offs_k[None, :] < K, other=0.0)
                    b = tl.load(b_ptrs, mask=offs_k[:, None] < K, other=0.0)
                if PROLOGUE_GELU:
                    b = _mlp_gelu(b.to(tl.float32)).to(A.dtype.element_ty)   # gelu(0) = 0 keeps the K tail zero
                acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

        # epilogue
        tile_id_c += tl.num_programs(0)
        pid_m, pid_n = _mlp_tile_coords(tile_id_c, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        offs_m = off_m + tl.arange(0, BLOCK_M)
        offs_n = off_n + tl.arange(0, BLOCK_N)
        rows_ok = offs_m < M
        cols_ok = offs_n < N
        mask = rows_ok[:, None] & cols_ok[None, :]
        rows = offs_m.to(tl.int64) if INDEX_64 else offs_m
        if HAS_BIAS:
            acc += tl.load(Bias + offs_n, mask=cols_ok, other=0.0).to(tl.float32)[None, :]
        if EPILOGUE == "gelu":
            if STORE_PRE:
                p = _mlp_gelu_grad_code(acc) if PRE_CODE else acc
                _mlp_store_tile(Pre, pre_desc, p, off_m, off_n, rows, offs_n, stride_pm, stride_pn, mask, TMA)
            out = _mlp_gelu(acc)
        elif EPILOGUE == "gelu_grad":
            pre = _mlp_load_tile(Pre, pre_desc, off_m, off_n, rows, offs_n, stride_pm, stride_pn, mask, TMA)
            out = acc * _mlp_gelu_grad_of(pre, PRE_CODE)
            if STORE_GELU:   # (not with PRE_CODE: the launcher refuses)
                _mlp_store_tile(Gelu, gelu_desc, _mlp_gelu(pre), off_m, off_n, rows, offs_n,
                                stride_gm, stride_gn, mask, TMA)
            if BIAS_GRAD:
                _mlp_store_bias_grad(DbiasPartial, pid_m, out, rows_ok, offs_n, cols_ok, N)
        else:
            out = acc
        _mlp_store_tile(C, c_desc, out, off_m, off_n, rows, offs_n, stride_cm, stride_cn, mask, TMA)


def _autotuned(configs, pinned):
    """The GEMM kernel autotuned over one schedule's configs, per shape, layout and flags."""
    return triton.autotune(
        configs=tuning_configs(configs, pinned, _INTERPRETER_CONFIG),
        key=["M", "N", "K", "EPILOGUE", "STORE_PRE", "PRE_CODE", "STORE_GELU", "BIAS_GRAD", "PROLOGUE_GELU",
             "stride_ak", "stride_bk", "TMA", "B_NK"],
        reset_to_zero=["DbiasPartial"],   # partials of a smaller BLOCK_M must not linger
    )(triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_mlp_gemm_kernel))


_KERNELS = {"tiled": _autotuned(_TILED_CONFIGS, _PINNED_TILED),
            "persistent": _autotuned(_PERSISTENT_CONFIGS, _PINNED_PERSISTENT)}


@triton.jit
def _mlp_gelu_bwd_kernel(
    Dh, Pre, Dpre, Gelu, DbiasPartial, M, N,
    stride_dhm, stride_dhn, stride_pm, stride_pn, stride_dm, stride_dn, stride_gm, stride_gn,
    STORE_GELU: tl.constexpr, BIAS_GRAD: tl.constexpr, PRE_CODE: tl.constexpr, INDEX_64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dpre = dh * gelu'(pre) in one pass over (dh, pre): the GELU backward as an elementwise kernel.

    Used where dh comes from outside this kernel: the standalone linear_gelu (dh from autograd)
    and the MLP's gelu_grad="cublas" (dh from a cuBLAS GEMM). STORE_GELU also writes
    h = gelu(pre) from the same load of pre (for dW_proj); BIAS_GRAD writes this program's
    fp32 column sums of dpre to row pid_m of DbiasPartial (summed in a fixed order by the
    launcher: deterministic). Dpre may alias Dh: each element is read before it is written by
    the same program. PRE_CODE: Pre holds gelu'(pre)'s codes (then not STORE_GELU)."""
    pid_m = tl.program_id(0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows_ok = offs_m < M
    cols_ok = offs_n < N
    mask = rows_ok[:, None] & cols_ok[None, :]
    rows = offs_m.to(tl.int64) if INDEX_64 else offs_m
    dh = tl.load(Dh + rows[:, None] * stride_dhm + offs_n[None, :] * stride_dhn, mask=mask, other=0.0)
    pre = tl.load(Pre + rows[:, None] * stride_pm + offs_n[None, :] * stride_pn, mask=mask, other=0.0)
    pre = pre.to(tl.float32)
    dpre = dh.to(tl.float32) * _mlp_gelu_grad_of(pre, PRE_CODE)
    tl.store(Dpre + rows[:, None] * stride_dm + offs_n[None, :] * stride_dn,
             dpre.to(Dpre.dtype.element_ty), mask=mask)
    if STORE_GELU:
        tl.store(Gelu + rows[:, None] * stride_gm + offs_n[None, :] * stride_gn,
                 _mlp_gelu(pre).to(Gelu.dtype.element_ty), mask=mask)
    if BIAS_GRAD:
        _mlp_store_bias_grad(DbiasPartial, pid_m, dpre, rows_ok, offs_n, cols_ok, N)


# ---------------------------------------------------------------------------------------------
# launchers: plain tensor-in / tensor-out


def _check(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"the triton MLP kernels take float16, bfloat16 or float32, got {t.dtype}")


def _input_precision(dtype: torch.dtype):
    """fp32 GEMMs follow torch: tf32 unless float32 matmul precision is "highest"."""
    if dtype != torch.float32:
        return None
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _empty(like: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Every output buffer comes from here (tests swap in NaN-filled buffers)."""
    return like.new_empty(m, n)


def _holds_codes(pre: torch.Tensor, store_gelu: bool) -> bool:
    """Whether a saved pre is gelu'(pre)'s uint8 codes (PRE_CODE), which cannot give back h."""
    if pre.dtype == torch.uint8 and store_gelu:
        raise ValueError("gelu(pre) cannot be made from gelu'(pre)'s codes: keep h from the forward")
    return pre.dtype == torch.uint8


def _empty_codes(like: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """A buffer of gelu'(pre)'s uint8 codes (tests swap in one of a code no kernel writes)."""
    return torch.empty(m, n, device=like.device, dtype=torch.uint8)


def _column_total(partial: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The fp32 bias-gradient partials summed over their rows in a fixed order ((N,) in dtype: the
    bias's, so no cast kernel follows), by the shared small kernel (kernels/common.sum_partials):
    PyTorch's generic reduction over the (M / 64, N) partials took 11.7 us a call in the GPT-2 step
    (run 32's kernel profile)."""
    return sum_partials(partial, partial.new_empty(partial.shape[1], dtype=dtype))


def _empty_partials(like: torch.Tensor, rows: int, n: int) -> torch.Tensor:
    """fp32 bias-gradient partials every program row overwrites (tests swap in NaN-filled buffers)."""
    return torch.empty(rows, n, device=like.device, dtype=torch.float32)


def _needs_int64(*tensors: torch.Tensor | None) -> bool:
    return any(t is not None and t.numel() >= _INT32_LIMIT for t in tensors)


def _tma_allocator(size: int, alignment: int, stream):
    """Global scratch for the descriptors the kernel builds on the device (tl.make_tensor_descriptor)."""
    return torch.empty(size, device="cuda", dtype=torch.int8)


def _use_tma(a, b, *outs) -> tuple[bool, bool]:
    """(TMA, B_NK) for these operands: TMA only where every matrix is row-major and aligned."""
    b_nk = b.stride(0) == 1 and b.stride(1) != 1
    b_ok = tma_row_major(b.t()) if b_nk else tma_row_major(b)
    if not _INTERPRET and not (a.is_cuda and torch.cuda.get_device_capability(a.device)[0] >= 9):
        return False, b_nk
    tma = tma_row_major(a) and b_ok and all(tma_row_major(t) for t in outs if t is not None)
    return tma, tma and b_nk


def _gemm(a: torch.Tensor, b: torch.Tensor, *, bias=None, epilogue="linear", pre=None,
          store_pre=False, pre_code=False, store_gelu=False, bias_grad=False, prologue_gelu=False,
          schedule: str = DEFAULT_SCHEDULE, bias_dtype: torch.dtype = torch.float32):
    """The one GEMM launcher: a (M, K) @ b (K, N) with the requested prologue/epilogue.

    schedule: "tiled" (a program per tile), "persistent" (a few programs per SM looping over
    tiles), "persistent_tma" (persistent, with TMA loads and stores where the layouts allow;
    otherwise as "persistent"). Returns (c, pre, gelu, dbias): the outputs not asked for are None;
    dbias in bias_dtype. pre_code: the stored pre is gelu'(pre)'s uint8 codes; a uint8 pre
    (epilogue "gelu_grad") is read as codes.
    """
    _check(a, b)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    M, K = a.shape
    N = b.shape[1]
    c = _empty(a, M, N)
    pre_out = (_empty_codes(a, M, N) if pre_code else _empty(a, M, N)) if epilogue == "gelu" and store_pre else None
    pre_arg = pre if epilogue == "gelu_grad" else pre_out
    pre_is_code = pre_arg is not None and _holds_codes(pre_arg, store_gelu)
    gelu_out = _empty(a, M, N) if epilogue == "gelu_grad" and store_gelu else None
    partial = (torch.zeros(triton.cdiv(M, _BLOCK_M_MIN), N, device=a.device, dtype=torch.float32)
               if bias_grad else None)
    if M == 0 or N == 0:
        return c, pre_out, gelu_out, None if partial is None else _column_total(partial, bias_dtype)
    dummy = c   # stands in for pointers a flag switches off; never read or written
    pre_strides = pre_arg.stride() if pre_arg is not None else (0, 0)
    gelu_strides = gelu_out.stride() if gelu_out is not None else (0, 0)
    tma, b_nk = _use_tma(a, b, c, pre_arg, gelu_out) if schedule == "persistent_tma" else (False, False)
    if tma and not _INTERPRET:
        triton.set_allocator(_tma_allocator)
    persistent = schedule != "tiled"
    num_sms = sm_count(a.device, interpreter_programs=2)   # CPU tests walk the persistent tile loop

    def grid(meta):
        tiles = triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])
        return (min(tiles, num_sms * meta["PROGRAMS_PER_SM"]) if persistent else tiles,)

    _KERNELS["persistent" if persistent else "tiled"][grid](
        a, b, c, bias if bias is not None else dummy, pre_arg if pre_arg is not None else dummy,
        gelu_out if gelu_out is not None else dummy, partial if partial is not None else dummy,
        M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        pre_strides[0], pre_strides[1], gelu_strides[0], gelu_strides[1],
        EPILOGUE=epilogue, HAS_BIAS=bias is not None, STORE_PRE=pre_out is not None, PRE_CODE=pre_is_code,
        STORE_GELU=gelu_out is not None, BIAS_GRAD=partial is not None, PROLOGUE_GELU=prologue_gelu,
        INPUT_PRECISION=_input_precision(a.dtype), INDEX_64=_needs_int64(a, b, c, pre_arg),
        FLATTEN=persistent, TMA=tma, B_NK=b_nk, WARP_SPECIALIZE=False,
    )
    return c, pre_out, gelu_out, None if partial is None else _column_total(partial, bias_dtype)


def best_config(schedule: str = DEFAULT_SCHEDULE):
    """The configuration the autotuner chose for the last launch of this schedule (benchmarks)."""
    return getattr(_KERNELS["tiled" if schedule == "tiled" else "persistent"], "best_config", None)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           schedule: str = DEFAULT_SCHEDULE) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N); the bias add is the GEMM's epilogue."""
    return _gemm(x, weight.t(), bias=bias, schedule=schedule)[0]


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                store_pre: bool = False, schedule: str = DEFAULT_SCHEDULE, kernel: str = "triton",
                pre_code: bool = False):
    """h = gelu_tanh(x @ weight^T + bias) -> (h, pre); pre (the pre-activation) only if store_pre,
    as gelu_tanh'(pre)'s uint8 codes with pre_code (kernels/mlp_gluon.gelu_grad_encode's format).

    kernel="gluon" runs kernels/mlp_gluon.py's ping-pong kernel where it applies (a Hopper GPU,
    16-bit row-major operands, pre stored), this file's kernel elsewhere."""
    M, N = x.shape[0], weight.shape[0]
    if kernel == "gluon" and store_pre and mlp_gluon.applies(x, weight, bias, codes=pre_code):
        h, pre = _empty(x, M, N), (_empty_codes(x, M, N) if pre_code else _empty(x, M, N))
        mlp_gluon.launch_linear_gelu(x, weight, bias, h, pre)
        return h, pre
    h, pre, _, _ = _gemm(x, weight.t(), bias=bias, epilogue="gelu", store_pre=store_pre, pre_code=pre_code,
                         schedule=schedule)
    return h, pre


def matmul(a: torch.Tensor, b: torch.Tensor, prologue_gelu: bool = False,
           schedule: str = DEFAULT_SCHEDULE) -> torch.Tensor:
    """a (M, K) @ b (K, N), or a @ gelu_tanh(b) with prologue_gelu; any strides, no copies."""
    return _gemm(a, b, prologue_gelu=prologue_gelu, schedule=schedule)[0]


def matmul_gelu_grad(dy: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                     store_gelu: bool = False, bias_grad: bool = False, schedule: str = DEFAULT_SCHEDULE,
                     kernel: str = "triton", bias_dtype: torch.dtype = torch.float32):
    """dpre = (dy (M, N_out) @ weight (N_out, H)) * gelu_tanh'(pre (M, H)) -> (dpre, h, dbias).

    h = gelu_tanh(pre) when store_gelu, dbias = dpre.sum(0) (summed in fp32, returned in
    bias_dtype) when bias_grad, else None. kernel="gluon" runs kernels/mlp_gluon.py's ping-pong
    kernel where it applies (a Hopper GPU, 16-bit row-major operands, h not stored), else cuBLAS's
    dh and gelu_bwd's pass. A uint8 pre is gelu_tanh'(pre)'s codes (linear_gelu's pre_code).
    """
    if kernel == "gluon":
        if store_gelu or not mlp_gluon.applies_gelu_grad(dy, weight, pre):
            return gelu_bwd(torch.mm(dy, weight), pre, store_gelu=store_gelu, bias_grad=bias_grad, overwrite_dh=True,
                            bias_dtype=bias_dtype)
        M, N = pre.shape
        dpre = _empty(dy, M, N)
        partial = _empty_partials(pre, mlp_gluon.partial_rows(M), N) if bias_grad else None
        mlp_gluon.launch_matmul_gelu_grad(dy, weight, pre, dpre, partial)
        return dpre, None, None if partial is None else _column_total(partial, bias_dtype)
    dpre, _, h, dbias = _gemm(dy, weight, epilogue="gelu_grad", pre=pre, store_gelu=store_gelu,
                              bias_grad=bias_grad, schedule=schedule, bias_dtype=bias_dtype)
    return dpre, h, dbias


def gelu_bwd(dh: torch.Tensor, pre: torch.Tensor, store_gelu: bool = False, bias_grad: bool = False,
             overwrite_dh: bool = False, bias_dtype: torch.dtype = torch.float32):
    """dpre = dh * gelu_tanh'(pre), both (M, N) -> (dpre, h, dbias), one elementwise pass.

    A uint8 pre is gelu_tanh'(pre)'s codes (linear_gelu's pre_code; no store_gelu then).
    h = gelu_tanh(pre) when store_gelu, dbias = dpre.sum(0) in bias_dtype when bias_grad (fp32
    per-program partial sums, then a fixed-order sum: deterministic), else None. overwrite_dh
    writes dpre into dh's buffer (dh is then gone): the MLP's backward passes its own temporary dh
    this way, so the cuBLAS dpre path holds no more (M, N) buffers than the fused GEMM.
    """
    pre_code = _holds_codes(pre, store_gelu)
    _check(dh, *(() if pre_code else (pre,)))
    if dh.shape != pre.shape:
        raise ValueError(f"gelu_bwd: dh {tuple(dh.shape)} and pre {tuple(pre.shape)} differ in shape")
    M, N = pre.shape
    dpre = dh if overwrite_dh else _empty(dh, M, N)
    h = _empty(dh, M, N) if store_gelu else None
    # 64 x 128 tiles, 4 warps: 16-byte vector accesses, and (M/64, N) fp32 partials: 12.6 MB at
    # 65536 x 3072, under 1% of the pass's 1.6 GB of traffic
    block_m, block_n = (32, 32) if _INTERPRET else (64, 128)
    partial = _empty_partials(pre, triton.cdiv(M, block_m), N) if bias_grad else None
    if M and N:
        grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
        h_strides = h.stride() if h is not None else (0, 0)
        _mlp_gelu_bwd_kernel[grid](
            dh, pre, dpre, h if h is not None else dpre, partial if partial is not None else dpre, M, N,
            dh.stride(0), dh.stride(1), pre.stride(0), pre.stride(1), dpre.stride(0), dpre.stride(1),
            h_strides[0], h_strides[1],
            STORE_GELU=h is not None, BIAS_GRAD=partial is not None, PRE_CODE=pre_code, INDEX_64=_needs_int64(dh, pre),
            BLOCK_M=block_m, BLOCK_N=block_n, num_warps=4)
    return dpre, h, None if partial is None else _column_total(partial, bias_dtype)
