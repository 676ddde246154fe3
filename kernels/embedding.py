"""Embedding lookup (+ a position table) and its backward: the gradient of a lookup table,
dW[v] = sum of dy[t] over the tokens t with idx[t] == v, deterministically, each looked-up row of
dW summed and written by one program.

What is fused, and why. PyTorch's CUDA embedding backward (embedding_dense_backward) zero-fills
dW, sorts the indices, then reduces each index's run of rows in two kernels (fp32 partial sums
over fixed-size pieces of a run, then a sum of the pieces scattered into dW). Here: one stable
sort of the indices and the start of every table row's run in the sorted order (torch.sort and
torch.searchsorted, no host sync, so CUDA graphs capture them), a zero-fill of dW, then one
kernel. Each program takes BLOCK_P consecutive positions of the sorted order and one BLOCK_C
slice of the columns; a position that starts the run of its table row (a head) gets that row
summed, in fp32:
  short runs (at most SHORT tokens, nearly all of them with random or real text) all at once, the
    block's heads side by side, SHORT gathers of (BLOCK_P, BLOCK_C) dy rows in flight;
  longer runs (frequent tokens: hundreds of rows in real text) one head at a time, BLOCK_T rows
    a load.
No atomics, and the order of every sum is fixed by the sort, so the result is the same bit for
bit on every run. Rows nobody looked up keep the zero-fill.

Measured on an H100 at GPT-2's token table (16384 tokens, 50304 x 768, bf16; NOTES.md, runs
50-53 and 83; run 83's rows with today's tile): 0.116 ms against PyTorch's 0.353 with random
tokens, 0.181 against 0.241 with the tokens of Tiny Shakespeare, of which the sort (32-bit keys)
and the run starts take ~0.064. Two earlier designs lost to PyTorch, latency-bound: a program per four
table rows (0.529 ms) and a program per sorted position (0.510), each program a chain of
dependent loads and tens of thousands of programs; this one has N / BLOCK_P, whose lanes each
carry a head.

Accumulating (ACCUMULATE, embedding_bwd(..., out=dW)): the looked-up rows are added into a given
dW, which is neither zero-filled nor otherwise touched. A GPT whose LM head shares the token table
sums the head's (V, C) gradient (a copy of it) and the lookup's this way, in the rows the tokens
touch, instead of by a (V, C) add after a (V, C) zero-fill (run 77's profile: ~0.10 ms for the
add and the fill; fastgpt/ops/embedding.py, fused_tied_embedding).

The forward (embedding_fwd): out[r] = W[idx[r]] (+ P[r mod T], a (T, C) position table added to
row r of each length-T sequence). F.embedding and then `+ P` took a gather and a broadcast add
(PyTorch's non-vectorised broadcast kernel, 0.036 ms) where one pass reads the looked-up rows
and writes the sum.

Limits: dy (N, C) with unit column stride, fp16 / bf16 / fp32; idx (N,) int32 / int64, every
value in [0, V) (the forward checks that: a device-side assert on the GPU, IndexError on CPU);
dW has dy's dtype (or, accumulating, its own). Offsets switch to int64 when dy or dW has 2**31
elements or more.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode

_INTERPRET = interpreter_mode()
_INT32_LIMIT = 2**31
# (BLOCK_P, SHORT, BLOCK_T, BLOCK_C, num_warps): 32 sorted positions a program, runs of up to 4
# tokens gathered together, longer ones 256 rows of 64 columns a load, 4 warps. The long-run
# load's size is what matters on real text, whose most frequent token has a run of ~2000 in 16384
# (one program walks it): run 53 (bench_embedding.py's variants, H100) took it from 32 rows
# (0.253-0.314 ms) to 128 x 128 (0.196, against PyTorch's 0.234); run 83 from there to 256 x 64
# (0.181 against 0.201; 512 x 64 0.180 but 0.126 on random tokens against 0.116). Random tokens
# take ~0.116 ms with each. The interpreter walks small tiles so CPU tests cross every edge.
_TILE = (4, 2, 4, 16, 4) if _INTERPRET else (32, 4, 256, 64, 4)
# the forward's (BLOCK_R, BLOCK_C, num_warps): 16 rows x 256 columns a program (32 bf16 values a
# thread on 4 warps)
_FWD_TILE = (4, 16, 4) if _INTERPRET else (16, 256, 4)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# debug=True compiles the device_assert (Triton drops it otherwise; it also adds int32 overflow
# checks): an index out of range stops the kernel with a device-side assert naming it, as
# F.embedding's CUDA kernel does, instead of reading outside the table
@triton.jit(debug=True)
def _embedding_fwd_kernel(
    Idx,                         # (N,) table rows to look up, each in [0, V)
    W, stride_w, V,              # (V, C) table
    Pos, stride_pos, T,          # (T, C) position table, row r taking Pos[r % T] (HAS_POS)
    Out,                         # (N, C) contiguous output
    N, C,
    HAS_POS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, INDEX_64: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    rows_ok = rows < N
    table_rows = tl.load(Idx + rows, mask=rows_ok, other=0)
    in_table = (table_rows >= 0) & (table_rows < V)
    tl.device_assert(in_table | ~rows_ok, "fastgpt embedding: an index is out of range [0, num_embeddings)")
    rows_ok = rows_ok & in_table
    mask = rows_ok[:, None] & (cols < C)[None, :]
    if INDEX_64:
        table_rows = table_rows.to(tl.int64)
        rows = rows.to(tl.int64)
    else:
        table_rows = table_rows.to(tl.int32)
    x = tl.load(W + table_rows[:, None] * stride_w + cols[None, :], mask=mask, other=0.0)
    if HAS_POS:
        p = tl.load(Pos + (rows % T)[:, None] * stride_pos + cols[None, :], mask=mask, other=0.0)
        x = (x.to(tl.float32) + p.to(tl.float32)).to(Out.dtype.element_ty)
    tl.store(Out + rows[:, None] * C + cols[None, :], x, mask=mask)


@triton.jit
def _store_rows(Ptrs, acc, mask, ACCUMULATE: tl.constexpr):
    """acc (fp32) -> the dW rows at Ptrs, added to what they hold when ACCUMULATE."""
    if ACCUMULATE:
        acc += tl.load(Ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Ptrs, acc.to(Ptrs.dtype.element_ty), mask=mask)


@triton.jit
def _embedding_rows(DY, stride_dy, Order, ranks, take, cols, cols_ok, INDEX_64: tl.constexpr):
    """The dy rows of the tokens at sorted positions `ranks` (where `take`), as fp32 (zeros elsewhere)."""
    tokens = tl.load(Order + ranks, mask=take, other=0)
    if not INDEX_64:
        tokens = tokens.to(tl.int32)
    rows = tl.load(DY + tokens[:, None] * stride_dy + cols[None, :], mask=take[:, None] & cols_ok[None, :],
                   other=0.0)
    return rows.to(tl.float32)


@triton.jit
def _embedding_bwd_kernel(
    DY, stride_dy,               # (N, C) gradient of the lookup's output
    SortedIdx, Order,            # (N,) the indices sorted (stable), and the token positions in that order
    Starts,                      # (V + 1,) where each table row's run starts in the sorted order
    DW, stride_dw,               # (V, C) gradient of the table: looked-up rows written (or added) here
    N, C,
    BLOCK_P: tl.constexpr, SHORT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
    INDEX_64: tl.constexpr, ACCUMULATE: tl.constexpr,
):
    lanes = tl.arange(0, BLOCK_P)
    positions = tl.program_id(0) * BLOCK_P + lanes
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cols_ok = cols < C
    valid = positions < N
    row = tl.load(SortedIdx + positions, mask=valid, other=-1)
    previous = tl.load(SortedIdx + positions - 1, mask=valid & (positions > 0), other=-1)
    head = valid & (row != previous)                  # this position starts the run of table row `row`
    end = tl.load(Starts + row + 1, mask=head, other=0)
    length = tl.where(head, end - positions, 0)
    out_rows = row.to(tl.int64) if INDEX_64 else row.to(tl.int32)

    # short runs: every head of the block at once, SHORT gathers in flight
    short = head & (length <= SHORT)
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for j in tl.static_range(SHORT):
        acc += _embedding_rows(DY, stride_dy, Order, positions + j, short & (j < length), cols, cols_ok, INDEX_64)
    _store_rows(DW + out_rows[:, None] * stride_dw + cols[None, :], acc, short[:, None] & cols_ok[None, :],
                ACCUMULATE)

    # long runs: one head at a time (in random tokens almost no block has one), BLOCK_T tokens a load
    remaining = head & (length > SHORT)
    while tl.max(remaining.to(tl.int32), axis=0) > 0:
        i = tl.argmax(remaining.to(tl.int32), axis=0)
        pick = lanes == i
        first = tl.program_id(0) * BLOCK_P + i
        last = first + tl.sum(tl.where(pick, length, 0), axis=0)
        run_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
        for offset in range(first, last, BLOCK_T):
            ranks = offset + tl.arange(0, BLOCK_T)
            run_acc += tl.sum(_embedding_rows(DY, stride_dy, Order, ranks, ranks < last, cols, cols_ok, INDEX_64),
                              axis=0)
        out_row = tl.sum(tl.where(pick, out_rows, 0), axis=0)
        _store_rows(DW + out_row * stride_dw + cols, run_acc, cols_ok, ACCUMULATE)
        remaining = remaining & (lanes != i)


# ---------------------------------------------------------------------------------------------
# launcher: plain tensor-in / tensor-out


def _empty(rows: int, c: int, like: torch.Tensor) -> torch.Tensor:
    """Both launchers' output buffers: the forward's (N, C), the backward's (V, C) before its
    zero-fill (tests swap in NaN-filled ones)."""
    return like.new_empty(rows, c)


def runs(idx: torch.Tensor, num_embeddings: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sorted_idx, order, starts): the indices sorted (stable), the token positions in that
    order, and where each of the num_embeddings table rows' runs starts in it ((V + 1,), the last
    entry N)."""
    # 32-bit keys: half the radix passes of int64 (run 52: the int64 sort alone took 0.095 ms)
    keys = idx.to(torch.int32) if num_embeddings < _INT32_LIMIT else idx
    sorted_idx, order = torch.sort(keys, stable=True)
    bounds = torch.arange(num_embeddings + 1, device=idx.device, dtype=sorted_idx.dtype)
    return sorted_idx, order, torch.searchsorted(sorted_idx, bounds)


def embedding_fwd(idx: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """idx (N,) -> weight[idx] (N, C), plus positions[r % T] on row r when a (T, C) position table
    is given (N a multiple of T: the rows are sequences of T tokens), summed in fp32 and rounded
    once to weight's dtype. An index outside [0, V) raises IndexError (CPU tensors) or stops the
    kernel with a device-side assert (CUDA), as F.embedding does."""
    if idx.dim() != 1 or weight.dim() != 2:
        raise ValueError(f"embedding_fwd: idx must be (N,) and weight (V, C), got {tuple(idx.shape)} "
                         f"and {tuple(weight.shape)}")
    if weight.dtype not in _DTYPES:
        raise TypeError(f"embedding_fwd: weight must be float16, bfloat16 or float32, got {weight.dtype}")
    n, (_, c) = idx.shape[0], weight.shape
    if positions is not None and (positions.dim() != 2 or positions.shape[1] != c or positions.shape[0] == 0
                                  or n % positions.shape[0] != 0 or positions.dtype != weight.dtype):
        raise ValueError(f"embedding_fwd: positions must be (T, {c}) of {weight.dtype} with T dividing "
                         f"{n}, got {tuple(positions.shape)} of {positions.dtype}")
    if not idx.is_cuda and n:   # on the GPU the kernel's device_assert says so (a host check would wait)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= weight.shape[0]:
            raise IndexError(f"embedding_fwd: indices must lie in [0, {weight.shape[0]}), got values in "
                             f"[{lo}, {hi}]")
    if weight.stride(1) != 1:
        weight = weight.contiguous()
    if positions is not None and positions.stride(1) != 1:
        positions = positions.contiguous()
    out = _empty(n, c, weight)
    if n == 0 or c == 0:
        return out
    block_r, block_c, warps = _FWD_TILE
    index_64 = max(out.numel(), weight.stride(0) * weight.shape[0]) >= _INT32_LIMIT
    pos = weight if positions is None else positions      # stands in when HAS_POS is off; never read
    _embedding_fwd_kernel[(triton.cdiv(n, block_r), triton.cdiv(c, block_c))](
        idx, weight, weight.stride(0), weight.shape[0],
        pos, pos.stride(0), 1 if positions is None else positions.shape[0],
        out, n, c, HAS_POS=positions is not None, BLOCK_R=block_r, BLOCK_C=block_c, INDEX_64=index_64,
        num_warps=warps)
    return out


def embedding_bwd(dy: torch.Tensor, idx: torch.Tensor, num_embeddings: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """dy (N, C) of a lookup of the (num_embeddings, C) table at idx (N,) -> dW (num_embeddings, C)
    in dy's dtype: each row the fp32 sum of the dy rows that looked it up, zeros for the rest.
    With `out` (a (num_embeddings, C) float tensor with unit column stride), those sums are added
    to its looked-up rows instead (in fp32, rounded once to out's dtype), the other rows left
    as they are, and out is returned."""
    if dy.dim() != 2 or idx.dim() != 1 or idx.shape[0] != dy.shape[0]:
        raise ValueError(f"embedding_bwd: dy must be (N, C) and idx (N,), got {tuple(dy.shape)} "
                         f"and {tuple(idx.shape)}")
    if dy.dtype not in _DTYPES:
        raise TypeError(f"embedding_bwd: dy must be float16, bfloat16 or float32, got {dy.dtype}")
    if out is not None and (out.shape != (num_embeddings, dy.shape[1]) or out.dtype not in _DTYPES
                            or out.stride(1) != 1 or out.device != dy.device):
        raise ValueError(f"embedding_bwd: out must be a ({num_embeddings}, {dy.shape[1]}) float tensor on "
                         f"{dy.device} with unit column stride, got {tuple(out.shape)} {out.dtype} "
                         f"strides {out.stride()} on {out.device}")
    if dy.stride(1) != 1:
        dy = dy.contiguous()
    n, c = dy.shape
    accumulate = out is not None
    dw = out if accumulate else _empty(num_embeddings, c, dy).zero_()     # rows nobody looked up stay zero
    if n == 0 or c == 0:
        return dw
    sorted_idx, order, starts = runs(idx, num_embeddings)
    block_p, short, block_t, block_c, warps = _TILE
    index_64 = max(dy.numel(), dw.numel(), dy.stride(0) * n) >= _INT32_LIMIT
    grid = (triton.cdiv(n, block_p), triton.cdiv(c, block_c))
    _embedding_bwd_kernel[grid](dy, dy.stride(0), sorted_idx, order, starts, dw, dw.stride(0), n, c,
                                BLOCK_P=block_p, SHORT=short, BLOCK_T=block_t, BLOCK_C=block_c,
                                INDEX_64=index_64, ACCUMULATE=accumulate, num_warps=warps)
    return dw
