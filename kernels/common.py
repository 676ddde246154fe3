"""Helpers the kernel families share, and the one kernel they share: the fixed-order sum of fp32
per-program partials that ends every deterministic column reduction (add+LayerNorm's dweight /
dbias / dx_bias, the linear family's and the MLP's bias gradients, the attention's qkv bias)."""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from fastgpt.backend import autotuning, interpreter_mode


@triton.jit
def sum_partials_kernel(
    PartialA, PartialB, PartialC,      # partials (P, C) fp32 -> (C,) outputs in their own dtype
    OutA, OutB, OutC,
    P, C,
    HAS_B: tl.constexpr, HAS_C: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """OutA[c] = sum over p of PartialA[p, c] in p order (deterministic), and OutB / OutC from
    PartialB / PartialC when HAS_B / HAS_C: one launch for all of a backward's column sums (these
    sums are small: each launch costs ~4 us of mostly latency). One program per BLOCK_C columns,
    walking P in (BLOCK_P, BLOCK_C) tiles."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < C
    acc_a = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    acc_c = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for first in range(0, P, BLOCK_P):
        parts = first + tl.arange(0, BLOCK_P)
        mask = (parts < P)[:, None] & col_mask[None, :]
        offs = parts.to(tl.int64)[:, None] * C + cols[None, :]
        acc_a += tl.load(PartialA + offs, mask=mask, other=0.0)
        if HAS_B:
            acc_b += tl.load(PartialB + offs, mask=mask, other=0.0)
        if HAS_C:
            acc_c += tl.load(PartialC + offs, mask=mask, other=0.0)
    tl.store(OutA + cols, tl.sum(acc_a, axis=0).to(OutA.dtype.element_ty), mask=col_mask)
    if HAS_B:
        tl.store(OutB + cols, tl.sum(acc_b, axis=0).to(OutB.dtype.element_ty), mask=col_mask)
    if HAS_C:
        tl.store(OutC + cols, tl.sum(acc_c, axis=0).to(OutC.dtype.element_ty), mask=col_mask)


# sum_partials' tile (partial rows, columns, warps) by the number of buffers summed at once. Narrow
# columns give more programs (C / 8 = 96 at C = 768): a few dozen programs on 132 SMs, each
# walking all P rows, were latency-bound. Timed as CUDA-graph replays on an H200
# (benchmarks/tune_sum_partials.py, results/runs/run36-sum_partials.md): (512, 768) x 3 buffers
# 9.5 us with the former (256, 32) 8-warp tile (its three accumulators spilled) against 3.8;
# (256, 3072) x 1 3.4 us with the former (64, 32) 4-warp tile against 2.7.
SUM_TILES = {1: (256, 16, 8), 2: (512, 8, 8), 3: (512, 8, 8)}
_INTERPRETER_SUM_TILE = (4, 16, 4)


def sum_partials(partials: torch.Tensor, out: torch.Tensor,
                 partials_b: torch.Tensor | None = None, out_b: torch.Tensor | None = None,
                 partials_c: torch.Tensor | None = None, out_c: torch.Tensor | None = None) -> torch.Tensor:
    """out[c] = the sum over p of partials[p, c] (a contiguous (P, C) fp32 tensor), in p order, in
    out's dtype (so no cast follows); returns out. Likewise out_b from partials_b and out_c from
    partials_c (same shape), in the same launch. The second pass of every deterministic column sum:
    the linear family's, the MLP's and the attention's bias gradients, add+LayerNorm's dweight,
    dbias and dx_bias. C = 0 launches nothing."""
    P, C = partials.shape
    if C == 0:
        return out
    if (partials_b is None) != (out_b is None) or (partials_c is None) != (out_c is None):
        raise ValueError("sum_partials: each extra partial buffer needs its output, and each output its buffer")
    buffers = 1 + (partials_b is not None) + (partials_c is not None)
    block_p, block_c, warps = _INTERPRETER_SUM_TILE if interpreter_mode() else SUM_TILES[buffers]
    sum_partials_kernel[(triton.cdiv(C, block_c),)](
        partials, partials if partials_b is None else partials_b, partials if partials_c is None else partials_c,
        out, out if out_b is None else out_b, out if out_c is None else out_c, P, C,
        HAS_B=partials_b is not None, HAS_C=partials_c is not None, BLOCK_P=block_p, BLOCK_C=block_c,
        num_warps=warps)
    return out


@functools.lru_cache(maxsize=None)
def _multiprocessor_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def sm_count(device: torch.device, interpreter_programs: int) -> int:
    """Multiprocessors of a CUDA device (cached: the query is not free on every launch), which
    persistent grids are sized by; on CPU tensors (the Triton interpreter) `interpreter_programs`,
    the few sequential programs a family wants its CPU tests to walk through."""
    if device.type != "cuda":
        return interpreter_programs
    return _multiprocessor_count(device)


def hopper_gpu(device: torch.device | None = None) -> bool:
    """A Hopper GPU (sm_90) to run on: where the Gluon kernels (wgmma, TMA, setmaxnreg) apply."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) == (9, 0)


def tma_row_major(t: torch.Tensor) -> bool:
    """What a TMA descriptor of a 2-D tensor needs, and 16-byte cp.async copies of its rows: unit
    column stride, 16-byte aligned base and row stride."""
    return (t.dim() == 2 and t.stride(1) == 1 and t.data_ptr() % 16 == 0
            and (t.stride(0) * t.element_size()) % 16 == 0)


def tuning_configs(configs: list, pinned, interpreter) -> list:
    """The configurations one kernel autotunes over: [interpreter] under TRITON_INTERPRET=1 (one
    small tile keeps CPU tests quick), [pinned] with FASTGPT_AUTOTUNE=0 (a tile that fits shared
    memory for every dtype and head size the family takes, fp32 included), else all of `configs`."""
    if interpreter_mode():
        return [interpreter]
    return configs if autotuning() else [pinned]
