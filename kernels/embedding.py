"""Embedding backward: the gradient of a lookup table, dW[v] = sum of dy[t] over the tokens t with
idx[t] == v, in one Triton pass that writes every element of dW once, deterministically.

What is fused, and why. PyTorch's CUDA embedding backward (embedding_dense_backward) zero-fills
dW, sorts the indices, then reduces each index's run of rows in two kernels (fp32 partial sums
over fixed-size pieces of a run, then a sum of the pieces scattered into dW): in the GPT-2 step
(run 38's profile, H100) the token table's backward took ~0.3 ms over six kernels. Here: one
stable sort of the indices and the start of every table row's run in the sorted order (torch.sort
and torch.searchsorted, no host sync, so CUDA graphs capture them), then one kernel: each program
owns ROWS table rows and one BLOCK_C slice of the columns, and for each row sums its run of dy rows
BLOCK_T at a time in fp32 and writes the slice, zeros where the row has no tokens. No zero-fill,
no atomics; the order of every sum is fixed by the sort, so the result is the same bit for bit
on every run. A frequent token (a long run) is summed BLOCK_T rows a load, not one.

Limits: dy (N, C) with unit column stride, fp16 / bf16 / fp32; idx (N,) int32 / int64, every
value in [0, V) (the forward lookup checks that); dW has dy's dtype. Offsets switch to int64 when
dy or dW has 2**31 elements or more.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode

_INTERPRET = interpreter_mode()
_INT32_LIMIT = 2**31
# (ROWS, BLOCK_T, BLOCK_C, num_warps): 4 table rows a program, 32 dy rows of 256 columns a load
# (8192 values over 128 threads); the interpreter walks small tiles so CPU tests cross every edge
_TILE = (2, 4, 16, 4) if _INTERPRET else (4, 32, 256, 4)


@triton.jit
def _embedding_bwd_kernel(
    DY, stride_dy,               # (N, C) gradient of the lookup's output
    Order,                       # (N,) token positions sorted by their index (stable)
    Starts,                      # (V + 1,) where each table row's run starts in Order
    DW, stride_dw,               # (V, C) gradient of the table, every element written
    V, C,
    ROWS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, INDEX_64: tl.constexpr,
):
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cols_ok = cols < C
    lanes = tl.arange(0, BLOCK_T)
    for i in range(ROWS):
        row = tl.program_id(0) * ROWS + i
        if row < V:
            start = tl.load(Starts + row)
            end = tl.load(Starts + row + 1)
            acc = tl.zeros([BLOCK_C], dtype=tl.float32)
            for first in range(start, end, BLOCK_T):
                ranks = first + lanes
                in_run = ranks < end
                tokens = tl.load(Order + ranks, mask=in_run, other=0)
                if not INDEX_64:
                    tokens = tokens.to(tl.int32)
                tile = tl.load(DY + tokens[:, None] * stride_dy + cols[None, :],
                               mask=in_run[:, None] & cols_ok[None, :], other=0.0)
                acc += tl.sum(tile.to(tl.float32), axis=0)
            out_row = row.to(tl.int64) if INDEX_64 else row
            tl.store(DW + out_row * stride_dw + cols, acc.to(DW.dtype.element_ty), mask=cols_ok)


# ---------------------------------------------------------------------------------------------
# launcher: plain tensor-in / tensor-out


def _empty(v: int, c: int, like: torch.Tensor) -> torch.Tensor:
    """The output buffer (tests swap in a NaN-filled one: every element must be written)."""
    return like.new_empty(v, c)


def runs(idx: torch.Tensor, num_embeddings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, starts): token positions sorted by index (stable), and where each of the
    num_embeddings table rows' runs starts in that order ((V + 1,), the last entry N)."""
    sorted_idx, order = torch.sort(idx, stable=True)
    bounds = torch.arange(num_embeddings + 1, device=idx.device, dtype=sorted_idx.dtype)
    return order, torch.searchsorted(sorted_idx, bounds)


def embedding_bwd(dy: torch.Tensor, idx: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """dy (N, C) of a lookup of the (num_embeddings, C) table at idx (N,) -> dW (num_embeddings, C)
    in dy's dtype: each row the fp32 sum of the dy rows that looked it up, zeros for the rest."""
    if dy.dim() != 2 or idx.dim() != 1 or idx.shape[0] != dy.shape[0]:
        raise ValueError(f"embedding_bwd: dy must be (N, C) and idx (N,), got {tuple(dy.shape)} "
                         f"and {tuple(idx.shape)}")
    if dy.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"embedding_bwd: dy must be float16, bfloat16 or float32, got {dy.dtype}")
    if dy.stride(1) != 1:
        dy = dy.contiguous()
    n, c = dy.shape
    dw = _empty(num_embeddings, c, dy)
    if num_embeddings == 0 or c == 0:
        return dw
    order, starts = runs(idx, num_embeddings)
    rows, block_t, block_c, warps = _TILE
    index_64 = max(dy.numel(), dw.numel(), dy.stride(0) * max(n, 1)) >= _INT32_LIMIT
    grid = (triton.cdiv(num_embeddings, rows), triton.cdiv(c, block_c))
    _embedding_bwd_kernel[grid](dy, dy.stride(0), order, starts, dw, dw.stride(0), num_embeddings, c,
                                ROWS=rows, BLOCK_T=block_t, BLOCK_C=block_c, INDEX_64=index_64,
                                num_warps=warps)
    return dw
