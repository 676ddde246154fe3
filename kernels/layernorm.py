"""Fused residual-add + LayerNorm, forward and backward, in Triton.

What is fused. A pre-LN GPT block computes `s = x + residual` (the residual stream) and then
`y = LayerNorm(s) * weight + bias`. As separate PyTorch ops that is an add kernel (read x and r,
write s) and a norm kernel (read s, write y) forward, and about as many passes backward. Here
each direction is one pass over the activations:
  forward   read x, r  -> write s, y, and mean / rstd (one fp32 each per row)
  backward  read dy, ds, s (+ mean / rstd) -> write dx = ds + dLayerNorm(dy), the gradient of s,
            which is the gradient of both x and residual; dweight / dbias are reduced on the way.
The op is memory bound, so the bytes above over the device's copy bandwidth are its floor.

Why this shape. The op is memory bound, and an H100 only reaches its copy bandwidth with about
bandwidth x latency = 3 TB/s x ~1 us = ~3 MB of loads in flight chip-wide, ~25 KB per SM.
  Forward: one program owns BLOCK_N whole rows (BLOCK_C = next_power_of_2(C) columns, the tail
  masked) and ROW_TILE = 2048 elements at least (2 rows x 1024 for C = 768, 8 warps), so the row
  statistics are register reductions with no second read of memory. One row a program (ROW_TILE
  1024, 4 warps) measured 2.3x slower at the same bytes per SM: twice the programs, each paying
  the fixed cost (index math, weight / bias loads, two block-wide reductions, each a barrier,
  the mean / rstd stores) for 1.5 KB of a row; 4 rows (8 warps, 16 values per thread of every
  row tensor) also halved the speed, presumably registers cutting resident programs to two per
  SM. The benchmark times the neighbours (tile x warps) so a GPU run can say more.
  Backward: each program owns ROWS_PER_PROGRAM rows (64 by default; fewer when N is small, so
  every SM gets work) and walks them in 2D tiles of BLOCK_R rows x BLOCK_C columns (BWD_ROW_TILE
  = 2048 elements: 2 x 1024 for C = 768). It issues the loads of the next tile (s, dy, ds, mean,
  rstd, kept in their storage dtype: 3 x 8 registers a thread) before computing and storing
  the current one, so a program always has a tile in flight instead of stalling on every load
  (a register double buffer; plain loads are not pipelined by Triton outside dot loops).
  xhat is recomputed from s, mean and rstd; the weight is loaded once per program; the dweight /
  dbias partial sums are fp32 [BLOCK_C] register vectors (the tile's row axis summed in place
  each step) and written once per program as one row of a (programs, C) fp32 buffer. A second
  small kernel (kernels/common.sum_partials, all two or three buffers in one launch) sums them
  over programs in a fixed order, on narrow tiles so it has many programs. No atomics: two runs on the same device give bit-identical
  weight and bias gradients. Many short programs rather than a persistent grid sized to the
  SMs: a persistent grid that overshoots the real occupancy runs a second, almost empty wave.
Statistics are fp32 whatever the input dtype; the sum s is rounded to the input dtype before the
statistics are taken, so the forward normalises exactly the s it stores and the backward reads.

The branch's bias (optional, x_bias). In a pre-LN block x is the output of a projection
(attention's or the MLP's c_proj) whose bias can be left to this op: s = x + x_bias + residual.
The forward adds a (C,) vector it loads once a program; the backward's gradient of x_bias is the
column sum of dx (the whole gradient of s), accumulated beside dweight / dbias as a third fp32
partial and summed the same way. That replaces the projection's own bias-gradient pass, a column
sum over its (N, C) output gradient (kernels/linear.py), and costs the backward no extra bytes.

Limits. Rows must be contiguous (N, C) tensors of fp32, fp16 or bf16; weight and bias may be
any of those (statistics and accumulation are fp32 regardless). 1 <= C <= MAX_HIDDEN = 65536: a
row lives in registers, so very wide rows spill (correct, slower; the tuned case is C <= 16384).
When residual and x_bias are None, s is not materialised (it equals x): the forward returns s = None and the
caller saves x for the backward instead.

Launchers (the contract the CUDA extension implements too, so one autograd Function serves both):
    add_layernorm_fwd(x, residual, weight, bias, eps) -> (y, s, mean, rstd)
    add_layernorm_bwd(dy, ds, s, weight, mean, rstd, has_bias) -> (dx, dweight, dbias)
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.kernels.common import sm_count, sum_partials

MAX_HIDDEN = 65536
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Tuning knobs, read by the launchers at each call (benchmarks/bench_layernorm.py times
# alternatives side by side, tests/test_layernorm.py checks them for correctness):
# forward: elements a program handles, at least (whole rows; several when C is small), and its
# warps (None: the rule in _tile, ~8 values of each row tensor a thread).
ROW_TILE = 2048
FWD_NUM_WARPS: int | None = None
# backward: elements of one 2D tile (BLOCK_R rows x BLOCK_C), its warps, the rows a program
# walks (the dweight / dbias partials are (N / BWD_ROWS_PER_PROGRAM, C) fp32), and whether the
# next tile's loads are issued before the current tile is computed (register double buffer).
BWD_ROW_TILE = 2048
BWD_NUM_WARPS: int | None = None
BWD_ROWS_PER_PROGRAM = 64
BWD_PREFETCH = True
# ptxas register cap for the backward (None: the compiler's choice). On triton 3.6 / sm_90 the
# 2 x 1024, 8-warp prefetching kernel takes 108 registers (2 programs an SM, ~18 KB of loads in
# flight); capped at 80 it spills 8 bytes and fits 3 programs (~28 KB).
BWD_MAXNREG: int | None = None


@triton.jit
def _add_layernorm_fwd_kernel(
    X, R, XB, W, B, Y, S, Mean, Rstd,  # X, R, Y, S: (N, C); XB, W, B: (C,); Mean, Rstd: (N,) fp32
    N, C, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_X_BIAS: tl.constexpr, HAS_BIAS: tl.constexpr,
    STORE_SUM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_C)
    row_mask = rows < N
    col_mask = cols < C
    mask = row_mask[:, None] & col_mask[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]      # int64: N * C may pass 2**31

    s = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_X_BIAS:
        s += tl.load(XB + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        s += tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL or HAS_X_BIAS:
        # round to the stored dtype first: the statistics are those of the s the backward reads
        s = s.to(X.dtype.element_ty).to(tl.float32)
        if STORE_SUM:
            tl.store(S + offs, s.to(S.dtype.element_ty), mask=mask)

    mean = tl.sum(s, axis=1) / C
    centred = tl.where(mask, s - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(centred * centred, axis=1) / C + eps)
    tl.store(Mean + rows, mean, mask=row_mask)
    tl.store(Rstd + rows, rstd, mask=row_mask)

    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    y = centred * rstd[:, None] * w[None, :]
    if HAS_BIAS:
        y += tl.load(B + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _add_layernorm_bwd_load_tile(DY, DS, S, Mean, Rstd, rows, row_end, cols, col_mask, C,
                                 HAS_DS: tl.constexpr):
    """One (BLOCK_R, BLOCK_C) tile of s, dy, ds (storage dtype) and its rows' mean, rstd."""
    row_mask = rows < row_end
    mask = row_mask[:, None] & col_mask[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]      # int64: N * C may pass 2**31
    s = tl.load(S + offs, mask=mask, other=0.0)
    dy = tl.load(DY + offs, mask=mask, other=0.0)
    if HAS_DS:
        ds = tl.load(DS + offs, mask=mask, other=0.0)
    else:
        ds = dy                                                 # unused
    mean = tl.load(Mean + rows, mask=row_mask, other=0.0)
    rstd = tl.load(Rstd + rows, mask=row_mask, other=0.0)
    return s, dy, ds, mean, rstd


@triton.jit
def _add_layernorm_bwd_kernel(
    DY, DS, S, W, Mean, Rstd, DX,      # DY, DS, S, DX: (N, C); W: (C,); Mean, Rstd: (N,) fp32
    DW_partial, DB_partial, DXB_partial,   # (programs, C) fp32: one row of partial sums per program
    N, C, rows_per_program,            # rows_per_program: a multiple of BLOCK_R
    HAS_DS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_X_BIAS: tl.constexpr, PREFETCH: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    col_mask = cols < C
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    db_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    dxb_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)

    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, N)
    s, dy, ds, mean, rstd = _add_layernorm_bwd_load_tile(
        DY, DS, S, Mean, Rstd, row_start + tl.arange(0, BLOCK_R), row_end, cols, col_mask, C,
        HAS_DS)
    for first in range(row_start, row_end, BLOCK_R):
        rows = first + tl.arange(0, BLOCK_R)
        if PREFETCH:   # the next tile's loads fly while this one is computed (masked off past the end)
            s_next, dy_next, ds_next, mean_next, rstd_next = _add_layernorm_bwd_load_tile(
                DY, DS, S, Mean, Rstd, rows + BLOCK_R, row_end, cols, col_mask, C, HAS_DS)
        mask = (rows < row_end)[:, None] & col_mask[None, :]
        offs = rows.to(tl.int64)[:, None] * C + cols[None, :]

        dyf = dy.to(tl.float32)
        xhat = tl.where(mask, (s.to(tl.float32) - mean[:, None]) * rstd[:, None], 0.0)
        wdy = w[None, :] * dyf                                  # zero where masked (dy is)
        c1 = tl.sum(xhat * wdy, axis=1) / C
        c2 = tl.sum(wdy, axis=1) / C
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        if HAS_DS:  # the gradient of the output s joins that of y: both are gradients of s
            dx += ds.to(tl.float32)
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += tl.sum(dyf * xhat, axis=0)
        if HAS_BIAS:
            db_acc += tl.sum(dyf, axis=0)
        if HAS_X_BIAS:  # x_bias's gradient is that of s, summed over rows (zero where masked)
            dxb_acc += tl.sum(tl.where(mask, dx, 0.0), axis=0)

        if not PREFETCH:   # loads issued only now: the program waits a full latency per tile
            s_next, dy_next, ds_next, mean_next, rstd_next = _add_layernorm_bwd_load_tile(
                DY, DS, S, Mean, Rstd, rows + BLOCK_R, row_end, cols, col_mask, C, HAS_DS)
        s, dy, ds, mean, rstd = s_next, dy_next, ds_next, mean_next, rstd_next

    tl.store(DW_partial + pid * C + cols, dw_acc, mask=col_mask)
    if HAS_BIAS:
        tl.store(DB_partial + pid * C + cols, db_acc, mask=col_mask)
    if HAS_X_BIAS:
        tl.store(DXB_partial + pid * C + cols, dxb_acc, mask=col_mask)


# ---------------------------------------------------------------------------------------------
# Launchers: plain tensor-in / tensor-out functions (allocation, grid, block sizes).


def _tile(C: int, min_elements: int, num_warps: int | None) -> tuple[int, int, int]:
    """(BLOCK_C, rows, num_warps) for rows of C: whole rows, >= min_elements a tile, and by
    default ~16 values of each row tensor a thread (two 16-byte vectors of bf16), 4..32 warps:
    on the H100 2 x 1024 with 4 warps ran the forward at 0.139 ms against 0.184 ms with 8
    (benchmarks/results/runs/run3-layernorm.json)."""
    block_c = triton.next_power_of_2(C)
    rows = max(1, min_elements // block_c)        # several rows a tile for small C
    if num_warps is None:
        num_warps = min(32, max(4, block_c * rows // 512))
    return block_c, rows, num_warps



def _check_rows(name: str, t: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if t.dim() != 2 or not t.is_contiguous():
        raise ValueError(f"{name} must be a contiguous (N, C) tensor, got shape {tuple(t.shape)} "
                         f"strides {t.stride()}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: the Triton add+LayerNorm supports {SUPPORTED_DTYPES}, got {t.dtype}")
    if like is not None and (t.shape != like.shape or t.dtype != like.dtype):
        raise ValueError(f"{name} {tuple(t.shape)} {t.dtype} does not match "
                         f"{tuple(like.shape)} {like.dtype}")


def _check_vector(name: str, t: torch.Tensor, C: int) -> None:
    if t.shape != (C,) or not t.is_contiguous() or t.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name} must be a contiguous ({C},) float tensor, got "
                         f"{tuple(t.shape)} {t.dtype}")


def add_layernorm_fwd(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                      bias: torch.Tensor | None, eps: float, store_sum: bool = True,
                      x_bias: torch.Tensor | None = None):
    """y = LayerNorm(x + x_bias + residual) * weight + bias, and s = x + x_bias + residual.

    x, residual: (N, C) contiguous, same dtype (residual may be None); weight, bias, x_bias: (C,)
    (x_bias may be None). Returns (y, s, mean, rstd): y and s (N, C) in x's dtype, mean and rstd
    (N,) fp32. s is None when it would equal x (no residual, no x_bias) or when store_sum is False
    (inference only: the backward needs s). store_sum and x_bias are not part of the launcher
    contract shared with the CUDA extension (fastgpt/ops/layernorm.py routes x_bias here).
    """
    _check_rows("x", x)
    if residual is not None:
        _check_rows("residual", residual, like=x)
    N, C = x.shape
    if not 1 <= C <= MAX_HIDDEN:
        raise ValueError(f"hidden size {C} outside the supported 1..{MAX_HIDDEN}")
    _check_vector("weight", weight, C)
    if bias is not None:
        _check_vector("bias", bias, C)
    if x_bias is not None:
        _check_vector("x_bias", x_bias, C)
    store_sum = store_sum and (residual is not None or x_bias is not None)
    y = torch.empty_like(x)
    s = torch.empty_like(x) if store_sum else None
    mean = torch.empty(N, dtype=torch.float32, device=x.device)
    rstd = torch.empty(N, dtype=torch.float32, device=x.device)
    if N == 0:
        return y, s, mean, rstd
    block_c, block_n, num_warps = _tile(C, ROW_TILE, FWD_NUM_WARPS)
    _add_layernorm_fwd_kernel[(triton.cdiv(N, block_n),)](
        x, x if residual is None else residual, weight if x_bias is None else x_bias,
        weight, weight if bias is None else bias, y, y if s is None else s, mean, rstd,
        N, C, eps,
        HAS_RESIDUAL=residual is not None, HAS_X_BIAS=x_bias is not None, HAS_BIAS=bias is not None,
        STORE_SUM=store_sum, BLOCK_N=block_n, BLOCK_C=block_c, num_warps=num_warps,
    )
    return y, s, mean, rstd


def add_layernorm_bwd(dy: torch.Tensor, ds: torch.Tensor | None, s: torch.Tensor,
                      weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, has_bias: bool,
                      x_bias_grad: torch.Tensor | None = None):
    """Gradients of add_layernorm_fwd.

    dy: (N, C) gradient of y; ds: (N, C) gradient of s, or None; s: the saved sum (x when there
    was no residual); mean, rstd: (N,) fp32 from the forward. Returns (dx, dweight, dbias): dx
    (N, C) in s's dtype is the whole gradient of s (ds + the LayerNorm's), which is the gradient
    of x and of residual alike; dweight and dbias (C,) in weight's dtype, dbias None without bias.
    x_bias_grad (a (C,) tensor, not part of the contract shared with the CUDA extension): when
    given, it receives x_bias's gradient, dx summed over rows, in its own dtype.
    Deterministic: per-program fp32 partials, then a fixed-order sum.
    """
    _check_rows("s", s)
    _check_rows("dy", dy, like=s)
    if ds is not None:
        _check_rows("ds", ds, like=s)
    N, C = s.shape
    _check_vector("weight", weight, C)
    block_c, block_r, num_warps = _tile(C, BWD_ROW_TILE, BWD_NUM_WARPS)
    # ROWS_PER_PROGRAM rows a program, fewer when N is small so that every SM gets ~4 programs;
    # a multiple of BLOCK_R so that only the last program's last tile is cut short
    programs_wanted = 4 * sm_count(s.device, interpreter_programs=4)
    rows_per_program = min(BWD_ROWS_PER_PROGRAM, triton.cdiv(N, programs_wanted))
    rows_per_program = triton.cdiv(max(rows_per_program, 1), block_r) * block_r
    programs = triton.cdiv(N, rows_per_program)

    dx = torch.empty_like(s)
    dw_partial = torch.empty((programs, C), dtype=torch.float32, device=s.device)
    db_partial = torch.empty_like(dw_partial) if has_bias else dw_partial
    if x_bias_grad is not None:
        _check_vector("x_bias_grad", x_bias_grad, C)
    dxb_partial = torch.empty_like(dw_partial) if x_bias_grad is not None else dw_partial
    if programs:
        _add_layernorm_bwd_kernel[(programs,)](
            dy, dy if ds is None else ds, s, weight, mean, rstd, dx, dw_partial, db_partial, dxb_partial,
            N, C, rows_per_program,
            HAS_DS=ds is not None, HAS_BIAS=has_bias, HAS_X_BIAS=x_bias_grad is not None,
            PREFETCH=BWD_PREFETCH,
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=num_warps,
            **({} if BWD_MAXNREG is None else {"maxnreg": BWD_MAXNREG}),
        )
    dweight = torch.empty_like(weight)
    dbias = torch.empty_like(weight) if has_bias else None
    sum_partials(dw_partial, dweight, db_partial if has_bias else None, dbias,
                 dxb_partial if x_bias_grad is not None else None, x_bias_grad)
    return dx, dweight, dbias
