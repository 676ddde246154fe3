"""The MLP's two GELU GEMMs as a warp-specialised "ping-pong" Gluon kernel for Hopper (sm_90).

What is fused, and why. kernels/mlp.py fuses the bias + GELU into the c_fc GEMM's epilogue (and
the GELU derivative into the dh GEMM's), but in Triton the warps that run the main loop also run
the epilogue, so each tile's epilogue (the GELU's arithmetic and two (128 x N) stores) stalls the
tensor cores: at GPT-2's shapes the fused forward took 196 us where cuBLAS's plain GEMM of the
same shape takes ~107 us. This kernel is written in Gluon (Triton's explicit-layout dialect) the
way CUTLASS's Hopper "ping-pong" GEMMs are built:

  producer   one warp issues every TMA load (A and B tiles) into a ring of STAGES shared-memory
             slots, tile after tile, waiting on each slot's `empty` barrier;
  consumers  two warpgroups (4 warps each) take the program's tiles alternately (even and odd).
             Each runs its tile's whole K loop on wgmma (accumulator in registers), then its
             epilogue, while the other warpgroup's K loop keeps the tensor cores busy. Because the
             producer fills slots in tile order, the two main loops take turns.

  GELU_GRAD=False  out = gelu_tanh(acc + bias); aux = acc + bias (the pre-activation)
  GELU_GRAD=True   pre loaded (by TMA during the K loop); out = acc * gelu_tanh'(pre), written
                   over pre's shared-memory tile; with BIAS_GRAD the fp32 column sums of out (as
                   rounded), one row of partials per 128 rows, computed on the tensor cores as
                   ones @ out from that shared-memory tile. h = gelu_tanh(pre) is not written:
                   the MLP keeps h from its forward (MLPOptions.save_gelu)
  GRAD_CODE        with either: aux / pre is not the pre-activation but gelu_tanh'(pre) as an
                   8-bit code (uint8, `gelu_grad_encode`: 255 levels over the derivative's range
                   [-0.129, 1.129], so within 0.0025 of it): the second stream is half the bytes
                   (the kernel was bound by its L2 traffic, below) and the backward does no tanh.
                   The code tile lives in the first half of a 16-bit output buffer; the backward
                   overwrites it with out after a warpgroup barrier (the two layouts map a thread's
                   elements to different bytes)

  EXP_SHIFT        (the LM head, kernels/cross_entropy.py's exp-logits path) out = exp(min(acc -
                   shift[row], CAP)), one output, and each row's sum of out (before rounding) over
                   the tile's columns, into (M, cdiv(N, BLOCK_N)) fp32 row sums: no loss pass over
                   the logits after the GEMM.

The two consumers' K loops strictly alternate (an ordering barrier pair, `turn`): a slot's
`ready` barrier can then never be more than one phase behind the count a consumer waits for.
A consumer waits for its turn once its tile's loads are issued and its bias is in registers.
The other schedule of the same kernel (COOPERATIVE, kept for measuring) gives both warpgroups 128
rows each of one (256, 128) tile, sharing the B slot: a third less operand traffic, but the
epilogues no longer overlap any main loop.

Stores go through shared-memory tiles (two per consumer, alternating) and TMA bulk copies. A is
(M, K) row-major; B is (N, K) row-major (B_NK: an nn.Linear weight, transposed in shared
memory) or (K, N).

Measured (benchmarks/NOTES.md, session 11, H100, M = 16384, C = 768, H = 3072; probe timings move
by ~5% from call to call): the forward 159-163 us against 194-196 for kernels/mlp.py's kernel and
118-120 for cuBLAS's plain GEMM; the backward with the bias partials 157 us against 243 for cuBLAS
dh + kernels/mlp.gelu_bwd (runs 64, 66); in the training step 3.76 ms for its 24 launches (run 67).
What bounded it (Nsight Compute, run 60): the epilogue's instructions, issued by one warp a
scheduler and stalled on dependencies and barriers; the GELU by exp and a division took ~2x the
instructions of tanh.approx (the step went from 28.76 to 28.00 ms with it, runs 62 and 65). The
cooperative schedule reads a third less operand data but was no faster (runs 59, 64, 66), nor
was a third, "handoff" schedule (cooperative tiles, the epilogue in its own warpgroup; runs
63-66; removed after, commit e6357e7 has it). Sessions 15-16 (runs 89-97) read it differently at
the step's shapes: its main loop with one output runs at cuBLAS's speed, and the kernel is bound
by its L2 traffic, which cuBLAS halves by TMA multicast (not in Gluon 3.6). The LM head's
EXP_SHIFT GEMM (run 105, a 4096 x 768 x 50304 chunk): 522-542 us against cuBLAS's plain GEMM's
507-527. GRAD_CODE (runs 172-173, the step's shapes): the backward 159-168 -> 141-148 us; the forward
no faster (159-163 with pre against 163-164 with codes, min of three: the halved second store did
not show there, nor with the code's clamps removed; why was not measured); the step -0.34 ms.
With the codes the cooperative schedule stayed slower (run 175: 184.5 / 155.8 us against 152.5 / 142.4).
What bounds the forward with codes (run 178, H100): a copy whose code skips the derivative's
arithmetic ran 144 us against 159: the epilogue's instructions, ~3 us an FMA an element. Trimmed
(run 179, H200): the accumulators start from the bias (no FADD), the level takes four FMAs from h
(h (1 - t) for (x / 2)(1 - t^2)), an FADD rounds it (no F2I): 14.75 -> 12.75 instructions an
element of the offline SASS, 160.5 against 164.4 us, the step -0.10 / -0.27 / -0.14 ms (H100,
run 180: 161.5 against 163.7). Nsight Compute of it (run 182): the main loops, not the epilogues,
set the pace (their stall samples twice the epilogues'; the epilogue warpgroup then waits for its
turn), and 29% of the main loops' samples wait for a slot's data while the producer waits for a
free slot: operand delivery from L2, as sessions 15-16 read it. Handing slots back sooner (BLOCK_K
32, 8-10 slots; run 183) was slower everywhere (forward 178 against 161 us, backward 149 / 141,
the LM head's chunk 1417 / 1128; the step +0.9 ms). The same profile found each K loop's start
stalled on its tile's bias load (issued after the turn was taken): waiting for the turn after the
load (run 186, min of three): forward 162.4 / 164.4 us with codes, 158.4 / 163.6 with pre, backward
140.7 / 142.4, the LM head's chunk 1143 / 1155, outputs bitwise equal; the step -0.05 to -0.09 ms
in three pairs.
Clock stamps in the kernel (session 29, runs 224-228: %clock64 at each tile's start, K loop start,
accumulators ready and epilogue issued): the forward's consumers are the critical path (epilogue
~8000 cycles a tile against a ~7100-7600 K loop, then ~1300-1500 to the next tile's bias), the
backward's and the exp GEMM's wait ~2900 cycles a tile for their turn (K-loop bound). Loading the
forward's bias a tile ahead shortened that gap but lengthened the K loop as much (presumably then
waiting for operand data; not measured) and ran slower (run 225: 172 against 160 us); the exp
GEMM's shifts loaded at the tile's start, not at each half's epilogue, are kept (run 226: 1081
against 1151 us). With both halves of the forward's epilogue in one block, ptxas computed both
halves' GELU and codes before any store; each half in its own block (`row < M`, session 30) ran
154.8 against 162.9 us (run 231, median of eight alternating rounds, outputs bitwise equal), the
step -0.15 ms at the cap. Run 230's stamped copy (whose clock reads also kept the halves apart)
shows the forward then paced by its K loop, which waits ~1500 cycles a tile on its slots' `ready`
barriers: for operand data, not for want of slots (a sixth, for one output buffer a warpgroup,
was no faster: run 233). The epilogue still costs the K loop beside it cycles: without the codes
the forward takes 137 us, with one plain output 130 (cuBLAS's time), at equal clocks (runs
237-238).

Limits: Hopper only (wgmma, TMA, setmaxnreg), triton >= 3.6 with Gluon; bf16/fp16 operands and
outputs, row-major, 16-byte aligned; any M, N, K (TMA zero-fills loads past the edges and clips
stores). The launchers here are the whole interface; kernels/mlp.py stays the portable path.
"""
from __future__ import annotations

import torch
import triton

from fastgpt.kernels.common import hopper_gpu, sm_count, tma_row_major

try:   # Gluon arrived in triton 3.5; the rest of fastgpt runs without it
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma,
                                                                  warpgroup_mma, warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    HAVE_GLUON = hasattr(tma, "async_copy_global_to_shared")
except ImportError:  # pragma: no cover - depends on the installed triton
    HAVE_GLUON = False

# Two schedules of the one kernel (the COOPERATIVE constexpr), each with the deepest ring of A / B
# slots that fits beside the four (64, 128) output buffers in 227 KB of shared memory:
#   pingpong     a (128, 128) tile per warpgroup, the two alternating, each running its own epilogue
#                while the other's K loop runs
#   cooperative  (256, 128) tiles, each warpgroup 128 rows of every tile, the B slot shared (a third
#                less operand traffic per FLOP), both running their epilogues at once
BLOCK_M = {"pingpong": 128, "cooperative": 256}
# (ping-pong: 5 x 32 KB slots + 64 KB = 224 KB; run 73 measured the forward 167.5 us against 172.9
# with 4 slots, the backward unchanged, at the step's shapes)
STAGES = {"pingpong": 5, "cooperative": 3}
SCHEDULE = "pingpong"
# registers a thread: the consumer warpgroups', the producer warp's, and the launch's maxnreg
# (12 warps, the producer's padded to a warpgroup: 12 x 32 x 168 <= 64K)
CONSUMER_REGS, PRODUCER_REGS, MAX_REGS = 232, 40, 168
BLOCK_N, BLOCK_K, GROUP_M = 128, 64, 8
HALF = 64

# GRAD_CODE's format: gelu_tanh'(x) lies in [-0.12899, 1.12899] (its extremes at x = -/+1.4185),
# spread over codes 0..254 of a uint8 in equal steps of 1.26 / 254 = 0.00496; a code is the
# nearest level, so the decoded derivative is within half a step (0.00248) of the exact one. For
# derivatives in [0.5, 1.13] (every x > 0) that is as fine as bf16's own spacing there (2^-8 to
# 2^-7). Code 255 is never written (tests fill code buffers with it, as others with NaN).
GELU_GRAD_MIN, GELU_GRAD_MAX, GELU_GRAD_TOP = -0.13, 1.13, 254
GELU_GRAD_STEP = (GELU_GRAD_MAX - GELU_GRAD_MIN) / GELU_GRAD_TOP


def gelu_grad_encode(pre: torch.Tensor) -> torch.Tensor:
    """The reference of GRAD_CODE's store: gelu_tanh'(pre) (PyTorch's own GELU backward, in fp32)
    as uint8 codes."""
    x = pre.float()
    grad = torch.ops.aten.gelu_backward(torch.ones_like(x), x, approximate="tanh")
    return ((grad - GELU_GRAD_MIN) / GELU_GRAD_STEP + 0.5).clamp(0, GELU_GRAD_TOP).to(torch.uint8)


def gelu_grad_decode(code: torch.Tensor) -> torch.Tensor:
    """gelu_tanh'(pre) (fp32) back from gelu_grad_encode's codes, as the kernel decodes them."""
    return code.float() * GELU_GRAD_STEP + GELU_GRAD_MIN


def available(device: torch.device | None = None) -> bool:
    """Gluon present and a Hopper GPU (sm_90) to run on."""
    return HAVE_GLUON and hopper_gpu(device)


if HAVE_GLUON:
    _CODE_MIN = gl.constexpr(GELU_GRAD_MIN)
    _CODE_STEP = gl.constexpr(GELU_GRAD_STEP)
    # the forward's code level (gelu'(x) - MIN) / STEP with the constants folded in:
    # K0 + K1 t + (x / 2) (1 - t^2) (D0 + D1 x^2), where (x / 2) (1 - t^2) = h (1 - t) = h - h t
    _CODE_K0 = gl.constexpr((0.5 - GELU_GRAD_MIN) / GELU_GRAD_STEP)
    _CODE_K1 = gl.constexpr(0.5 / GELU_GRAD_STEP)
    _CODE_D0 = gl.constexpr(0.7978845608028654 / GELU_GRAD_STEP)
    _CODE_D1 = gl.constexpr(0.10703222440890038 / GELU_GRAD_STEP)
    # 1.5 * 2^23: a float in [2^23, 2^24) has a spacing of 1, so level + _ROUND_BIAS is level rounded
    # to the nearest integer, held in the low bits (here the low byte: level < 256) of its encoding
    _ROUND_BIAS = gl.constexpr(12582912.0)
    # EXP_SHIFT works in log2 units: exp(a - b) = 2^(a log2(e) - b log2(e))
    _LOG2E = gl.constexpr(1.4426950408889634)

    @gluon.jit
    def _tanh(x):
        """tanh of an fp32 tile by the SFU's tanh.approx.f32 (max relative error ~2^-11, under the
        bf16 rounding of every output it feeds): one instruction where exp and a division take
        about ten, and the epilogue's arithmetic is what bounds this kernel (run 60: its warps
        issue one instruction every ~3 cycles, stalled on dependencies and barriers)."""
        return gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=gl.float32,
                                         is_pure=True, pack=1)

    @gluon.jit
    def _gelu_parts(x):
        """(gelu_tanh(x), its tanh t, x^2) of an fp32 tile: gelu_tanh = 0.5 x (1 + tanh(sqrt(2/pi)
        (x + 0.044715 x^3))); the derivative and its code reuse t and x^2."""
        x2 = x * x
        t = _tanh(x * (0.7978845608028654 + 0.035677408136300125 * x2))
        half_x = 0.5 * x
        return half_x + half_x * t, t, x2

    @gluon.jit
    def _gelu(x):
        """gelu_tanh of an fp32 tile."""
        h, _, _ = _gelu_parts(x)
        return h

    @gluon.jit
    def _gelu_grad(x):
        """d gelu_tanh / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2)."""
        _, t, x2 = _gelu_parts(x)
        du = 0.7978845608028654 + 0.10703222440890038 * x2
        return 0.5 + 0.5 * t + (0.5 * x) * (1.0 - t * t) * du

    @gluon.jit
    def _gelu_grad_code(x):
        """(gelu_tanh(x), gelu_tanh'(x) as GRAD_CODE's uint8 code) of an fp32 tile, one tanh for both.
        The level lies in (0.2, 253.9) for every finite x (gelu' in [-0.129, 1.129], tanh.approx
        within ~1e-3), so no clamps: the nearest code is the low byte of level + _ROUND_BIAS's
        encoding (an FADD where a conversion takes the SFU's rate; NaN and infinities give code 0).
        Four FMAs for the level from t, x^2 and h (run 178: each FMA an element costs this kernel
        ~3 us)."""
        h, t, x2 = _gelu_parts(x)
        level = (_CODE_K0 + _CODE_K1 * t) + (h - h * t) * (_CODE_D0 + _CODE_D1 * x2)
        return h, (level + _ROUND_BIAS).to(gl.int32, bitcast=True).to(gl.uint8)

    @gluon.jit
    def _tile_coords(tile_id, num_pid_m, num_pid_n, GROUP: gl.constexpr):
        num_pid_in_group = GROUP * num_pid_n
        first_pid_m = (tile_id // num_pid_in_group) * GROUP
        group_size_m = gl.minimum(num_pid_m - first_pid_m, GROUP)
        pid_m = first_pid_m + (tile_id % group_size_m)
        pid_n = (tile_id % num_pid_in_group) // group_size_m
        return pid_m, pid_n

    @gluon.jit
    def _store_tile(desc, c_buf, x, off_m, off_n, PENDING: gl.constexpr = 0):
        """x -> c_buf -> a TMA bulk store at (off_m, off_n), once c_buf's previous store has left it
        (at most PENDING newer stores of this warpgroup, to its other buffers, may still be reading)."""
        tma.store_wait(PENDING)
        c_buf.store(x.to(desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(desc, [off_m, off_n], c_buf)

    @gluon.jit
    def _mlp_producer(a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty, pre_ready,
                      turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD: gl.constexpr, HAS_BIAS: gl.constexpr,
                      BIAS_GRAD: gl.constexpr, B_NK: gl.constexpr, COOPERATIVE: gl.constexpr):
        """One warp: every TMA load of the program's tiles, in tile order, into the slot ring."""
        BM: gl.constexpr = a_desc.block_type.shape[0]
        BN: gl.constexpr = out_desc.block_type.shape[1]
        BK: gl.constexpr = a_desc.block_type.shape[1]
        NUM_STAGES: gl.constexpr = a_bufs.type.shape[0]
        num_pid_m = gl.cdiv(M, BM)
        num_pid_n = gl.cdiv(N, BN)
        k_tiles = gl.cdiv(K, BK)
        count = 0
        for tile_id in range(pid, num_pid_m * num_pid_n, nprog):
            pid_m, pid_n = _tile_coords(tile_id, num_pid_m, num_pid_n, 8)
            for k in range(k_tiles):
                s = count % NUM_STAGES
                # a fresh barrier counts as having completed phase 1: the first lap does not wait
                mbarrier.wait(empty.index(s), ((count // NUM_STAGES) & 1) ^ 1)
                mbarrier.expect(ready.index(s), a_desc.block_type.nbytes + b_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(a_desc, [pid_m * BM, k * BK], ready.index(s), a_bufs.index(s))
                if B_NK:
                    tma.async_copy_global_to_shared(b_desc, [pid_n * BN, k * BK], ready.index(s), b_bufs.index(s))
                else:
                    tma.async_copy_global_to_shared(b_desc, [k * BK, pid_n * BN], ready.index(s), b_bufs.index(s))
                count += 1

    @gluon.jit
    def _mlp_k_loop(a_bufs, b_bufs, ready, empty, turn, base, k_tiles, acc_init, ROW0: gl.constexpr,
                    HALF: gl.constexpr, B_NK: gl.constexpr, PINGPONG: gl.constexpr, WHICH: gl.constexpr):
        """One warpgroup's K loop over rows ROW0.. of the A slots: two (HALF, BN) fp32 accumulators,
        each starting from acc_init (zeros or the bias), each slot handed back once the wgmmas reading
        it have finished; ping-pong: the caller holds the turn, passed on as soon as the last wgmma
        is issued."""
        NUM_STAGES: gl.constexpr = a_bufs.type.shape[0]
        acc0 = acc_init
        acc1 = acc_init
        for k in range(k_tiles):
            count = base + k
            s = count % NUM_STAGES
            mbarrier.wait(ready.index(s), (count // NUM_STAGES) & 1)
            if B_NK:
                b = b_bufs.index(s).permute((1, 0))
            else:
                b = b_bufs.index(s)
            a = a_bufs.index(s)
            acc0 = warpgroup_mma(a.slice(ROW0, HALF), b, acc0, is_async=True)
            acc1 = warpgroup_mma(a.slice(ROW0 + HALF, HALF), b, acc1, is_async=True)
            # the previous step's two wgmmas have finished reading their slot: hand it back
            acc0, acc1 = warpgroup_mma_wait(2, deps=(acc0, acc1))
            mbarrier.arrive(empty.index((count + NUM_STAGES - 1) % NUM_STAGES), pred=k > 0)
        if PINGPONG:
            mbarrier.arrive(turn.index(1 - WHICH))
        acc0, acc1 = warpgroup_mma_wait(0, deps=(acc0, acc1))
        mbarrier.arrive(empty.index((base + k_tiles - 1) % NUM_STAGES))
        return acc0, acc1

    @gluon.jit
    def _load_bias(Bias, off_n, N, BN: gl.constexpr, acc_layout: gl.constexpr):
        """The tile's bias columns as a (1, BN) fp32 row in the accumulator's layout."""
        cols = off_n + gl.arange(0, BN, layout=gl.SliceLayout(0, acc_layout))
        return gl.expand_dims(gl.load(Bias + cols, mask=cols < N, other=0.0).to(gl.float32), 0)

    @gluon.jit
    def _load_shift(Shift, row, M, HALF: gl.constexpr, acc_layout: gl.constexpr):
        """EXP_SHIFT's per-row shift of rows row.. (HALF of them) in log2 units, in the slice of the
        accumulator's layout that a (HALF, 1) column broadcasts from. Loaded at the tile's start, so
        that the K loop hides its latency (runs 225-226: the LM head's exp chunk 1081-1094 us median,
        against 1150-1151 with the shift loaded at each half's epilogue)."""
        rows = row + gl.arange(0, HALF, layout=gl.SliceLayout(1, acc_layout))
        return gl.load(Shift + rows, mask=rows < M, other=0.0) * _LOG2E

    @gluon.jit
    def _exp_shift_half(acc, shift, row, off_n, M, N, out_desc, c_buf, RowSums, CAP: gl.constexpr):
        """EXP_SHIFT epilogue of rows row.. (64 of them): out = exp(min(acc - shift_row, CAP)),
        and each row's sum of out (before rounding; columns past N left out) over the tile's
        columns into RowSums[row, off_n // BN] (fp32, (M, cdiv(N, BN))). In log2 units (shift:
        _load_shift's): one FMA, a min and ex2 an element."""
        HALF: gl.constexpr = out_desc.block_type.shape[0]
        BN: gl.constexpr = out_desc.block_type.shape[1]
        layout: gl.constexpr = acc.type.layout
        rows = row + gl.arange(0, HALF, layout=gl.SliceLayout(1, layout))
        e = gl.exp2(gl.minimum(acc * _LOG2E - gl.expand_dims(shift, 1), CAP * _LOG2E))
        _store_tile(out_desc, c_buf, e, row, off_n, 1)
        if off_n + BN <= N:
            sums = gl.sum(e, axis=1)
        else:       # the last column tile: TMA zero-filled W's rows past N, so exp(-shift) there
            cols = off_n + gl.arange(0, BN, layout=gl.SliceLayout(0, layout))
            sums = gl.sum(gl.where(gl.expand_dims(cols < N, 0), e, 0.0), axis=1)
        gl.store(RowSums + rows.to(gl.int64) * gl.cdiv(N, BN) + off_n // BN, sums, mask=rows < M)

    @gluon.jit
    def _code_buffer(buf, code_desc):
        """GRAD_CODE's (HALF, BN) uint8 code tile in the first half of a 16-bit output buffer."""
        return buf._reinterpret(gl.uint8, code_desc.block_type.shape, code_desc.layout)

    @gluon.jit
    def _epilogue_half(acc, h: gl.constexpr, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, M, phase,
                       GELU_GRAD: gl.constexpr, WHICH: gl.constexpr, GRAD_CODE: gl.constexpr):
        """Rows off_m + 64h.. of the tile: acc (64, BN) fp32 (the bias added) -> the output(s)."""
        HALF: gl.constexpr = out_desc.block_type.shape[0]
        row = off_m + h * HALF
        if not GELU_GRAD:
            # the warpgroup's two buffers alternate (pre or its code, h), one store in flight while
            # the next fills (three buffers a warpgroup, so that no store waits for one of its own
            # tile, measured no faster: run 66). A half whose rows all lie past M is skipped (TMA
            # would clip its stores); the branch also keeps ptxas from hoisting the second half's
            # arithmetic above the first half's stores, as it does in one block (offline SASS)
            if row < M:
                if GRAD_CODE:
                    gelu, code = _gelu_grad_code(acc)
                    _store_tile(aux_desc, _code_buffer(c_bufs.index(2 * WHICH), aux_desc), code, row, off_n, 1)
                else:
                    gelu = _gelu(acc)
                    _store_tile(aux_desc, c_bufs.index(2 * WHICH), acc, row, off_n, 1)
                _store_tile(out_desc, c_bufs.index(2 * WHICH + 1), gelu, row, off_n, 1)
        else:   # this half's pre (or codes) came into its own buffer during the K loop
            c_buf = c_bufs.index(2 * WHICH + h)
            mbarrier.wait(pre_ready.index(2 * WHICH + h), phase)
            if GRAD_CODE:
                code = _code_buffer(c_buf, pre_desc).load(acc.type.layout)
                out = (acc * (code.to(gl.float32) * _CODE_STEP + _CODE_MIN)).to(out_desc.dtype)
                # out's elements lie on other threads' code bytes: all codes read before any is overwritten
                gl.thread_barrier()
            else:
                pre = c_buf.load(acc.type.layout).to(gl.float32)
                out = (acc * _gelu_grad(pre)).to(out_desc.dtype)
            # c_buf held pre; every thread overwrites exactly the elements it read (one layout), and
            # its last store left at the tile's start (store_wait before pre's load): no wait here
            c_buf.store(out)
            fence_async_shared()
            tma.async_copy_shared_to_global(out_desc, [row, off_n], c_buf)

    @gluon.jit
    def _column_sums_async(top, bottom):
        """fp32 column sums of the (2 HALF, BN) tile held in shared memory as two halves (as stored,
        rounded), on the tensor cores: ones (HALF, HALF) @ half, twice, issued asynchronously;
        every row of the product is the column sums (_store_column_sums stores row 0). Summing in
        registers goes across lanes and warps (run 55: +226 us on the kernel's 363), and a column
        per thread read from shared memory was not much cheaper (run 57: +115 us on 181)."""
        HALF: gl.constexpr = top.type.shape[0]
        BN: gl.constexpr = top.type.shape[1]
        mma_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                             instr_shape=[16, BN, 16])
        ones = gl.full([HALF, HALF], 1.0, top.dtype,
                       layout=gl.DotOperandLayout(operand_index=0, parent=mma_layout, k_width=2))
        sums = warpgroup_mma(ones, top, gl.zeros([HALF, BN], gl.float32, layout=mma_layout), is_async=True)
        return warpgroup_mma(ones, bottom, sums, is_async=True)

    @gluon.jit
    def _store_column_sums(sums, Partials, part_row, off_n, N):
        """Row 0 of _column_sums_async's product (once waited for) -> row part_row of Partials."""
        HALF: gl.constexpr = sums.shape[0]
        BN: gl.constexpr = sums.shape[1]
        rows = gl.arange(0, HALF, layout=gl.SliceLayout(1, sums.type.layout))
        offs_n = off_n + gl.arange(0, BN, layout=gl.SliceLayout(0, sums.type.layout))
        ptrs = Partials + part_row.to(gl.int64) * N + gl.expand_dims(offs_n, 0) + gl.expand_dims(rows, 1) * 0
        gl.store(ptrs, sums, mask=gl.expand_dims(rows == 0, 1) & gl.expand_dims(offs_n < N, 0))

    @gluon.jit
    def _mlp_consumer(a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty, pre_ready,
                      turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD: gl.constexpr, HAS_BIAS: gl.constexpr,
                      BIAS_GRAD: gl.constexpr, B_NK: gl.constexpr, COOPERATIVE: gl.constexpr, WHICH: gl.constexpr,
                      EXP_SHIFT: gl.constexpr = False, CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False):
        """One warpgroup (WHICH = 0 or 1), 128 rows x BN per tile as two 64-row accumulators.
        Ping-pong: the K loop and the epilogue of every other tile (the epilogue finishes one half,
        freeing its registers, before it starts the other). COOPERATIVE: rows 128 WHICH.. of every
        (256, BN) tile, the B slot shared with the other warpgroup."""
        BM: gl.constexpr = a_desc.block_type.shape[0]
        HALF: gl.constexpr = out_desc.block_type.shape[0]
        BN: gl.constexpr = out_desc.block_type.shape[1]
        BK: gl.constexpr = a_desc.block_type.shape[1]
        SHARED_TILE: gl.constexpr = COOPERATIVE
        FIRST: gl.constexpr = 0 if SHARED_TILE else WHICH       # this warpgroup's tiles: FIRST, FIRST + STEP, ..
        STEP: gl.constexpr = 1 if SHARED_TILE else 2
        ROW0: gl.constexpr = 2 * HALF * WHICH if SHARED_TILE else 0   # its rows of the A slot
        gl.static_assert(BM == (4 if SHARED_TILE else 2) * HALF)
        mma_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                             instr_shape=[16, BN, 16])
        num_pid_m = gl.cdiv(M, BM)
        num_pid_n = gl.cdiv(N, BN)
        k_tiles = gl.cdiv(K, BK)
        my_tiles = gl.cdiv(num_pid_m * num_pid_n - pid, nprog)
        for idx in range(FIRST, my_tiles, STEP):
            tile_id = pid + idx * nprog
            pid_m, pid_n = _tile_coords(tile_id, num_pid_m, num_pid_n, 8)
            off_m = pid_m * BM + ROW0
            off_n = pid_n * BN
            if EXP_SHIFT:   # Bias: the per-row shift
                shift0 = _load_shift(Bias, off_m, M, HALF, mma_layout)
                shift1 = _load_shift(Bias, off_m + HALF, M, HALF, mma_layout)
            if GELU_GRAD:   # pre's two half-tiles come into c_bufs while the K loop runs
                tma.store_wait(0)
                for h in gl.static_range(2):
                    pre_buf = c_bufs.index(2 * WHICH + h)
                    if GRAD_CODE:
                        pre_buf = _code_buffer(pre_buf, pre_desc)
                    mbarrier.expect(pre_ready.index(2 * WHICH + h), pre_desc.block_type.nbytes)
                    tma.async_copy_global_to_shared(pre_desc, [off_m + h * HALF, off_n],
                                                    pre_ready.index(2 * WHICH + h), pre_buf)
            acc_init = gl.zeros([HALF, BN], gl.float32, layout=mma_layout)
            if HAS_BIAS:
                # the accumulators start from the bias: an FADD an element less in the epilogue (whose
                # instructions cost this kernel time, run 178)
                acc_init = acc_init + _load_bias(Bias, off_n, N, BN, mma_layout)
            if not SHARED_TILE:
                # K loops strictly alternate between the two warpgroups (the other one's last finished
                # first): a slot's `ready` barrier then never runs more than one phase behind the
                # count this warpgroup waits for (parity waits tell only two phases apart). Cooperative
                # warpgroups need no turn: a slot is refilled only once both have handed it back
                # (`empty` counts two arrivals). Waited for once the tile's pre loads are issued and
                # its bias is in registers, so that neither delays its first wgmma (run 182: the
                # bias's load stalled the start of every K loop)
                mbarrier.wait(turn.index(WHICH), ((idx // 2) & 1) ^ (1 - WHICH))
            acc0, acc1 = _mlp_k_loop(a_bufs, b_bufs, ready, empty, turn, idx * k_tiles, k_tiles, acc_init,
                                     ROW0, HALF, B_NK, not SHARED_TILE, WHICH)
            # epilogue (ping-pong: the other warpgroup's K loop runs meanwhile)
            phase = (idx // STEP) & 1
            if EXP_SHIFT:   # Partials: the row sums
                _exp_shift_half(acc0, shift0, off_m, off_n, M, N, out_desc, c_bufs.index(2 * WHICH), Partials, CAP)
                _exp_shift_half(acc1, shift1, off_m + HALF, off_n, M, N, out_desc, c_bufs.index(2 * WHICH + 1),
                                Partials, CAP)
            else:
                _epilogue_half(acc0, 0, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, M, phase,
                               GELU_GRAD, WHICH, GRAD_CODE)
                _epilogue_half(acc1, 1, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, M, phase,
                               GELU_GRAD, WHICH, GRAD_CODE)
            if BIAS_GRAD:   # TMA zero-fills rows past M: out is 0 there. One partials row per 128 rows
                sums = _column_sums_async(c_bufs.index(2 * WHICH), c_bufs.index(2 * WHICH + 1))
                _store_column_sums(warpgroup_mma_wait(0, deps=(sums,)), Partials, off_m // (2 * HALF), off_n, N)
        tma.store_wait(0)

    @gluon.jit
    def _mlp_consumer1(a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty, pre_ready,
                       turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD: gl.constexpr, HAS_BIAS: gl.constexpr,
                       BIAS_GRAD: gl.constexpr, B_NK: gl.constexpr, COOPERATIVE: gl.constexpr, WHICH: gl.constexpr,
                       EXP_SHIFT: gl.constexpr, CAP: gl.constexpr, GRAD_CODE: gl.constexpr):
        """The second consumer partition (a partition is a function: this one runs WHICH = 1)."""
        _mlp_consumer(a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty, pre_ready,
                      turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD, HAS_BIAS, BIAS_GRAD, B_NK, COOPERATIVE, 1,
                      EXP_SHIFT, CAP, GRAD_CODE)

    @gluon.jit
    def _mlp_gluon_kernel(a_desc, b_desc, out_desc, aux_desc, pre_desc, Bias, Partials, M, N, K,
                          GELU_GRAD: gl.constexpr, HAS_BIAS: gl.constexpr, BIAS_GRAD: gl.constexpr,
                          B_NK: gl.constexpr, COOPERATIVE: gl.constexpr, NUM_STAGES: gl.constexpr,
                          CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr, EXP_SHIFT: gl.constexpr = False,
                          CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False):
        dtype: gl.constexpr = a_desc.dtype
        a_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES] + a_desc.block_type.shape, a_desc.layout)
        b_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES] + b_desc.block_type.shape, b_desc.layout)
        c_bufs = gl.allocate_shared_memory(out_desc.dtype, [4] + out_desc.block_type.shape, out_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        pre_ready = gl.allocate_shared_memory(gl.int64, [4, 1], mbarrier.MBarrierLayout())
        turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(NUM_STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=2 if COOPERATIVE else 1)
        for i in gl.static_range(4):
            mbarrier.init(pre_ready.index(i), count=1)
        for i in gl.static_range(2):
            mbarrier.init(turn.index(i), count=1)
        # read once here and passed to every partition
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        gl.warp_specialize([
            (_mlp_consumer, (a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty,
                             pre_ready, turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD, HAS_BIAS, BIAS_GRAD,
                             B_NK, COOPERATIVE, 0, EXP_SHIFT, CAP, GRAD_CODE)),
            (_mlp_consumer1, (a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty,
                              pre_ready, turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD, HAS_BIAS, BIAS_GRAD,
                              B_NK, COOPERATIVE, 1, EXP_SHIFT, CAP, GRAD_CODE)),
            (_mlp_producer, (a_desc, b_desc, out_desc, aux_desc, pre_desc, a_bufs, b_bufs, c_bufs, ready, empty,
                             pre_ready, turn, Bias, Partials, M, N, K, pid, nprog, GELU_GRAD, HAS_BIAS, BIAS_GRAD,
                             B_NK, COOPERATIVE)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


def _descriptor(t: torch.Tensor, block: list[int]):
    dtype = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16, torch.uint8: gl.uint8}[t.dtype]
    return TensorDescriptor.from_tensor(t, block, gl.NVMMASharedLayout.get_default_for(block, dtype))


def _operands_apply(a: torch.Tensor, *others: torch.Tensor) -> bool:
    """A Hopper GPU with Gluon, and 16-bit operands of one dtype that TMA can read (row-major,
    16-byte aligned), at least one row of a."""
    return (available(a.device) and a.is_cuda and a.dtype in (torch.bfloat16, torch.float16) and a.shape[0] > 0
            and all(t.dtype == a.dtype and tma_row_major(t) for t in (a, *others)))


def applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, codes: bool = False) -> bool:
    """Whether linear_gelu can run x (M, K) @ weight (N, K)^T + bias here; with codes, storing
    gelu'(pre)'s uint8 codes (GRAD_CODE), whose rows TMA addresses only in 16-byte strides."""
    return (_operands_apply(x, weight) and weight.shape[0] % (16 if codes else 8) == 0
            and (bias is None or (bias.dtype == x.dtype and bias.is_contiguous())))


def partial_rows(M: int, schedule: str | None = None) -> int:
    """Rows of the bias-gradient partials launch_matmul_gelu_grad writes: one per 128 rows of each
    (BLOCK_M, BLOCK_N) tile, tiles past M counting whole."""
    schedule = schedule or SCHEDULE
    block_m = BLOCK_M[schedule]
    return triton.cdiv(M, block_m) * block_m // 128


def _launch(a, b, b_nk, out, aux, gelu_grad, bias=None, pre=None, partials=None, schedule=None, stages=None,
            exp_shift=None, row_sums=None, cap=0.0):
    schedule = schedule or SCHEDULE     # read at the call: tests switch it
    # GRAD_CODE: the forward's aux or the backward's pre holds gelu'(pre) as uint8 codes
    grad_code = (pre if gelu_grad else aux).dtype == torch.uint8
    M, K = a.shape
    N = out.shape[1]
    block_m = BLOCK_M[schedule]
    b_block = [BLOCK_N, BLOCK_K] if b_nk else [BLOCK_K, BLOCK_N]
    tiles = triton.cdiv(M, block_m) * triton.cdiv(N, BLOCK_N)
    dummy = out   # stands in for pointers a flag switches off; never read or written
    # the kernel's Bias: the bias (HAS_BIAS) or the per-row shift (EXP_SHIFT); its Partials: the bias
    # gradient's partials (BIAS_GRAD) or the row sums (EXP_SHIFT)
    vector = next((t for t in (bias, exp_shift) if t is not None), dummy)
    sums = next((t for t in (partials, row_sums) if t is not None), dummy)
    _mlp_gluon_kernel[(min(tiles, sm_count(a.device, interpreter_programs=1)),)](
        _descriptor(a, [block_m, BLOCK_K]), _descriptor(b, b_block), _descriptor(out, [HALF, BLOCK_N]),
        _descriptor(aux, [HALF, BLOCK_N]), _descriptor(pre if pre is not None else aux, [HALF, BLOCK_N]),
        vector, sums, M, N, K,
        GELU_GRAD=gelu_grad, HAS_BIAS=bias is not None, BIAS_GRAD=partials is not None, B_NK=b_nk,
        COOPERATIVE=schedule == "cooperative", NUM_STAGES=stages or STAGES[schedule],
        CONSUMER_REGS=CONSUMER_REGS, PRODUCER_REGS=PRODUCER_REGS, EXP_SHIFT=exp_shift is not None, CAP=cap,
        GRAD_CODE=grad_code, num_warps=4, maxnreg=MAX_REGS)


def launch_linear_gelu(x, weight, bias, h, pre, schedule: str | None = None, stages: int | None = None) -> None:
    """h = gelu_tanh(x (M, K) @ weight (N, K)^T + bias), pre = x @ weight^T + bias, into the given
    (M, N) buffers (kernels/mlp.linear_gelu's kernel="gluon"; `applies` must hold). A uint8 pre
    receives gelu_tanh'(x @ weight^T + bias) as codes instead (GRAD_CODE, gelu_grad_encode)."""
    _launch(x, weight, True, h, pre, False, bias=bias, schedule=schedule, stages=stages)


def applies_gelu_grad(dy: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> bool:
    """Whether launch_matmul_gelu_grad can run dy (M, K) @ weight (K, N) * gelu'(pre (M, N)) here
    (pre of dy's dtype, or uint8 codes of gelu'(pre))."""
    if pre.dtype == torch.uint8:
        return _operands_apply(dy, weight) and tma_row_major(pre) and weight.shape[1] % 16 == 0
    return _operands_apply(dy, weight, pre) and weight.shape[1] % 8 == 0


def launch_matmul_gelu_grad(dy, weight, pre, dpre, partials=None, schedule: str | None = None,
                            stages: int | None = None) -> None:
    """dpre = (dy (M, K) @ weight (K, N)) * gelu_tanh'(pre) into dpre (M, N), and with partials
    ((partial_rows(M), N) fp32) the column sums of dpre per 128 rows (kernels/mlp.matmul_gelu_grad's
    kernel="gluon"; `applies_gelu_grad` must hold). A uint8 pre is gelu_tanh'(pre)'s codes (GRAD_CODE)."""
    _launch(dy, weight, False, dpre, dpre, True, pre=pre, partials=partials, schedule=schedule, stages=stages)


def launch_linear_exp(x, weight, shift, out, row_sums, cap: float, schedule: str | None = None,
                      stages: int | None = None) -> None:
    """out = exp(min(x (M, K) @ weight (N, K)^T - shift[:, None], cap)) into out (M, N), and its row
    sums (fp32, before out's rounding) over each BLOCK_N columns into row_sums ((M, cdiv(N,
    BLOCK_N)))."""
    _launch(x, weight, True, out, out, False, schedule=schedule, stages=stages, exp_shift=shift, row_sums=row_sums,
            cap=cap)
