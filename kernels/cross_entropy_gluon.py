"""The cross-entropy loss kernel of the fused LM head (kernels/cross_entropy.py) as a persistent,
double-buffered Gluon kernel for Hopper (sm_90).

What is fused. The same work as kernels/cross_entropy._cross_entropy_fwd_bwd_kernel, for 16-bit
logits (rows, V): per row

    loss_i  = logsumexp(logits_i) - logits_i[target_i]                        (fp32)
    dlogits = (softmax(logits_i) - onehot(target_i)) / n_valid, written over the row in place

(n_valid read from a 1-element device tensor; a row whose target is ignore_index gets loss 0 and
a zero gradient row).

Why. The Triton kernel's single pass holds a whole GPT-2 row (50304 bf16, padded to 65536) in
registers: 32 warps x 64 registers is the whole register file, so exactly one program runs on an
SM, and it does not overlap one row's loads, its compute (two exponentials an element) and its
stores: 0.40 ms per (4096, 50304) chunk where one read and one write of its 412 MB each at
~2.9 TB/s take ~0.28 ms. Here the row goes through shared memory instead:

  persistent   grid = min(rows, SMs); program p takes rows p, p + nprog, ...
  two buffers  each row buffer is NCHUNK x CHUNK 16-bit values (CHUNK = 4096: GPT-2's 50304 is 13
               chunks, 2 x 104 KB = 208 KB of the 227 KB an SM has). While row i is computed from
               one buffer, row i + 1 streams into the other by Ampere-style cp.async (16-byte
               vectors, LDGSTS, which bypass the registers), one commit group a row; wait_group(1)
               then a CTA barrier (cp.async completes per thread) make row i readable, and a CTA
               barrier after its compute lets the next iteration refill that buffer. Each chunk is
               its own allocation holding both buffers' copies of it: the compiler's shared-memory
               hazard analysis takes views of one allocation as aliasing, and put a CTA barrier
               between every two cp.async of a row into one allocation.
  pass 1       from shared memory, chunk by chunk: a running max and sum of exponentials (fp32,
               exp2 with log2(e) folded) per thread, over its REP x 8 values of each chunk, so the
               only cross-thread reductions are the two of the row's end -> logsumexp, loss.
  pass 2       from shared memory again: exp2(x log2(e) - (lse log2(e) + log2(n_valid))) is the
               softmax over n_valid in one FMA and one exponential, minus 1 / n_valid at the
               target's column, stored in place as 16-byte vectors.

The target's logit is read from the row's shared-memory buffer, not from global memory, so no
gradient store of the row can race its read (the old Triton kernel's race, fixed there by a
barrier).

Limits: Hopper with Gluon (triton >= 3.5); bf16/fp16 logits with unit column stride, a 16-byte
aligned base and row stride, V a multiple of 8 and at most MAX_CHUNKS * CHUNK (57344): `applies`
says so, and kernels/cross_entropy.cross_entropy_fwd_bwd_ keeps its Triton kernel for everything
else (fp32 logits, wider or ragged vocabularies). Targets must lie in [0, V) or equal ignore_index
(checked by the caller; out of range, the loss reads a wrong element but nothing out of bounds).
The launcher here is the whole interface.

Offline sm_90 compile (triton 3.6, bf16, V = 50304, with the gradient): 8 warps 255 registers,
16 warps 128 (each the most a thread can have at that block size, one block an SM), no spills;
213,024 bytes of shared memory (213,056 at 16 warps); 26 LDGSTS.128 a row a thread at 8 warps
(13 at 16) and STG.E.128 gradient stores; 9 CTA barriers in the code: 8 a row (the wait's, the
end's, one the compiler puts before the next row's copies, five in the row's two cross-warp
reductions) and one at the exit.

Measured (run 76, H100, benchmarks/probe_cross_entropy_gluon.py, (4096, 50304) bf16): 296.6 us a
chunk at 8 warps (296.4 at 16) against 392.3 for the Triton single pass and 276.5 for a plain copy
of the logits (the floor): 2.78 TB/s of reads and writes. In the graphed GPT-2 step (4 chunks)
28.25 / 28.23 ms against 28.53 / 28.50 with the Triton kernel (first do_bench medians of two
alternating calls each; benchmarks/NOTES.md, session 13).
"""
from __future__ import annotations

import torch
import triton

from fastgpt.kernels.common import hopper_gpu, sm_count, tma_row_major

try:   # Gluon arrived in triton 3.5; the rest of fastgpt runs without it
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy
    HAVE_GLUON = hasattr(async_copy, "async_copy_global_to_shared") and hasattr(gl, "thread_barrier")
except ImportError:  # pragma: no cover - depends on the installed triton
    HAVE_GLUON = False

# Columns of one chunk of a row buffer: at 8 warps each thread holds 2 x 8 of them (two 16-byte
# vectors), at 16 warps 8.
CHUNK = 4096
VEC = 8                       # 16-bit values in a 16-byte vector: cp.async and the stores move these
# two row buffers of MAX_CHUNKS chunks in 16-bit values: 2 x 14 x 8 KB = 224 KB, plus a few bytes of
# reduction scratch, within the 227 KB (232448 bytes) of shared memory a block may have on sm_90
MAX_CHUNKS = 14
NUM_WARPS = 8                 # the default; 16 is the other choice the probe times


def available(device: torch.device | None = None) -> bool:
    """Gluon present and a Hopper GPU (sm_90) to run on."""
    return HAVE_GLUON and hopper_gpu(device)


def fits(logits: torch.Tensor) -> bool:
    """Whether the kernel can take these logits, the device aside: 2-D bf16/fp16, unit column stride,
    16-byte aligned base and row stride, V a multiple of 8 (whole 16-byte vectors) that fits the two
    row buffers."""
    return (logits.dtype in (torch.bfloat16, torch.float16) and tma_row_major(logits)
            and logits.shape[1] % VEC == 0 and 0 < logits.shape[1] <= MAX_CHUNKS * CHUNK)


def applies(logits: torch.Tensor) -> bool:
    """Whether launch_cross_entropy_fwd_bwd_ can run on these logits here: a Hopper GPU with Gluon,
    the logits on it, and `fits`."""
    return logits.is_cuda and available(logits.device) and fits(logits)


if HAVE_GLUON:
    @gluon.jit
    def _issue_row(bufs, which, Logits, row, stride_vec, n_cols, cols, vec_cols,
                   CHUNK: gl.constexpr, NCHUNK: gl.constexpr):
        """cp.async of a row, chunk by chunk, into slot `which` of each chunk's buffer (not committed)."""
        row_ptr = Logits + row.to(gl.int64) * stride_vec * 8
        for s in gl.static_range(NCHUNK):
            if s < NCHUNK - 1:   # NCHUNK = cdiv(n_cols, CHUNK): all chunks but the last are whole
                async_copy.async_copy_global_to_shared(bufs[s].index(which), row_ptr + s * CHUNK + cols)
            else:
                async_copy.async_copy_global_to_shared(bufs[s].index(which), row_ptr + s * CHUNK + cols,
                                                       mask=s * CHUNK + vec_cols < n_cols)

    @gluon.jit
    def _store_chunk(ptrs, values, mask, WHOLE: gl.constexpr):
        """values -> ptrs, masked unless the chunk is WHOLE (not the row's last)."""
        if WHOLE:
            gl.store(ptrs, values)
        else:
            gl.store(ptrs, values, mask=mask)

    @gluon.jit
    def _cross_entropy_fwd_bwd_gluon_kernel(
        Logits, stride_vec,          # (rows, n_cols) 16-bit logits, row stride in 16-byte vectors
        Targets,                     # (rows,) integer class ids
        Loss,                        # (rows,) fp32 loss per row (0 where ignored)
        NValid,                      # pointer to the number of non-ignored targets of the whole batch
        n_rows, n_vec, ignore_index,  # n_vec: columns / 8
        CHUNK: gl.constexpr, NCHUNK: gl.constexpr, COMPUTE_GRAD: gl.constexpr,
    ):
        WARPS: gl.constexpr = gl.num_warps()
        VEC: gl.constexpr = 8
        NT: gl.constexpr = 32 * WARPS
        REP: gl.constexpr = CHUNK // (NT * VEC)
        gl.static_assert(REP * NT * VEC == CHUNK, "CHUNK must be a multiple of 8 values a thread")
        LOG2E: gl.constexpr = 1.4426950408889634
        # a chunk as (REP, NT, VEC): thread t holds [r, t, 0:8] for every r, a 16-byte vector each,
        # consecutive threads at consecutive vectors (coalesced, no shared-memory bank conflicts);
        # reductions over axes 2 and 0 stay inside the thread
        layout: gl.constexpr = gl.BlockedLayout([REP, 1, VEC], [1, 32, 1], [1, WARPS, 1], [2, 1, 0])
        per_thread: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(2, layout))   # (NT,): one a thread
        vec_layout: gl.constexpr = gl.BlockedLayout([VEC], [32], [WARPS], [0])
        dtype: gl.constexpr = Logits.dtype.element_ty
        # one allocation per chunk, each (2, REP, NT, VEC): slot 0 for even rows, 1 for odd. Separate
        # allocations, because the compiler's shared-memory hazard analysis sees subviews of one
        # allocation as aliasing and put a CTA barrier between every two cp.async of a row.
        smem_layout: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
        bufs = (gl.allocate_shared_memory(dtype, [2, REP, NT, VEC], smem_layout),)
        for s in gl.static_range(1, NCHUNK):
            bufs = bufs + (gl.allocate_shared_memory(dtype, [2, REP, NT, VEC], smem_layout),)

        r = gl.arange(0, REP, layout=gl.SliceLayout(1, gl.SliceLayout(2, layout)))
        t = gl.arange(0, NT, layout=per_thread)
        k = gl.arange(0, VEC, layout=gl.SliceLayout(0, gl.SliceLayout(1, layout)))
        # (REP, NT, 1): the column of each vector's first value within a chunk; (REP, NT, VEC): every value's
        vec_cols = gl.expand_dims(gl.expand_dims(r * (NT * VEC), 1) + gl.expand_dims(t * VEC, 0), 2)
        cols = vec_cols + gl.expand_dims(gl.expand_dims(k, 0), 1)
        lane = gl.arange(0, VEC, layout=vec_layout)
        n_cols = n_vec * VEC

        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        n_valid = gl.load(NValid).to(gl.float32)
        inv_n_valid = 1.0 / n_valid
        log2_n_valid = gl.log2(n_valid)

        # prologue: the program's first row (pid < n_rows: the grid is at most the rows) into slot 0
        _issue_row(bufs, 0, Logits, pid, stride_vec, n_cols, cols, vec_cols, CHUNK, NCHUNK)
        async_copy.commit_group()

        i = 0
        for row in range(pid, n_rows, nprog):
            buf = i % 2
            # the next row into the other slot (freed by the barrier that ended the last iteration);
            # a group is committed whether or not there is a next row, so that wait_group(1) below
            # always waits for exactly this row's group
            nxt = row + nprog
            if nxt < n_rows:
                _issue_row(bufs, 1 - buf, Logits, nxt, stride_vec, n_cols, cols, vec_cols, CHUNK, NCHUNK)
            async_copy.commit_group()
            target = gl.load(Targets + row).to(gl.int32)
            row_ptr = Logits + row.to(gl.int64) * stride_vec * VEC
            # this row's copies done (this thread's), then everyone's
            async_copy.wait_group(1)
            gl.thread_barrier()

            if target == ignore_index:
                gl.store(Loss + row, 0.0)
                if COMPUTE_GRAD:
                    zero = gl.zeros([REP, NT, VEC], dtype, layout=layout)
                    for s in gl.static_range(NCHUNK):
                        _store_chunk(row_ptr + s * CHUNK + cols, zero, s * CHUNK + vec_cols < n_cols,
                                     s < NCHUNK - 1)
            else:
                # pass 1: per thread, a running max m (natural units) and sum d of exp(x - m); and the
                # target's logit, read from this row's buffer (its vector, selected without branches),
                # so that no gradient store of the row can race its read
                m = gl.full([NT], -1.0e30, gl.float32, layout=per_thread)   # finite: exp2(m - m) = 1
                d = gl.zeros([NT], gl.float32, layout=per_thread)
                t_vec = gl.zeros([VEC], gl.float32, layout=vec_layout)
                t_chunk = target // CHUNK
                t_index = (target & (CHUNK - 1)) // VEC    # in [0, CHUNK / VEC) even for a bad target
                for s in gl.static_range(NCHUNK):
                    chunk = bufs[s].index(buf)
                    x = chunk.load(layout).to(gl.float32)
                    if s == NCHUNK - 1:   # the only chunk that may pass the row's end
                        x = gl.where(s * CHUNK + vec_cols < n_cols, x, float("-inf"))
                    m_new = gl.maximum(m, gl.max(gl.max(x, axis=2), axis=0))
                    m_new_log2 = gl.expand_dims(gl.expand_dims(m_new * LOG2E, 0), 2)
                    e = gl.exp2(x * LOG2E - m_new_log2)
                    d = d * gl.exp2((m - m_new) * LOG2E) + gl.sum(gl.sum(e, axis=2), axis=0)
                    m = m_new
                    # the chunk as (CHUNK / VEC, VEC) vectors (row-major, like the chunk): one of them
                    vectors = chunk._reinterpret(dtype, [REP * NT, VEC], gl.SwizzledSharedLayout(1, 1, 1, [0]))
                    v = vectors.index(t_index).load(vec_layout).to(gl.float32)
                    t_vec = gl.where(t_chunk == s, v, t_vec)
                z_target = gl.sum(gl.where(lane == (target & (VEC - 1)), t_vec, 0.0), axis=0)
                m_row = gl.max(m, axis=0)
                d_row = gl.sum(d * gl.exp2((m - m_row) * LOG2E), axis=0)
                lse = m_row + gl.log(d_row)
                gl.store(Loss + row, lse - z_target)

                if COMPUTE_GRAD:
                    # pass 2: (softmax - onehot) / n_valid, softmax / n_valid = exp2(x log2e - bias)
                    bias = lse * LOG2E + log2_n_valid
                    for s in gl.static_range(NCHUNK):
                        x = bufs[s].index(buf).load(layout).to(gl.float32)
                        g = gl.exp2(x * LOG2E - bias)
                        g = gl.where(s * CHUNK + cols == target, g - inv_n_valid, g)
                        _store_chunk(row_ptr + s * CHUNK + cols, g.to(dtype), s * CHUNK + vec_cols < n_cols,
                                     s < NCHUNK - 1)
            # every thread is done reading this slot before the next iteration refills it
            gl.thread_barrier()
            i += 1
        # nothing left in flight: the last iteration's group was empty
        async_copy.wait_group(0)


def launch_cross_entropy_fwd_bwd_(logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
                                  n_valid: torch.Tensor, ignore_index: int, compute_grad: bool,
                                  num_warps: int | None = None) -> None:
    """Per-row loss of logits (rows, V) into loss (rows,) fp32; with compute_grad the logits are
    overwritten by the gradient of the mean loss over n_valid (a 1-element device tensor). The
    Gluon twin of kernels/cross_entropy.cross_entropy_fwd_bwd_ (its kernel="gluon"); `applies`
    must hold. num_warps: 8 (default) or 16 (4 also compiles)."""
    rows, n_cols = logits.shape
    if rows == 0:
        return
    assert targets.is_contiguous() and loss.is_contiguous() and fits(logits)
    num_warps = num_warps or NUM_WARPS
    assert num_warps in (4, 8, 16), num_warps
    grid = (min(rows, sm_count(logits.device, interpreter_programs=1)),)
    _cross_entropy_fwd_bwd_gluon_kernel[grid](
        logits, logits.stride(0) // VEC, targets, loss, n_valid, rows, n_cols // VEC, ignore_index,
        CHUNK=CHUNK, NCHUNK=triton.cdiv(n_cols, CHUNK), COMPUTE_GRAD=compute_grad, num_warps=num_warps)
