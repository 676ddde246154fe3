"""The bias gradient of a linear layer, dbias = dy.sum(0) over the (M tokens, N features) output
gradient, as a two-pass Triton column sum.

What and why. A linear layer's backward is two GEMMs (dx = dy W, dW = dy^T x, cuBLAS) and one
column sum of dy for the bias. PyTorch runs that sum as a generic dim-0 reduction, which on the
H100 moved a GPT-2 step's bf16 gradients at well under the copy bandwidth: 36 calls per step,
1.33 ms (benchmarks/results/runs/run8-host_profile/kernels-triton.md), about 2.5x the bytes
over the bandwidth. The sum is memory bound (read M x N once), so that floor is the target.

How. Pass 1: a 2-D grid of (row bands x BLOCK_N columns) programs; each walks its band in
(BLOCK_M x BLOCK_N) tiles, adds them into an fp32 register tile, and reduces over rows once at
the end: one row of an fp32 (bands, N) partials buffer. The band height is chosen so the grid has
about PROGRAMS_PER_SM programs per SM, and Triton software-pipelines each program's loads
NUM_STAGES deep: the tiles in flight hide the load latency. Pass 2 (kernels/common.sum_partials, which the
attention's qkv bias gradient ends with too): narrow column tiles sum the bands in order
and write the output in the caller's dtype (the bias's), so no cast kernel follows. Fixed
partition, fixed order, no atomics: bit-identical results run to run on a device.

Limits: dy is 2-D with any strides (unit column stride is the fast case, specialised by Triton;
an expanded gradient has stride 0), fp32 / fp16 / bf16; sums are fp32.
M or N may be 0 (zeros / empty come back). Offsets switch to int64 past 2**31 elements.
Under TRITON_INTERPRET=1 small tiles keep CPU tests quick.

Launcher (tensor in, tensor out):
    column_sum(dy, out_dtype=None) -> (N,) tensor of out_dtype (default dy.dtype)
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode
from fastgpt.kernels.common import sm_count, sum_partials

_INTERPRET = interpreter_mode()
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Tuning knobs, read by the launcher at each call (benchmarks/bench_linear.py times variants).
# pass 1: 64 x 128 tiles on 4 warps (16 bf16 values a thread per load). Run 13 (H100, graph
# replay, 16384 rows): 46.1 / 22.3 us at N = 2304 / 768, against 45.9 / 24.8 for 32 x 256; more
# programs per SM or 8 warps were slower (bench_linear.py's variants). Run 163 (20 calls a graph
# replay): the loads pipelined NUM_STAGES deep at 2 programs an SM, 30.9 / 8.8 us
# against 33.9 / 9.9 unpipelined at 4 (torch.compile's dy.sum(0): 31.7 / 7.7)
BLOCK_M, BLOCK_N = (8, 16) if _INTERPRET else (64, 128)
NUM_WARPS = 4
PROGRAMS_PER_SM = 2
NUM_STAGES = 3
_INT32_LIMIT = 2**31


@triton.jit
def _column_sum_partial_kernel(
    Dy, Partial, M, N, stride_dym, stride_dyn, ROWS_PER_PROGRAM,
    INDEX_64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """Partial[band, n] = sum of Dy[m, n] over the band's ROWS_PER_PROGRAM rows (a multiple of BLOCK_M)."""
    band = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols_ok = cols < N
    first = band * ROWS_PER_PROGRAM
    if INDEX_64:
        first = first.to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # the next tiles' loads are issued while this one is added (the loop is software-pipelined)
    for start in tl.range(0, ROWS_PER_PROGRAM, BLOCK_M, num_stages=NUM_STAGES):
        rows = first + start + tl.arange(0, BLOCK_M)
        mask = (rows < M)[:, None] & cols_ok[None, :]
        acc += tl.load(Dy + rows[:, None] * stride_dym + cols[None, :] * stride_dyn, mask=mask,
                       other=0.0).to(tl.float32)
    tl.store(Partial + band.to(tl.int64) * N + cols, tl.sum(acc, axis=0), mask=cols_ok)


# ---------------------------------------------------------------------------------------------
# launcher: plain tensor-in / tensor-out


def _empty(n: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The output buffer (tests swap in NaN-filled buffers)."""
    return torch.empty(n, device=like.device, dtype=dtype)


def _empty_partials(bands: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """fp32 partials every band overwrites (tests swap in NaN-filled buffers)."""
    return torch.empty(bands, n, device=like.device, dtype=torch.float32)


def band_rows(m: int, n: int, device: torch.device) -> int:
    """Rows per pass-1 program: a multiple of BLOCK_M, about PROGRAMS_PER_SM programs per SM."""
    column_tiles = triton.cdiv(n, BLOCK_N)
    bands = max(1, min(triton.cdiv(m, BLOCK_M),
                       triton.cdiv(PROGRAMS_PER_SM * sm_count(device, interpreter_programs=2), column_tiles)))
    return triton.cdiv(triton.cdiv(m, bands), BLOCK_M) * BLOCK_M


def column_sum(dy: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """dy (M, N) summed over rows in fp32 -> (N,) in out_dtype (default dy's dtype)."""
    if dy.dim() != 2:
        raise ValueError(f"column_sum: dy must be 2-D (M, N), got shape {tuple(dy.shape)}")
    if dy.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"column_sum: dy must be float32, float16 or bfloat16, got {dy.dtype}")
    M, N = dy.shape
    out = _empty(N, dy, out_dtype or dy.dtype)
    if N == 0:
        return out
    if M == 0:
        return out.zero_()
    rows = band_rows(M, N, dy.device)
    bands = triton.cdiv(M, rows)
    partial = _empty_partials(bands, N, dy)
    _column_sum_partial_kernel[(bands, triton.cdiv(N, BLOCK_N))](
        dy, partial, M, N, dy.stride(0), dy.stride(1), rows,
        INDEX_64=dy.stride(0) * M + dy.stride(1) * N >= _INT32_LIMIT, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        NUM_STAGES=NUM_STAGES, num_warps=NUM_WARPS)
    return sum_partials(partial, out)
