"""Helpers the kernel families share, and the one kernel they share: the fixed-order sum of fp32
per-program partials that ends every deterministic column reduction (add+LayerNorm's dweight /
dbias / dx_bias, the linear family's and the MLP's bias gradients, the attention's qkv bias).

Deferred sums. Each of those sums is a launch of ~3.6 us in a GPT-2 step, 49 of them with ~0.35
us of idle each (run 144's timeline): ~0.19 ms of a 26 ms step for ~106 MB of partials, which one
launch reads in ~40 us. Their outputs are gradients of parameters that nothing reads before the
optimizer step when autograd takes each as the parameter's .grad as it is (a leaf's first
gradient, not cast, not accumulated: GraphedTrainStep's step on parameter copies). Inside
fastgpt.ops.dispatch.deferring(sums) (an op's backward around its kernels, on autograd's thread)
sum_partials records (partials, output) in a DeferredColumnSums instead of launching, and
`flush(grads)` runs them all in one launch after the backward, having checked that every output
is one of `grads` (else it raises: an output autograd copied or accumulated was read unwritten).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from fastgpt.backend import autotuning, interpreter_mode
from fastgpt.ops.dispatch import sums_deferred_here

# the Triton element type of each float dtype the kernels take by address (pointer tables cast to it)
TRITON_TYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


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
    _store_column_sums(PartialA, OutA, P, C, cols, BLOCK_P, BLOCK_C)
    if HAS_B:
        _store_column_sums(PartialB, OutB, P, C, cols, BLOCK_P, BLOCK_C)
    if HAS_C:
        _store_column_sums(PartialC, OutC, P, C, cols, BLOCK_P, BLOCK_C)


@triton.jit
def _store_column_sums(Partial, Out, P, C, cols, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Out[cols] = the sums over rows of Partial (P, C) fp32 at cols, the rows added in a fixed
    order: (BLOCK_P, BLOCK_C) tiles into one accumulator, then its rows."""
    col_mask = cols < C
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for first in range(0, P, BLOCK_P):
        parts = first + tl.arange(0, BLOCK_P)
        mask = (parts < P)[:, None] & col_mask[None, :]
        acc += tl.load(Partial + parts.to(tl.int64)[:, None] * C + cols[None, :], mask=mask, other=0.0)
    tl.store(Out + cols, tl.sum(acc, axis=0).to(Out.dtype.element_ty), mask=col_mask)


@triton.jit
def _sum_partials_table_kernel(Table, n_items, OUT_TYPE: tl.constexpr, BLOCK_P: tl.constexpr,
                               BLOCK_C: tl.constexpr):
    """sum_partials_kernel's work for many (partials, output) pairs in one launch. Table (int64):
    n_items partials addresses, n_items output addresses, n_items row counts P, n_items column
    counts C, then a (program's pair, first column) entry for every program."""
    pid = tl.program_id(0).to(tl.int64)
    item = tl.load(Table + 4 * n_items + 2 * pid)
    cols = tl.load(Table + 4 * n_items + 2 * pid + 1) + tl.arange(0, BLOCK_C)
    partial = tl.load(Table + item).to(tl.pointer_type(tl.float32))
    out = tl.load(Table + n_items + item).to(tl.pointer_type(OUT_TYPE))
    _store_column_sums(partial, out, tl.load(Table + 2 * n_items + item), tl.load(Table + 3 * n_items + item),
                       cols, BLOCK_P, BLOCK_C)


# sum_partials' tile (partial rows, columns, warps) by the number of buffers summed at once. Narrow
# columns give more programs (C / 8 = 96 at C = 768): a few dozen programs on 132 SMs, each
# walking all P rows, were latency-bound. Timed as CUDA-graph replays on an H200
# (benchmarks/tune_sum_partials.py, results/runs/run36-sum_partials.md): (512, 768) x 3 buffers
# 9.5 us with the former (256, 32) 8-warp tile (its three accumulators spilled) against 3.8;
# (256, 3072) x 1 3.4 us with the former (64, 32) 4-warp tile against 2.7.
SUM_TILES = {1: (256, 16, 8), 2: (512, 8, 8), 3: (512, 8, 8)}
_INTERPRETER_SUM_TILE = (4, 16, 4)


def sum_tile(buffers: int) -> tuple[int, int, int]:
    """(BLOCK_P, BLOCK_C, num_warps) of sum_partials for a call summing `buffers` buffers."""
    return _INTERPRETER_SUM_TILE if interpreter_mode() else SUM_TILES[buffers]


def sum_partials(partials: torch.Tensor, out: torch.Tensor,
                 partials_b: torch.Tensor | None = None, out_b: torch.Tensor | None = None,
                 partials_c: torch.Tensor | None = None, out_c: torch.Tensor | None = None) -> torch.Tensor:
    """out[c] = the sum over p of partials[p, c] (a contiguous (P, C) fp32 tensor), in p order, in
    out's dtype (so no cast follows); returns out. Likewise out_b from partials_b and out_c from
    partials_c (same shape), in the same launch. The second pass of every deterministic column sum:
    the linear family's, the MLP's and the attention's bias gradients, add+LayerNorm's dweight,
    dbias and dx_bias. C = 0 launches nothing. Inside deferring(sums): recorded in `sums`, the
    outputs written by its flush() (the module's header)."""
    P, C = partials.shape
    if C == 0:
        return out
    if (partials_b is None) != (out_b is None) or (partials_c is None) != (out_c is None):
        raise ValueError("sum_partials: each extra partial buffer needs its output, and each output its buffer")
    buffers = 1 + (partials_b is not None) + (partials_c is not None)
    block_p, block_c, warps = sum_tile(buffers)
    deferred = sums_deferred_here()
    if deferred is not None:
        for buffer, output in ((partials, out), (partials_b, out_b), (partials_c, out_c)):
            if buffer is not None:
                deferred.add(buffer, output, (block_p, block_c, warps))
        return out
    sum_partials_kernel[(triton.cdiv(C, block_c),)](
        partials, partials if partials_b is None else partials_b, partials if partials_c is None else partials_c,
        out, out if out_b is None else out_b, out if out_c is None else out_c, P, C,
        HAS_B=partials_b is not None, HAS_C=partials_c is not None, BLOCK_P=block_p, BLOCK_C=block_c,
        num_warps=warps)
    return out


class PinnedTable:
    """An int64 device table of addresses and sizes that kernels read, written from pinned host
    memory without blocking, so that a CUDA graph can record the write. A captured copy re-reads
    its host buffer at every replay, so a capture writes through a host buffer of its own, which
    eager writes never touch; an eager write first waits until the previous eager copy has read
    the other. The AdamW step's gradient table (fastgpt.ops.adamw) and DeferredColumnSums use it."""

    def __init__(self, n: int, device: torch.device):
        pinned = device.type == "cuda"
        self.host = {capturing: torch.empty(n, dtype=torch.int64, pin_memory=pinned) for capturing in (False, True)}
        self.table = torch.empty(n, dtype=torch.int64, device=device)
        self.copied: torch.cuda.Event | None = None        # the last eager copy's completion

    def write(self, values) -> torch.Tensor:
        """values (at most the table's size) into the table's first entries; returns the table."""
        n = len(values)
        capturing = self.table.is_cuda and torch.cuda.is_current_stream_capturing()
        if not capturing and self.copied is not None:
            self.copied.synchronize()       # (a capture starts after torch.cuda.graph synchronised)
        host = self.host[capturing]
        host[:n].copy_(torch.tensor(values, dtype=torch.int64))
        self.table[:n].copy_(host[:n], non_blocking=True)
        if self.table.is_cuda and not capturing:
            self.copied = torch.cuda.Event()
            self.copied.record()
        return self.table


class DeferredColumnSums:
    """The sum_partials calls of backwards, run by flush() in one launch per output dtype and tile
    (the module's header). One object serves a training step's backward at every step.

    Holds the partials (so their memory stays theirs until the flush) and only the address, size
    and dtype of each output: a reference would make autograd copy the output instead of taking
    it as the gradient. Each sum keeps the tile its call would have run on, so the outputs are
    bit for bit those of the calls in place. The launch reads a table of addresses (a
    PinnedTable, so a CUDA graph can record its write), made at the first flush, outside any
    capture."""

    def __init__(self):
        self.partials: list[torch.Tensor] = []
        self.outputs: list[tuple[int, int, torch.dtype, tuple]] = []    # (address, C, dtype, tile)
        self.table: PinnedTable | None = None

    def add(self, partials: torch.Tensor, out: torch.Tensor, tile: tuple[int, int, int]) -> None:
        """Record out = partials summed over rows, on `tile` (sum_tile's) when flushed."""
        if partials.dim() != 2 or partials.dtype != torch.float32 or not partials.is_contiguous():
            raise ValueError("DeferredColumnSums: partials must be a contiguous (P, C) float32 tensor")
        if out.numel() != partials.shape[1] or not out.is_contiguous():
            raise ValueError(f"DeferredColumnSums: the output must be a contiguous ({partials.shape[1]},) tensor")
        self.partials.append(partials)
        self.outputs.append((out.data_ptr(), out.numel(), out.dtype, tile))

    def discard(self) -> None:
        """Forget the recorded sums (a backward that failed half-way)."""
        self.partials, self.outputs = [], []

    def flush(self, grads: list[torch.Tensor | None]) -> int:
        """Run every recorded sum; returns how many. Raises, before writing anything, if an output
        is not one of `grads` (the gradients as autograd left them)."""
        taken = {g.data_ptr() for g in grads if g is not None}
        if any(address not in taken for address, _, _, _ in self.outputs):
            self.discard()
            raise RuntimeError("deferred column sums write outputs that are no parameter's gradient: autograd "
                               "copied or accumulated them before they were written (defer only where each "
                               "such gradient is a leaf's first and goes uncast)")
        if not self.outputs:
            return 0
        values, launches = [], []       # per (dtype, tile): its offset in the table, pairs, programs
        for dtype, tile in sorted({(d, t) for _, _, d, t in self.outputs}, key=str):
            items = [i for i, (_, _, d, t) in enumerate(self.outputs) if (d, t) == (dtype, tile)]
            chunks = [(j, first) for j, i in enumerate(items) for first in range(0, self.outputs[i][1], tile[1])]
            launches.append((len(values), dtype, tile, len(items), len(chunks)))
            values += ([self.partials[i].data_ptr() for i in items] + [self.outputs[i][0] for i in items]
                       + [self.partials[i].shape[0] for i in items] + [self.outputs[i][1] for i in items]
                       + [v for chunk in chunks for v in chunk])
        if self.table is None or self.table.table.numel() < len(values):
            if self.partials[0].is_cuda and torch.cuda.is_current_stream_capturing():
                raise RuntimeError("DeferredColumnSums: a capture needs a larger table than the flushes before it")
            self.table = PinnedTable(len(values), self.partials[0].device)
        table = self.table.write(values)
        for offset, dtype, (block_p, block_c, warps), n_items, programs in launches:
            _sum_partials_table_kernel[(programs,)](table[offset:], n_items, OUT_TYPE=TRITON_TYPES[dtype],
                                                    BLOCK_P=block_p, BLOCK_C=block_c, num_warps=warps)
        count = len(self.outputs)
        self.discard()
        return count


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
