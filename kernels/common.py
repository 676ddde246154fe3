"""Helpers the kernel families share, and the one kernel they share: the fixed-order sum of fp32
per-program partials that ends every deterministic column reduction (add+LayerNorm's dweight /
dbias / dx_bias, the linear family's and the MLP's bias gradients, the attention's qkv bias)."""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode


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


# sum_partials' tile: 64 partial rows x 32 columns a step (128-byte rows of fp32 partials)
SUM_BLOCK_P, SUM_BLOCK_C = (4, 16) if interpreter_mode() else (64, 32)


def sum_partials(partials: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[c] = the sum over p of partials[p, c] (a contiguous (P, C) fp32 tensor), in p order, in
    out's dtype (so no cast follows); returns out. The second pass of the linear family's column sum,
    the MLP's bias gradient and the attention's qkv bias gradient (add+LayerNorm's sums its two or
    three buffers in one launch, with its own tile). C = 0 launches nothing."""
    P, C = partials.shape
    if C == 0:
        return out
    sum_partials_kernel[(triton.cdiv(C, SUM_BLOCK_C),)](
        partials, partials, partials, out, out, out, P, C,
        HAS_B=False, HAS_C=False, BLOCK_P=SUM_BLOCK_P, BLOCK_C=SUM_BLOCK_C, num_warps=4)
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


def autotuning() -> bool:
    """False when FASTGPT_AUTOTUNE=0: every autotuned kernel then runs one pinned configuration.

    For test runs on a GPU: each test shape would otherwise compile and time every configuration
    (minutes over the suite) to check results that do not depend on the tile. Read when a kernel
    family is imported, like TRITON_INTERPRET."""
    return os.environ.get("FASTGPT_AUTOTUNE", "1") not in ("0", "")


def tuning_configs(configs: list, pinned, interpreter) -> list:
    """The configurations one kernel autotunes over: [interpreter] under TRITON_INTERPRET=1 (one
    small tile keeps CPU tests quick), [pinned] with FASTGPT_AUTOTUNE=0 (a tile that fits shared
    memory for every dtype and head size the family takes, fp32 included), else all of `configs`."""
    if interpreter_mode():
        return [interpreter]
    return configs if autotuning() else [pinned]
