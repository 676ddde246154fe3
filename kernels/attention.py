"""Causal flash attention (FlashAttention-2), forward and backward, in Triton.

What is fused, and why. Attention softmax(Q K^T * scale + causal mask) V is, unfused, three
kernels and a T x T score matrix per head written to memory and read back (twice more in the
backward). Here one forward kernel keeps a BLOCK_M x D tile of Q in registers and streams K and V
through shared memory in BLOCK_N-row tiles, keeping the running row maximum and row sum of an
online softmax, so the scores never leave the chip. It writes O and the per-row log-sum-exp
(LSE, in log2 units), which is all the backward needs to rebuild any tile of P exactly.

  forward    _attention_fwd_kernel: one program per (head, query block), each head's heaviest
             causal block first (see "order").
             Softmax in exp2 with the scale folded into log2(e) and into the one FMA per score
             that subtracts the row max; the key loop is split into the off-diagonal blocks (no
             mask, no bounds check) and the diagonal / ragged-end blocks (masked). EVEN_T (set per
             launch when T is a multiple of both tiles) drops every bounds check.
  backward   _attention_bwd_dq_kernel (first): one program per BLOCK_M queries holds Q, dO, dQ
             and walks the key blocks they see; before its loop it computes its rows'
             Delta = rowsum(dO * O) (fp32, the softmax backward's correction term) from the dO
             tile it holds anyway and one read of O, and writes it for the next kernel (a
             separate preprocess kernel read dO a second time and cost a launch per layer).
             _attention_bwd_dkdv_kernel (second): one program per BLOCK_N keys holds K, V, dK, dV
             and walks the query blocks that see them (recomputing P^T from Q, LSE and Delta).
             Two kernels, so no atomics and any T.
  dropout    (DROPOUT constexpr) P is masked inside the kernels with Philox random numbers
             drawn from (seed, b*h*T*T + row*T + col); the backward regenerates the same mask
             from the same seed instead of storing it. The seed is a one-element int64 tensor
             the kernels read from device memory (not a launch argument), so a CUDA graph that
             draws it inside the capture replays with a new one each time.
             _attention_dropout_mask_kernel writes the mask out, for tests only.

  order      (HEAD_MAJOR, _program_tile) each head's blocks are consecutive programs of a 1-D grid,
             so that the programs streaming one head's K and V (forward, dQ) or Q and dO (dK/dV)
             run together and find them in L2. The 2-D grid (B*H, blocks) of before started every
             head's first block before any head's second, so at GPT-2's step shape (B 32, H 12,
             T 512) all heads' K and V (50 MB, the L2's size) went through L2 between two blocks of
             one head (the reading; no profiler counted the bytes). Run 169 (H100, CUDA-graph
             replays, min of 3 rounds): forward 68.9 -> 63.4 us, backward 217.6 -> 194.2.
  packed     attention_qkvpacked_fwd / _bwd: the same kernels on the three strided views of one
             (B, T, 3, H, D) qkv; the backward writes dq, dk, dv into one (B, T, 3, H, D) buffer.
  bias grad  (BIAS_GRAD constexpr, no dropout) the gradient of a bias the projection added to
             qkv, from tiles the backward holds anyway: d(bq) = the column sums of dQ (the dQ
             kernel's tiles, as stored), d(bk) = 0 (softmax is shift-invariant per row, and the
             rows of dS sum to 0), d(bv) = the column sums of dO (P's rows sum to 1; also the dQ
             kernel's tiles). Each program writes its tile's sums as partials, summed on the tensor
             cores (ones @ tile), one slot per PARTIAL_ROWS rows (zeros in the other slots a bigger
             tile spans, so the layout does not follow the autotuner's pick), and
             kernels/common.sum_partials adds them up in a fixed order, in the bias's dtype: no
             pass over d(qkv) for the bias.

Limits. q, k, v of one shape (B, H, T, D), one dtype (float16, bfloat16, float32), D in
HEAD_DIMS; any T >= 1 (ragged ends are masked); any strides (passed to the kernels, so the
transposed views of a fused qkv projection need no copy; a stride of 1 is specialised by
Triton). float32 runs its dots in IEEE fp32 (slow, exact); the fast path is 16-bit. Offsets
inside one head are int32 (T * row stride < 2**31); head and batch offsets are int64.
Under TRITON_INTERPRET=1 each kernel gets one small tile so CPU tests are quick; on the GPU
each is autotuned over H100 configurations, keyed on the power of two above T (so a growing
T does not retune at every length), D, and the flags (FASTGPT_AUTOTUNE=0: one pinned tile).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode
from fastgpt.kernels.common import sum_partials, tuning_configs

HEAD_DIMS = (16, 32, 64, 128)
# Rows per slot of the bias gradient's partial sums: a divisor of the tiles that write them (dQ's
# BLOCK_M, 64 or 128; 64 in the interpreter).
PARTIAL_ROWS = 64
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634
_INTERPRET = interpreter_mode()
# the programs' order (_program_tile): each head's blocks together (True), or every head's first
# block before any head's second (False: the order before run 169, kept for measuring)
HEAD_MAJOR = True


def _config(block_m: int, block_n: int, warps: int, stages: int, maxnreg: int | None = None) -> triton.Config:
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages,
                         maxnreg=maxnreg)


def _configs(gpu: list[tuple[int, ...]], pinned: tuple[int, int, int, int],
             interpreter: tuple[int, int]) -> list[triton.Config]:
    return tuning_configs([_config(*c) for c in gpu], _config(*pinned), _config(*interpreter, 4, 1))


def tile_config(tile: tuple[int, ...]) -> dict:
    """A (BLOCK_M, BLOCK_N, num_warps, num_stages[, maxnreg]) tile as the launchers' `config`."""
    return dict(zip(("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "maxnreg"), tile))


# (BLOCK_M, BLOCK_N, num_warps, num_stages[, maxnreg]); at most 7 per kernel (autotuning time counts). Each
# was compiled offline for sm_90 with triton 3.6 (D = 64, bf16, causal): all use wgmma (HGMMA)
# and cp.async. Dropped for spilling: fwd (128, 128, 4 warps); dK/dV (32, 128, 4), the tutorial's
# tile (160 us against 118 for (16, 64, 4, 4) at GPT-2's step shape, run 72), (64, 128, 4),
# (128, 128, 8); dQ (128, 64, 4). Run 72 timed 135 tiles of the three kernels at that shape (B 32,
# T 512, H 12): the autotuner's picks were within 2.5% of the best.
# maxnreg caps the registers a thread where ptxas takes more than the tile needs, so that one more
# CTA fits an SM: dQ (128, 64, 8 warps) with the qkv bias partials takes 206 registers uncapped
# (127 without), one CTA an SM: 131.6 us against 101.2 capped at 128 (run 92); the forward's
# (128, 32, 4 warps) 164 -> 128 registers, three CTAs an SM -> four: 70.0 -> 67.7 us (7 spilled
# words). Capped and uncapped timed side by side at the step's shape: runs 91 and 92
# (benchmarks/results/runs/logs/run9[12]-attention_tiles.log).
FWD_TILES = [(128, 64, 8, 3), (128, 64, 8, 4), (128, 32, 4, 3, 128), (128, 64, 4, 3), (128, 32, 4, 3),
             (64, 64, 4, 3), (64, 64, 4, 4)]
FWD_CONFIGS = _configs(FWD_TILES, pinned=(128, 32, 4, 3), interpreter=(64, 32))
# dK/dV: BLOCK_N keys stay resident, BLOCK_M queries stream.
DKDV_TILES = [(32, 64, 4, 3), (32, 64, 4, 4), (64, 64, 4, 3), (64, 128, 8, 3), (64, 128, 8, 4), (16, 128, 4, 4),
              (16, 64, 4, 4)]
DKDV_CONFIGS = _configs(DKDV_TILES, pinned=(32, 64, 4, 3), interpreter=(32, 64))
# dQ: BLOCK_M queries stay resident, BLOCK_N keys stream (the tutorial's 128 / 32, w4, s5).
DQ_TILES = [(64, 32, 4, 3), (64, 32, 4, 4), (128, 32, 4, 4), (128, 32, 4, 5), (128, 64, 8, 3, 128),
            (128, 64, 8, 4, 128), (64, 64, 4, 3, 128)]
DQ_CONFIGS = _configs(DQ_TILES, pinned=(64, 32, 4, 3), interpreter=(64, 32))
_TUNE_KEY = ["T_BUCKET", "HEAD_DIM", "CAUSAL", "DROPOUT", "HEAD_MAJOR"]


def _even_t(args: dict) -> bool:
    """T a multiple of both tiles: no ragged tile anywhere, so no bounds checks (set per launch,
    after the autotuner picked BLOCK_M and BLOCK_N)."""
    return args["T"] % args["BLOCK_M"] == 0 and args["T"] % args["BLOCK_N"] == 0


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------

@triton.jit
def _dropout_seed(Seed, DROPOUT: tl.constexpr):
    """The dropout seed, read from device memory: a CUDA graph that captured the launch then
    replays it with the seed drawn inside the graph for that replay (a launch argument would be
    frozen at capture). 0 without dropout (Seed is not read)."""
    seed = 0
    if DROPOUT:
        seed = tl.load(Seed)
    return seed


@triton.jit
def _dropout_keep(seed, rng_base, rows, cols, T, dropout_p):
    """Keep-mask of (rows x cols) of one head: identical wherever the same element is drawn."""
    offsets = rng_base + rows.to(tl.int64) * T + cols
    return tl.rand(seed, offsets) >= dropout_p


@triton.jit
def _load_tile(Base, rows, stride_t, stride_d, T, HEAD_DIM: tl.constexpr, TRANSPOSE: tl.constexpr,
               MASK: tl.constexpr):
    """Rows `rows` of one head as a (rows, D) tile, or (D, rows) if TRANSPOSE; with MASK, rows >= T read 0."""
    offs_d = tl.arange(0, HEAD_DIM)
    if TRANSPOSE:
        ptrs = Base + rows[None, :] * stride_t + offs_d[:, None] * stride_d
        inside = rows[None, :] < T
    else:
        ptrs = Base + rows[:, None] * stride_t + offs_d[None, :] * stride_d
        inside = rows[:, None] < T
    if MASK:
        tile = tl.load(ptrs, mask=inside, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _store_tile(Base, rows, stride_t, stride_d, T, tile, HEAD_DIM: tl.constexpr, MASK: tl.constexpr = True):
    """Store a (rows, D) tile; with MASK, rows >= T are not written."""
    offs_d = tl.arange(0, HEAD_DIM)
    ptrs = Base + rows[:, None] * stride_t + offs_d[None, :] * stride_d
    if MASK:
        tl.store(ptrs, tile.to(Base.dtype.element_ty), mask=rows[:, None] < T)
    else:
        tl.store(ptrs, tile.to(Base.dtype.element_ty))


@triton.jit
def _load_row_stats(LSE, Delta, rows, T, MASK: tl.constexpr):
    """Per-query LSE and Delta (fp32); with MASK, rows >= T read 0."""
    if MASK:
        lse = tl.load(LSE + rows, mask=rows < T, other=0.0)
        delta = tl.load(Delta + rows, mask=rows < T, other=0.0)
    else:
        lse = tl.load(LSE + rows)
        delta = tl.load(Delta + rows)
    return lse, delta


@triton.jit
def _head(bh, H, Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh,
          stride_dob, stride_doh):
    """Four pointers moved to head bh = b * H + h (int64 offsets); pass strides 0 for unused ones."""
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    return (Q + b * stride_qb + h * stride_qh, K + b * stride_kb + h * stride_kh,
            V + b * stride_vb + h * stride_vh, DO + b * stride_dob + h * stride_doh)


@triton.jit
def _store_bias_grad_partials(Partials, tile, start, T, bh, H, which: tl.constexpr, HEAD_DIM: tl.constexpr,
                              BLOCK: tl.constexpr, PARTIAL_ROWS: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """The column sums of a (BLOCK, D) gradient tile of rows start.. (rows >= T left out; tile in the
    dtype the gradient is stored in) as the bias gradient's partials: Partials is (B, cdiv(T,
    PARTIAL_ROWS), 3, H, D) fp32, slot `which` (0 q, 1 k, 2 v) of head bh; the sums go to the tile's
    first PARTIAL_ROWS slot, zeros to the others it spans, so every slot is written whatever tile
    the autotuner picked. The sums run on the tensor cores, ones (16, BLOCK) @ tile with fp32
    accumulation (every row of the product the column sums; row 0 stored). A tl.sum over the rows
    went across lanes and warps: ~700 instructions a program more than without the partials (offline
    sm_90 compile), and the dQ kernel took 110 us at the step's shape with them, 93 without (run
    91); with the sums on the tensor cores 99.7 (run 92)."""
    tl.static_assert(BLOCK % PARTIAL_ROWS == 0)
    rows = start + tl.arange(0, BLOCK)
    ones = tl.full([16, BLOCK], 1.0, tile.dtype)
    sums = tl.dot(ones, tl.where(rows[:, None] < T, tile, 0.0).to(tile.dtype), input_precision=DOT_PRECISION)
    base, n_part = _partials_base(Partials, bh, H, T, which, HEAD_DIM, PARTIAL_ROWS)
    first = start // PARTIAL_ROWS
    offs = tl.arange(0, HEAD_DIM)
    lanes = tl.arange(0, 16)
    # (16, D) pointers, every row at the first slot; only row 0 is stored
    tl.store(base + first.to(tl.int64) * 3 * H * HEAD_DIM + lanes[:, None] * 0 + offs[None, :], sums,
             mask=(lanes[:, None] == 0) & (first + offs[None, :] * 0 < n_part))
    for i in tl.static_range(1, BLOCK // PARTIAL_ROWS):
        _store_zero_partials(base, first + i, n_part, H, HEAD_DIM)


@triton.jit
def _partials_base(Partials, bh, H, T, which: tl.constexpr, HEAD_DIM: tl.constexpr, PARTIAL_ROWS: tl.constexpr):
    """Head bh's first element in slot `which` of the partials, and how many partial rows there are."""
    n_part = tl.cdiv(T, PARTIAL_ROWS)
    return Partials + ((bh // H).to(tl.int64) * n_part * 3 + which) * H * HEAD_DIM + (bh % H) * HEAD_DIM, n_part


@triton.jit
def _store_zero_partials(Base, part, n_part, H, HEAD_DIM: tl.constexpr):
    """Zeros into partial row `part` at Base (_partials_base's; if the row exists)."""
    offs = tl.arange(0, HEAD_DIM)
    inside = part + tl.zeros_like(offs) < n_part      # a vector: the interpreter takes no scalar mask
    tl.store(Base + part.to(tl.int64) * 3 * H * HEAD_DIM + offs, tl.zeros([HEAD_DIM], tl.float32), mask=inside)


@triton.jit
def _program_tile(T, BLOCK: tl.constexpr, REVERSE: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    """This program's head bh and block (of BLOCK queries or keys). HEAD_MAJOR: a 1-D grid in which
    each head's blocks are consecutive programs, so the programs that stream the same head's tiles
    (every query block reads its head's K and V, every key block its Q and dO) run at the same time
    and find them in L2; else the 2-D grid (B*H, blocks), every head's first block before any
    head's second. REVERSE: the last block first (causal: the last query blocks see the most keys)."""
    if HEAD_MAJOR:
        n_blocks = tl.cdiv(T, BLOCK)
        bh = tl.program_id(0) // n_blocks
        block = tl.program_id(0) % n_blocks
    else:
        n_blocks = tl.num_programs(1)
        bh = tl.program_id(0)
        block = tl.program_id(1)
    if REVERSE:
        block = n_blocks - 1 - block
    return bh, block


@triton.jit
def _key_split(start_m, T, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Keys of a query block: [0, full_hi) need no mask, [full_hi, end) are the diagonal / ragged end."""
    if CAUSAL:      # keys below the block's first query are seen by every row of it
        full_hi = (start_m // BLOCK_N) * BLOCK_N
        end = tl.minimum(start_m + BLOCK_M, T)
    else:
        full_hi = (T // BLOCK_N) * BLOCK_N
        end = T
    return full_hi, end


@triton.jit
def _attention_fwd_inner(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                         rows, lo, hi, T, qk_scale, dropout_p, seed, rng_base,
                         HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                         DROPOUT: tl.constexpr, MASK: tl.constexpr, EVEN_T: tl.constexpr,
                         DOT_PRECISION: tl.constexpr):
    """Online softmax of the query tile against keys [lo, hi); MASK: ragged end / diagonal.

    Without MASK (every key block below the diagonal) there is no mask, bounds check or select:
    the scale is folded into the one FMA per score that subtracts the row max (so q need not
    be pre-scaled, which would round it once more). With EVEN_T (T a multiple of both tiles)
    the diagonal blocks drop the bounds checks and keep only the causal select.
    """
    BOUNDS: tl.constexpr = MASK and not EVEN_T
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(K, cols, stride_kt, stride_kd, T, HEAD_DIM, False, BOUNDS)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        if MASK:
            if CAUSAL:
                valid = rows[:, None] >= cols[None, :]
                if not EVEN_T:
                    valid = valid & (cols[None, :] < T)
            else:
                valid = cols[None, :] < T
            qk = tl.where(valid, qk, float("-inf"))      # -inf * scale - max stays -inf
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        qk = qk * qk_scale - m_new[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)        # the normaliser counts dropped entries too
        acc = acc * alpha[:, None]
        if DROPOUT:
            p = tl.where(_dropout_keep(seed, rng_base, rows[:, None], cols[None, :], T, dropout_p), p, 0.0)
        v = _load_tile(V, cols, stride_vt, stride_vd, T, HEAD_DIM, False, BOUNDS)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(configs=FWD_CONFIGS, key=_TUNE_KEY)
@triton.heuristics({"EVEN_T": _even_t})
@triton.jit
def _attention_fwd_kernel(Q, K, V, Out, LSE,
                          stride_qb, stride_qh, stride_qt, stride_qd,
                          stride_kb, stride_kh, stride_kt, stride_kd,
                          stride_vb, stride_vh, stride_vt, stride_vd,
                          stride_ob, stride_oh, stride_ot, stride_od,
                          H, T, T_BUCKET, qk_scale, dropout_p, Seed,
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, EVEN_T: tl.constexpr,
                          DOT_PRECISION: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    bh, block = _program_tile(T, BLOCK_M, CAUSAL, HEAD_MAJOR)
    seed = _dropout_seed(Seed, DROPOUT)
    Q, K, V, Out = _head(bh, H, Q, K, V, Out, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh,
                         stride_ob, stride_oh)
    LSE += bh.to(tl.int64) * T
    rng_base = bh.to(tl.int64) * T * T

    start_m = block * BLOCK_M
    rows = start_m + tl.arange(0, BLOCK_M)
    q = _load_tile(Q, rows, stride_qt, stride_qd, T, HEAD_DIM, False, not EVEN_T)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_hi, end = _key_split(start_m, T, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _attention_fwd_inner(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                                         rows, 0, full_hi, T, qk_scale, dropout_p, seed, rng_base,
                                         HEAD_DIM, BLOCK_N, CAUSAL, DROPOUT, False, EVEN_T, DOT_PRECISION)
    acc, l_i, m_i = _attention_fwd_inner(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                                         rows, full_hi, end, T, qk_scale, dropout_p, seed, rng_base,
                                         HEAD_DIM, BLOCK_N, CAUSAL, DROPOUT, True, EVEN_T, DOT_PRECISION)
    scale = 1.0 / l_i
    if DROPOUT:
        scale = scale / (1.0 - dropout_p)
    if EVEN_T:
        tl.store(LSE + rows, m_i + tl.math.log2(l_i))
    else:
        tl.store(LSE + rows, m_i + tl.math.log2(l_i), mask=rows < T)
    _store_tile(Out, rows, stride_ot, stride_od, T, acc * scale[:, None], HEAD_DIM, not EVEN_T)


@triton.jit
def _attention_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot, stride_dod,
                              cols, lo, hi, T, qk_scale, dropout_p, seed, rng_base,
                              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr,
                              DROPOUT: tl.constexpr, MASK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """dK, dV of the resident key tile from the query blocks [lo, hi), in the transposed frame."""
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        rows = start_m + tl.arange(0, BLOCK_M)
        qT = _load_tile(Q, rows, stride_qt, stride_qd, T, HEAD_DIM, True, MASK)
        lse, delta = _load_row_stats(LSE, Delta, rows, T, MASK)
        pT = tl.math.exp2(tl.dot(k, qT, input_precision=DOT_PRECISION) * qk_scale - lse[None, :])
        if MASK:
            valid = rows[None, :] < T
            if CAUSAL:
                valid = valid & (rows[None, :] >= cols[:, None])
            pT = tl.where(valid, pT, 0.0)
        do = _load_tile(DO, rows, stride_dot, stride_dod, T, HEAD_DIM, False, MASK)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        if DROPOUT:
            keep = _dropout_keep(seed, rng_base, rows[None, :], cols[:, None], T, dropout_p)
            inv_keep = 1.0 / (1.0 - dropout_p)
            dv += tl.dot(tl.where(keep, pT * inv_keep, 0.0).to(do.dtype), do, input_precision=DOT_PRECISION)
            dpT = tl.where(keep, dpT * inv_keep, 0.0)
        else:
            dv += tl.dot(pT.to(do.dtype), do, input_precision=DOT_PRECISION)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT), input_precision=DOT_PRECISION)
    return dk, dv


@triton.autotune(configs=DKDV_CONFIGS, key=_TUNE_KEY)
@triton.jit
def _attention_bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, Delta,
                               stride_qb, stride_qh, stride_qt, stride_qd,
                               stride_kb, stride_kh, stride_kt, stride_kd,
                               stride_vb, stride_vh, stride_vt, stride_vd,
                               stride_dob, stride_doh, stride_dot, stride_dod,
                               stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                               stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                               H, T, T_BUCKET, qk_scale, sm_scale, dropout_p, Seed,
                               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                               CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, DOT_PRECISION: tl.constexpr,
                               HEAD_MAJOR: tl.constexpr):
    bh, block = _program_tile(T, BLOCK_N, False, HEAD_MAJOR)    # causal: block 0 is the heaviest, and runs first
    seed = _dropout_seed(Seed, DROPOUT)
    start_n = block * BLOCK_N
    Q, K, V, DO = _head(bh, H, Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh,
                        stride_dob, stride_doh)
    DK, DV, _, _ = _head(bh, H, DK, DV, DK, DV, stride_dkb, stride_dkh, stride_dvb, stride_dvh, 0, 0, 0, 0)
    LSE += bh.to(tl.int64) * T
    Delta += bh.to(tl.int64) * T
    rng_base = bh.to(tl.int64) * T * T

    cols = start_n + tl.arange(0, BLOCK_N)
    k = _load_tile(K, cols, stride_kt, stride_kd, T, HEAD_DIM, False, True)
    v = _load_tile(V, cols, stride_vt, stride_vd, T, HEAD_DIM, False, True)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # query blocks: [lo, full_lo) diagonal (masked), [full_lo, full_hi) unmasked, [full_hi, T) ragged end
    full_hi = (T // BLOCK_M) * BLOCK_M
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M
        full_lo = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, full_hi)
    else:
        lo = 0
        full_lo = 0
    dk, dv = _attention_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot,
                                       stride_dod, cols, lo, full_lo, T, qk_scale, dropout_p, seed, rng_base,
                                       HEAD_DIM, BLOCK_M, CAUSAL, DROPOUT, True, DOT_PRECISION)
    dk, dv = _attention_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot,
                                       stride_dod, cols, full_lo, full_hi, T, qk_scale, dropout_p, seed,
                                       rng_base, HEAD_DIM, BLOCK_M, CAUSAL, DROPOUT, False, DOT_PRECISION)
    dk, dv = _attention_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot,
                                       stride_dod, cols, full_hi, T, T, qk_scale, dropout_p, seed, rng_base,
                                       HEAD_DIM, BLOCK_M, CAUSAL, DROPOUT, True, DOT_PRECISION)
    _store_tile(DK, cols, stride_dkt, stride_dkd, T, dk * sm_scale, HEAD_DIM)
    _store_tile(DV, cols, stride_dvt, stride_dvd, T, dv, HEAD_DIM)


@triton.jit
def _attention_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                            rows, lo, hi, T, qk_scale, dropout_p, seed, rng_base,
                            HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                            DROPOUT: tl.constexpr, MASK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """dQ of the resident query tile from the key blocks [lo, hi)."""
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + tl.arange(0, BLOCK_N)
        kT = _load_tile(K, cols, stride_kt, stride_kd, T, HEAD_DIM, True, MASK)
        vT = _load_tile(V, cols, stride_vt, stride_vd, T, HEAD_DIM, True, MASK)
        p = tl.math.exp2(tl.dot(q, kT, input_precision=DOT_PRECISION) * qk_scale - lse[:, None])
        if MASK:
            valid = cols[None, :] < T
            if CAUSAL:
                valid = valid & (rows[:, None] >= cols[None, :])
            p = tl.where(valid, p, 0.0)
        dp = tl.dot(do, vT, input_precision=DOT_PRECISION)
        if DROPOUT:
            keep = _dropout_keep(seed, rng_base, rows[:, None], cols[None, :], T, dropout_p)
            dp = tl.where(keep, dp * (1.0 / (1.0 - dropout_p)), 0.0)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(kT.dtype), tl.trans(kT), input_precision=DOT_PRECISION)
    return dq


@triton.autotune(configs=DQ_CONFIGS, key=_TUNE_KEY + ["BIAS_GRAD"])
@triton.jit
def _attention_bwd_dq_kernel(Q, K, V, DO, Out, DQ, LSE, Delta, BiasPartials,
                             stride_qb, stride_qh, stride_qt, stride_qd,
                             stride_kb, stride_kh, stride_kt, stride_kd,
                             stride_vb, stride_vh, stride_vt, stride_vd,
                             stride_dob, stride_doh, stride_dot, stride_dod,
                             stride_ob, stride_oh, stride_ot, stride_od,
                             stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                             H, T, T_BUCKET, qk_scale, sm_scale, dropout_p, Seed,
                             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, DOT_PRECISION: tl.constexpr,
                             BIAS_GRAD: tl.constexpr, PARTIAL_ROWS: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    tl.static_assert(not (BIAS_GRAD and DROPOUT))
    bh, block = _program_tile(T, BLOCK_M, CAUSAL, HEAD_MAJOR)
    seed = _dropout_seed(Seed, DROPOUT)
    Q, K, V, DO = _head(bh, H, Q, K, V, DO, stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh,
                        stride_dob, stride_doh)
    DQ, Out, _, _ = _head(bh, H, DQ, Out, DQ, DQ, stride_dqb, stride_dqh, stride_ob, stride_oh, 0, 0, 0, 0)
    LSE += bh.to(tl.int64) * T
    Delta += bh.to(tl.int64) * T
    rng_base = bh.to(tl.int64) * T * T

    start_m = block * BLOCK_M
    rows = start_m + tl.arange(0, BLOCK_M)
    q = _load_tile(Q, rows, stride_qt, stride_qd, T, HEAD_DIM, False, True)
    do = _load_tile(DO, rows, stride_dot, stride_dod, T, HEAD_DIM, False, True)
    lse = tl.load(LSE + rows, mask=rows < T, other=0.0)
    # Delta of these rows, for this kernel and the dK/dV kernel after it (rows >= T load zeros)
    o = _load_tile(Out, rows, stride_ot, stride_od, T, HEAD_DIM, False, True)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(Delta + rows, delta, mask=rows < T)
    if BIAS_GRAD:   # d(bk) = 0 and d(bv) = dO's column sums (the header says why)
        k_slots, n_part = _partials_base(BiasPartials, bh, H, T, 1, HEAD_DIM, PARTIAL_ROWS)
        for i in tl.static_range(BLOCK_M // PARTIAL_ROWS):
            _store_zero_partials(k_slots, start_m // PARTIAL_ROWS + i, n_part, H, HEAD_DIM)
        _store_bias_grad_partials(BiasPartials, do, start_m, T, bh, H, 2, HEAD_DIM, BLOCK_M, PARTIAL_ROWS,
                                  DOT_PRECISION)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_hi, end = _key_split(start_m, T, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _attention_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                                 rows, 0, full_hi, T, qk_scale, dropout_p, seed, rng_base,
                                 HEAD_DIM, BLOCK_N, CAUSAL, DROPOUT, False, DOT_PRECISION)
    dq = _attention_bwd_dq_inner(dq, q, do, lse, delta, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                                 rows, full_hi, end, T, qk_scale, dropout_p, seed, rng_base,
                                 HEAD_DIM, BLOCK_N, CAUSAL, DROPOUT, True, DOT_PRECISION)
    dq = (dq * sm_scale).to(DQ.dtype.element_ty)
    _store_tile(DQ, rows, stride_dqt, stride_dqd, T, dq, HEAD_DIM)
    if BIAS_GRAD:   # d(bq) = dQ's column sums, of dQ as stored (as PyTorch sums the rounded d(qkv))
        _store_bias_grad_partials(BiasPartials, dq, start_m, T, bh, H, 0, HEAD_DIM, BLOCK_M, PARTIAL_ROWS,
                                  DOT_PRECISION)


@triton.jit
def _attention_dropout_mask_kernel(Keep, T, dropout_p, Seed, BLOCK: tl.constexpr):
    """Keep[bh, i, j] as the attention kernels draw it (uint8; for tests)."""
    bh = tl.program_id(0)
    seed = _dropout_seed(Seed, True)
    rows = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    cols = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    keep = _dropout_keep(seed, bh.to(tl.int64) * T * T, rows[:, None], cols[None, :], T, dropout_p)
    inside = (rows[:, None] < T) & (cols[None, :] < T)
    tl.store(Keep + bh.to(tl.int64) * T * T + rows[:, None] * T + cols[None, :], keep.to(tl.uint8), mask=inside)


# ---------------------------------------------------------------------------------------------
# launchers: plain tensor-in / tensor-out
# ---------------------------------------------------------------------------------------------

def empty_bthd(batch: int, heads: int, T: int, head_dim: int, like: torch.Tensor) -> torch.Tensor:
    """A (B, H, T, D) tensor laid out as (B, T, H, D), as SDPA's flash backend returns it:
    then `y.transpose(1, 2).reshape(B, T, H * D)` in the attention module is a free view."""
    return like.new_empty(batch, T, heads, head_dim).transpose(1, 2)


def _strides(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.stride())


def _dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"     # tf32 is ignored by 16-bit dots


def _launch(kernel, grid, config: dict | None, *args, **meta):
    """Run an autotuned kernel, or with one explicit config (tile_config: BLOCK_M, BLOCK_N, num_warps,
    num_stages[, maxnreg])."""
    if config is None:
        kernel[grid](*args, **meta)
    else:
        kernel.fn[grid](*args, **meta, **config)


def _common_meta(q: torch.Tensor, causal: bool, dropout_p: float) -> dict:
    return dict(HEAD_DIM=q.shape[-1], CAUSAL=bool(causal), DROPOUT=dropout_p > 0.0,
                DOT_PRECISION=_dot_precision(q.dtype), HEAD_MAJOR=HEAD_MAJOR)


def _grid(batch_heads: int, T: int, block: str):
    """The launch grid of one program per (head, block of `block` rows): see _program_tile."""
    if HEAD_MAJOR:
        return lambda meta: (batch_heads * triton.cdiv(T, meta[block]),)
    return lambda meta: (batch_heads, triton.cdiv(T, meta[block]))


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, softmax_scale: float,
                  dropout_p: float = 0.0, seed: torch.Tensor | None = None, out: torch.Tensor | None = None,
                  config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """O = softmax(q k^T * softmax_scale [+ causal mask]) v, with dropout on P; returns (O, LSE).

    q, k, v: (B, H, T, D), any strides. O: (B, H, T, D) of q's dtype, in (B, T, H, D) memory
    unless `out` is given. LSE: (B, H, T) float32, log2 of each row's softmax normaliser of the
    log2e-scaled scores (what the backward reads).
    """
    B, H, T, D = q.shape
    if out is None:
        out = empty_bthd(B, H, T, D, q)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    _launch(_attention_fwd_kernel, _grid(B * H, T, "BLOCK_M"), config, q, k, v, out, lse,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            H, T, triton.next_power_of_2(T), softmax_scale * LOG2E, dropout_p, _seed_pointer(seed, dropout_p, q),
            **_common_meta(q, causal, dropout_p))
    return out, lse


def bias_grad_partials(q: torch.Tensor) -> torch.Tensor:
    """The buffer the backward writes a qkv bias gradient's partial sums into (every element
    written, no zero fill): (B, cdiv(T, PARTIAL_ROWS), 3, H, D) fp32; the gradient is its sum over
    the first two dims (sum_partials on its (B * cdiv(T, PARTIAL_ROWS), 3 * H * D) view)."""
    B, H, T, D = q.shape
    return torch.empty(B, triton.cdiv(T, PARTIAL_ROWS), 3, H, D, device=q.device, dtype=torch.float32)


def _seed_pointer(seed: torch.Tensor | None, dropout_p: float, like: torch.Tensor) -> torch.Tensor:
    """The kernels' Seed argument: with dropout the seed itself, a one-element int64 tensor on the
    inputs' device (the kernels read it there, so a CUDA graph replays each step with the seed drawn
    in it); without, `like` (never read)."""
    if dropout_p <= 0.0:
        return like
    if not (isinstance(seed, torch.Tensor) and seed.numel() == 1 and seed.dtype == torch.int64
            and seed.device == like.device):
        raise ValueError("attention with dropout needs its seed as a one-element int64 tensor on the "
                         f"inputs' device ({like.device}), got {seed!r}")
    return seed


def _bwd_scalars(q, softmax_scale, dropout_p, seed):
    H, T = q.shape[1], q.shape[2]
    return (H, T, triton.next_power_of_2(T), softmax_scale * LOG2E, softmax_scale, dropout_p,
            _seed_pointer(seed, dropout_p, q))


def attention_bwd_dkdv(dout, q, k, v, lse, delta, causal: bool, softmax_scale: float, dropout_p: float = 0.0,
                       seed: torch.Tensor | None = None, dk: torch.Tensor | None = None, dv: torch.Tensor | None = None,
                       config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """dK and dV (B, H, T, D): one program per key block walks the queries that see it."""
    B, H, T, D = q.shape
    dk = empty_bthd(B, H, T, D, q) if dk is None else dk
    dv = empty_bthd(B, H, T, D, q) if dv is None else dv
    _launch(_attention_bwd_dkdv_kernel, _grid(B * H, T, "BLOCK_N"), config,
            q, k, v, dout, dk, dv, lse, delta,
            *_strides(q), *_strides(k), *_strides(v), *_strides(dout), *_strides(dk), *_strides(dv),
            *_bwd_scalars(q, softmax_scale, dropout_p, seed), **_common_meta(q, causal, dropout_p))
    return dk, dv


def attention_bwd_dq(dout, q, k, v, out, lse, causal: bool, softmax_scale: float, dropout_p: float = 0.0,
                     seed: torch.Tensor | None = None, dq: torch.Tensor | None = None, config: dict | None = None,
                     partials: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dQ (B, H, T, D), Delta = rowsum(dout * out) as (B, H, T) fp32, for attention_bwd_dkdv): one
    program per query block walks the keys it sees; with `partials` (bias_grad_partials; no
    dropout) all their slots written: q with dQ's column sums, k zeros, v dout's column sums."""
    B, H, T, D = q.shape
    dq = empty_bthd(B, H, T, D, q) if dq is None else dq
    delta = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    _launch(_attention_bwd_dq_kernel, _grid(B * H, T, "BLOCK_M"), config,
            q, k, v, dout, out, dq, lse, delta, q if partials is None else partials,
            *_strides(q), *_strides(k), *_strides(v), *_strides(dout), *_strides(out), *_strides(dq),
            *_bwd_scalars(q, softmax_scale, dropout_p, seed), **_common_meta(q, causal, dropout_p),
            BIAS_GRAD=partials is not None, PARTIAL_ROWS=PARTIAL_ROWS)
    return dq, delta


def attention_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                  lse: torch.Tensor, causal: bool, softmax_scale: float, dropout_p: float = 0.0,
                  seed: torch.Tensor | None = None,
                  grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                  dkdv_config: dict | None = None, dq_config: dict | None = None,
                  partials: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of attention_fwd's O for the upstream gradient dout; all (B, H, T, D), any
    strides; written into `grads` = (dq, dk, dv) when given. With `partials` (bias_grad_partials;
    no dropout): the partial sums of the gradient of a bias added to q, k, v, written as well."""
    if partials is not None and dropout_p > 0.0:
        raise ValueError("attention_bwd: the bias gradient from the kernels' tiles needs dropout_p = 0")
    dq, dk, dv = grads if grads is not None else (None, None, None)
    dq, delta = attention_bwd_dq(dout, q, k, v, out, lse, causal, softmax_scale, dropout_p, seed,
                                 dq=dq, config=dq_config, partials=partials)
    dk, dv = attention_bwd_dkdv(dout, q, k, v, lse, delta, causal, softmax_scale, dropout_p, seed,
                                dk=dk, dv=dv, config=dkdv_config)
    return dq, dk, dv


def qkv_views(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v as (B, H, T, D) strided views of a packed (B, T, 3, H, D) tensor (no copy)."""
    return tuple(qkv.permute(2, 0, 3, 1, 4))


def attention_qkvpacked_fwd(qkv: torch.Tensor, causal: bool, softmax_scale: float, dropout_p: float = 0.0,
                            seed: torch.Tensor | None = None, config: dict | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """attention_fwd on a packed qkv (B, T, 3, H, D) (a fused projection's output, viewed);
    returns O as a contiguous (B, T, H, D) tensor (so O.view(B, T, H * D) is free) and LSE."""
    B, T, _, H, D = qkv.shape
    q, k, v = qkv_views(qkv)
    out = qkv.new_empty(B, T, H, D)
    _, lse = attention_fwd(q, k, v, causal, softmax_scale, dropout_p, seed, out=out.transpose(1, 2), config=config)
    return out, lse


def attention_qkvpacked_bwd(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                            causal: bool, softmax_scale: float, dropout_p: float = 0.0,
                            seed: torch.Tensor | None = None, dqkv: torch.Tensor | None = None,
                            bias_grad_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gradient of attention_qkvpacked_fwd's O (dout, out: (B, T, H, D), any strides) as one
    (B, T, 3, H, D) tensor (the dK/dV and dQ kernels write their slices of it in place, so no
    stacking copy of dq, dk, dv follows), and with bias_grad_dtype (no dropout) the gradient of a
    bias that was added to qkv, (3, H, D) in that dtype, from the kernels' tiles: d(qkv) summed
    over B and T without a pass over it; else None."""
    dqkv = qkv.new_empty(qkv.shape) if dqkv is None else dqkv
    q, k, v = qkv_views(qkv)
    partials = None if bias_grad_dtype is None else bias_grad_partials(q)
    attention_bwd(dout.transpose(1, 2), q, k, v, out.transpose(1, 2), lse, causal, softmax_scale,
                  dropout_p, seed, grads=qkv_views(dqkv), partials=partials)
    if partials is None:
        return dqkv, None
    B, parts, _, H, D = partials.shape
    dbias = torch.empty(3, H, D, device=qkv.device, dtype=bias_grad_dtype)
    sum_partials(partials.view(B * parts, 3 * H * D), dbias.view(3 * H * D))
    return dqkv, dbias


def dropout_keep_mask(seed: torch.Tensor, batch: int, heads: int, T: int, dropout_p: float) -> torch.Tensor:
    """The (B, H, T, T) bool keep-mask the kernels apply for this seed (a one-element int64 tensor;
    the mask on its device; a T x T tensor: tests only)."""
    keep = torch.empty(batch, heads, T, T, device=seed.device, dtype=torch.uint8)
    block = 64
    grid = (batch * heads, triton.cdiv(T, block), triton.cdiv(T, block))
    _attention_dropout_mask_kernel[grid](keep, T, dropout_p, _seed_pointer(seed, dropout_p, keep), BLOCK=block)
    return keep.bool()
