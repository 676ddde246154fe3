# Record of runs 167-168 (session 22): this file was kernels/attention_gluon.py then, not kept.
# Correct (float64 reference, bf16 / fp16, T 128-2048, causal and not: run167b/c logs); at GPT-2's
# step shape 70.9-71.4 us a layer (ping-pong, 3-4 slots) against the Triton kernel's 68.2 and
# cuDNN's 54.8 (run167c); without ping-pong 75.4 (run167b). Run 168: an FMA in place of every
# exponential 69.2-70.0, no P V wgmma 66.0-67.7, neither 66.3-67.2: the skeleton alone is slower
# than cuDNN. Run 171: its tiles head-major 80.4 (slower).
"""Causal flash attention's forward as a warp-specialised Gluon kernel for Hopper (sm_90), FA3-style.

What is fused, and why. kernels/attention.py's Triton forward (FlashAttention-2: one program's
warps load K and V by cp.async, run both matmuls and the online softmax in turn) takes 68 us a
layer at GPT-2's step shape where cuDNN's takes 55 (runs 160-161); TMA loads alone gained 5% and
Triton 3.6 does not warp-specialise the loop (run 161). This kernel is built the way
FlashAttention-3 builds its Hopper forward, in Gluon (Triton's explicit-layout dialect):

  producer   one warp: each tile's Q (BLOCK_M x D, double-buffered across tiles) and every K and V
             tile (BLOCK_N x D) by TMA into a ring of STAGES slots, K and V with barriers of their
             own so that Q K^T starts before V has landed;
  consumers  two warpgroups, rows 0-63 and 64-127 of each query tile, sharing its K and V slots.
             Per key block: S = Q K^T on wgmma (Q and K from shared memory), the online softmax in
             registers (exp2, the scale folded into one FMA), O += P V on wgmma with P taken from
             registers (no trip through shared memory). Q K^T of the next key block is issued
             before this block's softmax and P V after it, so the tensor cores run while the
             softmax does (FA3's intra-warpgroup overlap); the two warpgroups interleave on an SM.
  persistent one program an SM walks the (query block, head) tiles heaviest first (causal: the
             last query blocks see the most keys), so the next tile's Q loads while this one runs.

It reads q, k, v where a fused projection left them, the (B*T, 3*H*D) rows of a packed
(B, T, 3, H, D) qkv, writes O as (B*T, H*D) rows (TMA stores) and LSE as kernels/attention.py's
forward does (log2 units, (B*H, T) fp32), so that file's backward kernels read them unchanged.

Limits: Hopper only (wgmma, TMA, setmaxnreg), triton >= 3.6 with Gluon; bf16 / fp16; D = 64;
T a multiple of BLOCK_M (every tile inside one sequence: no ragged end, no mask but the causal
diagonal); no dropout. Everything else runs kernels/attention.py's forward (`applies` says which).
"""
from __future__ import annotations

import torch

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

HEAD_DIMS = (64,)
BLOCK_M = 128          # query rows a tile: 64 a consumer warpgroup (wgmma's M)
ROWS = 64
BLOCK_N = 128          # keys a block
# K / V slots: at least 3, since a consumer holds three blocks at once (P V of the last still
# reading its V, this one's softmax, Q K^T of the next; with 2 the ring deadlocks at 3 blocks a tile)
STAGES = 3
# registers a thread: the consumer warpgroups', the producer warp's, and the launch's maxnreg
# (12 warps, the producer's padded to a warpgroup: 12 x 32 x 168 <= 64K), as kernels/mlp_gluon.py
CONSUMER_REGS, PRODUCER_REGS, MAX_REGS = 232, 40, 168
LOG2E = 1.4426950408889634


def available(device: torch.device | None = None) -> bool:
    """Gluon present and a Hopper GPU (sm_90) to run on."""
    return HAVE_GLUON and hopper_gpu(device)


if HAVE_GLUON:
    @gluon.jit
    def _tile(tile_id, num_bh, num_m, CAUSAL: gl.constexpr):
        """(query block, head) of a tile id: every head's last query block first (causal: the
        heaviest), then the block before it."""
        block = tile_id // num_bh
        if CAUSAL:
            block = num_m - 1 - block
        return block, tile_id % num_bh

    @gluon.jit
    def _key_blocks(start_m, T, CAUSAL: gl.constexpr, BN: gl.constexpr, ROWS_END: gl.constexpr):
        """Key blocks that rows start_m .. start_m + ROWS_END - 1 see."""
        if CAUSAL:
            n = gl.cdiv(start_m + ROWS_END, BN)
        else:
            n = T // BN
        return n

    @gluon.jit
    def _attention_fwd_producer(q_desc, kv_desc, o_desc, q_bufs, k_bufs, v_bufs, o_bufs, q_ready, q_empty,
                                k_ready, v_ready, kv_empty, turn, LSE, T, H, BH, qk_scale, pid, nprog,
                                CAUSAL: gl.constexpr):
        """One warp: each tile's Q into its buffer, then its K and V blocks into the slot ring."""
        BM: gl.constexpr = q_desc.block_type.shape[0]
        BN: gl.constexpr = kv_desc.block_type.shape[0]
        D: gl.constexpr = q_desc.block_type.shape[1]
        NUM_STAGES: gl.constexpr = k_bufs.type.shape[0]
        num_m = T // BM
        num_bh = BH
        count = 0
        idx = 0
        for tile_id in range(pid, num_m * num_bh, nprog):
            block, bh = _tile(tile_id, num_bh, num_m, CAUSAL)
            start_m = block * BM
            row0 = (bh // H) * T
            h = bh % H
            qb = idx % 2
            # a fresh barrier counts as having completed phase 1: the first lap does not wait
            mbarrier.wait(q_empty.index(qb), ((idx // 2) & 1) ^ 1)
            mbarrier.expect(q_ready.index(qb), q_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [row0 + start_m, h * D], q_ready.index(qb), q_bufs.index(qb))
            for j in range(_key_blocks(start_m, T, CAUSAL, BN, BM)):
                s = count % NUM_STAGES
                mbarrier.wait(kv_empty.index(s), ((count // NUM_STAGES) & 1) ^ 1)
                mbarrier.expect(k_ready.index(s), kv_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(kv_desc, [row0 + j * BN, (H + h) * D], k_ready.index(s),
                                                k_bufs.index(s))
                mbarrier.expect(v_ready.index(s), kv_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(kv_desc, [row0 + j * BN, (2 * H + h) * D], v_ready.index(s),
                                                v_bufs.index(s))
                count += 1
            idx += 1

    @gluon.jit
    def _softmax_block(S, m_i, l_i, qk_scale, rows, cols, dtype: gl.constexpr, p_layout: gl.constexpr,
                       MASK: gl.constexpr):
        """The online softmax's step for one block of scores S (ROWS, BN) fp32: returns P (unnormalised,
        in `dtype`, as P V's register operand), the new row maxima and sums, and the factor the
        running O is rescaled by."""
        if MASK:       # the causal diagonal: keys after the row's query
            S = gl.where(gl.expand_dims(cols, 0) <= gl.expand_dims(rows, 1), S, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(S, axis=1) * qk_scale)
        p = gl.exp2(S * qk_scale - gl.expand_dims(m_new, 1))
        alpha = gl.exp2(m_i - m_new)
        l_i = l_i * alpha + gl.sum(p, axis=1)
        return gl.convert_layout(p.to(dtype), p_layout), m_new, l_i, alpha

    @gluon.jit
    def _take_turn(turn, k, WHICH: gl.constexpr):
        """Wait until this warpgroup may issue its k-th round of wgmmas: the other one has issued its
        (k-1)-th (warpgroup 0) or its k-th (warpgroup 1). The first round of warpgroup 0 waits on a
        fresh barrier's parity 1, which counts as completed."""
        mbarrier.wait(turn.index(WHICH), (k - 1 + WHICH) & 1)

    @gluon.jit
    def _pass_turn(turn, WHICH: gl.constexpr):
        mbarrier.arrive(turn.index(1 - WHICH))

    @gluon.jit
    def _attention_fwd_block(acc, p, m_i, l_i, q, k_bufs, v_bufs, k_ready, v_ready, kv_empty, turn, cur, k,
                             qk_scale, rows, cols, zeros_s, p_layout: gl.constexpr, WHICH: gl.constexpr,
                             MASK: gl.constexpr):
        """One step of the loop, FA3's order: in this warpgroup's turn, S = Q K^T of key block cur + 1
        and O += P V of block cur (P from the step before); the turn passes to the other warpgroup
        (whose softmax ran during these wgmmas) while this one's softmax runs on the new S."""
        NUM_STAGES: gl.constexpr = k_bufs.type.shape[0]
        dtype: gl.constexpr = k_bufs.dtype
        s = cur % NUM_STAGES
        nxt = (cur + 1) % NUM_STAGES
        _take_turn(turn, k, WHICH)
        mbarrier.wait(k_ready.index(nxt), ((cur + 1) // NUM_STAGES) & 1)
        S = warpgroup_mma(q, k_bufs.index(nxt).permute((1, 0)), zeros_s, use_acc=False, is_async=True)
        mbarrier.wait(v_ready.index(s), (cur // NUM_STAGES) & 1)
        acc = warpgroup_mma(p, v_bufs.index(s), acc, is_async=True)
        _pass_turn(turn, WHICH)
        S, acc = warpgroup_mma_wait(1, deps=(S, acc))                # S is in; P V may still run
        p_next, m_i, l_i, alpha = _softmax_block(S, m_i, l_i, qk_scale, rows, cols, dtype, p_layout, MASK)
        acc = warpgroup_mma_wait(0, deps=(acc,))
        mbarrier.arrive(kv_empty.index(s))                            # block cur's K and V are read
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, acc.type.layout)), 1)
        return acc, p_next, m_i, l_i

    @gluon.jit
    def _attention_fwd_consumer(q_desc, kv_desc, o_desc, q_bufs, k_bufs, v_bufs, o_bufs, q_ready, q_empty,
                                k_ready, v_ready, kv_empty, turn, LSE, T, H, BH, qk_scale, pid, nprog,
                                CAUSAL: gl.constexpr, WHICH: gl.constexpr = 0):
        """One warpgroup: rows 64 WHICH .. 64 WHICH + 63 of every tile of the program. Both
        warpgroups walk the same key blocks (BLOCK_N = BLOCK_M: for warpgroup 0 the diagonal
        block's upper half is all masked) and take turns at the tensor cores (`turn`), as many
        turns each, so that one's softmax runs while the other's wgmmas do."""
        BM: gl.constexpr = q_desc.block_type.shape[0]
        BN: gl.constexpr = kv_desc.block_type.shape[0]
        D: gl.constexpr = q_desc.block_type.shape[1]
        R: gl.constexpr = o_desc.block_type.shape[0]
        NUM_STAGES: gl.constexpr = k_bufs.type.shape[0]
        gl.static_assert(BN == BM, "both warpgroups walk every key block of the tile")
        gl.static_assert(NUM_STAGES >= 2)
        dtype: gl.constexpr = q_desc.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BN, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
        num_m = T // BM
        o_buf = o_bufs.index(WHICH)
        zeros_s = gl.zeros([R, BN], gl.float32, layout=s_layout)
        count = 0      # key blocks consumed so far (the slot ring's position)
        k = 0          # turns taken so far
        idx = 0
        for tile_id in range(pid, num_m * BH, nprog):
            block, bh = _tile(tile_id, BH, num_m, CAUSAL)
            start_m = block * BM
            row0 = (bh // H) * T
            h = bh % H
            n = _key_blocks(start_m, T, CAUSAL, BN, BM)
            rows = start_m + WHICH * R + gl.arange(0, R, layout=row_layout)
            qb = idx % 2
            mbarrier.wait(q_ready.index(qb), (idx // 2) & 1)
            q = q_bufs.index(qb).slice(WHICH * R, R)
            m_i = gl.full([R], float("-inf"), gl.float32, layout=row_layout)
            l_i = gl.zeros([R], gl.float32, layout=row_layout)
            acc = gl.zeros([R, D], gl.float32, layout=o_layout)
            # S of the first key block, in a turn of its own
            _take_turn(turn, k, WHICH)
            mbarrier.wait(k_ready.index(count % NUM_STAGES), (count // NUM_STAGES) & 1)
            S = warpgroup_mma(q, k_bufs.index(count % NUM_STAGES).permute((1, 0)), zeros_s, use_acc=False,
                              is_async=True)
            _pass_turn(turn, WHICH)
            k += 1
            S = warpgroup_mma_wait(0, deps=(S,))
            cols = gl.arange(0, BN, layout=col_layout)
            if n == 1:
                p, m_i, l_i, alpha = _softmax_block(S, m_i, l_i, qk_scale, rows, cols, dtype, p_layout, CAUSAL)
            else:
                p, m_i, l_i, alpha = _softmax_block(S, m_i, l_i, qk_scale, rows, cols, dtype, p_layout, False)
            # blocks below the diagonal need no mask; the last one (the diagonal) does
            for j in range(n - 2):
                cols = (j + 1) * BN + gl.arange(0, BN, layout=col_layout)
                acc, p, m_i, l_i = _attention_fwd_block(acc, p, m_i, l_i, q, k_bufs, v_bufs, k_ready, v_ready,
                                                        kv_empty, turn, count + j, k, qk_scale, rows, cols,
                                                        zeros_s, p_layout, WHICH, False)
                k += 1
            if n >= 2:
                cols = (n - 1) * BN + gl.arange(0, BN, layout=col_layout)
                acc, p, m_i, l_i = _attention_fwd_block(acc, p, m_i, l_i, q, k_bufs, v_bufs, k_ready, v_ready,
                                                        kv_empty, turn, count + n - 2, k, qk_scale, rows, cols,
                                                        zeros_s, p_layout, WHICH, CAUSAL)
                k += 1
            mbarrier.arrive(q_empty.index(qb))                     # the tile's last Q K^T is done
            # P V of the last block
            last = count + n - 1
            _take_turn(turn, k, WHICH)
            mbarrier.wait(v_ready.index(last % NUM_STAGES), (last // NUM_STAGES) & 1)
            acc = warpgroup_mma(p, v_bufs.index(last % NUM_STAGES), acc, is_async=True)
            _pass_turn(turn, WHICH)
            k += 1
            acc = warpgroup_mma_wait(0, deps=(acc,))
            mbarrier.arrive(kv_empty.index(last % NUM_STAGES))
            count += n
            idx += 1
            # epilogue: O / l by TMA, LSE (log2 units) by pointers
            tma.store_wait(0)
            o = acc / gl.expand_dims(gl.convert_layout(l_i, gl.SliceLayout(1, o_layout)), 1)
            o_buf.store(o.to(dtype))
            fence_async_shared()
            tma.async_copy_shared_to_global(o_desc, [row0 + start_m + WHICH * R, h * D], o_buf)
            gl.store(LSE + bh.to(gl.int64) * T + rows, m_i + gl.log2(l_i))
        tma.store_wait(0)

    @gluon.jit
    def _attention_fwd_consumer1(q_desc, kv_desc, o_desc, q_bufs, k_bufs, v_bufs, o_bufs, q_ready, q_empty,
                                 k_ready, v_ready, kv_empty, turn, LSE, T, H, BH, qk_scale, pid, nprog,
                                 CAUSAL: gl.constexpr):
        """The second consumer partition (a partition is a function: this one runs WHICH = 1)."""
        _attention_fwd_consumer(q_desc, kv_desc, o_desc, q_bufs, k_bufs, v_bufs, o_bufs, q_ready, q_empty,
                                k_ready, v_ready, kv_empty, turn, LSE, T, H, BH, qk_scale, pid, nprog, CAUSAL, 1)

    @gluon.jit
    def _attention_fwd_kernel(q_desc, kv_desc, o_desc, LSE, T, H, BH, qk_scale, CAUSAL: gl.constexpr,
                              NUM_STAGES: gl.constexpr, CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr):
        dtype: gl.constexpr = q_desc.dtype
        q_bufs = gl.allocate_shared_memory(dtype, [2] + q_desc.block_type.shape, q_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES] + kv_desc.block_type.shape, kv_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES] + kv_desc.block_type.shape, kv_desc.layout)
        o_bufs = gl.allocate_shared_memory(dtype, [2] + o_desc.block_type.shape, o_desc.layout)
        q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        kv_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(q_ready.index(i), count=1)
            mbarrier.init(q_empty.index(i), count=2)        # both consumers release a Q buffer
            mbarrier.init(turn.index(i), count=1)
        for i in gl.static_range(NUM_STAGES):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(kv_empty.index(i), count=2)       # and a K / V slot
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        args = (q_desc, kv_desc, o_desc, q_bufs, k_bufs, v_bufs, o_bufs, q_ready, q_empty, k_ready, v_ready,
                kv_empty, turn, LSE, T, H, BH, qk_scale, pid, nprog, CAUSAL)
        gl.warp_specialize([
            (_attention_fwd_consumer, args),
            (_attention_fwd_consumer1, args),
            (_attention_fwd_producer, args),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


def _descriptor(t: torch.Tensor, block: list[int]):
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16)
    return TensorDescriptor.from_tensor(t, block, layout)


def applies(qkv: torch.Tensor, dropout_p: float) -> bool:
    """Whether launch_attention_qkvpacked_fwd can run this packed (B, T, 3, H, D) qkv here."""
    if not (available(qkv.device) and qkv.is_cuda and qkv.dim() == 5 and qkv.is_contiguous()
            and qkv.dtype in (torch.bfloat16, torch.float16) and dropout_p == 0.0):
        return False
    B, T, _, H, D = qkv.shape
    return D in HEAD_DIMS and T > 0 and T % BLOCK_M == 0 and B * H > 0 and tma_row_major(qkv.view(B * T, -1))


def launch_attention_qkvpacked_fwd(qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, causal: bool,
                                   softmax_scale: float, stages: int | None = None) -> None:
    """O = softmax(q k^T * softmax_scale [+ causal mask]) v of a packed qkv (B, T, 3, H, D) into out
    (B, T, H, D) contiguous, and LSE (log2 units, (B, H, T) fp32) into lse (`applies` must hold)."""
    B, T, _, H, D = qkv.shape
    rows = qkv.view(B * T, 3 * H * D)
    out_rows = out.view(B * T, H * D)
    tiles = (T // BLOCK_M) * B * H
    _attention_fwd_kernel[(min(tiles, sm_count(qkv.device, interpreter_programs=1)),)](
        _descriptor(rows, [BLOCK_M, D]), _descriptor(rows, [BLOCK_N, D]), _descriptor(out_rows, [ROWS, D]),
        lse, T, H, B * H, softmax_scale * LOG2E, CAUSAL=bool(causal), NUM_STAGES=stages or STAGES,
        CONSUMER_REGS=CONSUMER_REGS, PRODUCER_REGS=PRODUCER_REGS, num_warps=4, maxnreg=MAX_REGS)
