"""Fused LM head + cross-entropy: the loss of logits = x @ W^T and its gradients, chunk by chunk.

What is fused, and why. The LM head of GPT-2 turns N = B*T tokens of width C into N x V logits
(V = 50304): at N = 16384 that is 3.3 GB in fp32, plus a bf16 copy and the same again for its
gradient, the largest activation of the whole model. Because the loss is the last layer, its
gradient can be computed in the forward pass (as Liger-Kernel's fused_linear_cross_entropy and
mgmalek/efficient_cross_entropy do): for each chunk of tokens

    logits  = x_chunk @ W^T                              (cuBLAS, in the compute dtype)
    loss_i  = logsumexp(logits_i) - logits_i[target_i]   (Triton, fp32, online over the vocab)
    dlogits = (softmax(logits) - onehot(target)) / n_valid, written over the logits in place
    grad_x_chunk  = dlogits @ W;   grad_W += dlogits^T @ x_chunk   (cuBLAS; grad_W in fp32)

so only one chunk of logits exists at a time. The autograd backward then only scales the stored
gradients by the incoming grad_output (fastgpt/ops/cross_entropy.py), in one pass each
(scale_gradient), which also casts grad_W from its fp32 accumulator to the weight's dtype.

The Triton kernel is one program per row. When the row (padded to a power of two) fits in
registers (SINGLE_PASS_MAX_ROW_BYTES: bf16/fp16 up to V = 65536, GPT-2's 50304 included) it is
read once and the gradient written once (SINGLE_PASS): max, sum of exponentials and the
gradient all come from the registers: two transfers of the row instead of three. It takes two
exponentials an element (one for the sum, one for the gradient): keeping exp(z - max) as fp16 in
the row's registers to take one was measured 26% slower (run 30: 1.90 against 1.51 ms over
16384 x 50304 bf16 logits, H100; the fp16 copy added register spills), as were 16 warps a row
instead of 32 (1.84). Holding the row as three power-of-two segments (32768 + 16384 + 2048 =
51200 lanes instead of 65536, 40 bytes of stack instead of 80) was 4% slower (run 43: 1.565
against 1.508 ms; at 16 warps it still needs 128 registers a thread, so two programs do not fit
an SM either; commit aa33d38 has it). A
wider row takes the two-pass path of the same kernel: a first pass over the vocab in blocks of
BLOCK_V keeps a running max and a running sum of exponentials (online logsumexp, fp32), a second
pass re-reads the row and writes the gradient. A row whose target is ignore_index gets loss 0
and a zero gradient row. n_valid (the number of non-ignored targets) is read from device
memory, so nothing waits on the host. Offline sm_90 compile (triton 3.6): the bf16 single pass
at 32 warps uses 64 registers with an 80-byte stack (scalars: row pointer, target, vector masks;
the row itself stays in registers); the two-pass and fp32 single-pass variants do not spill.

On Hopper with Gluon, 16-bit logits whose rows fit two shared-memory row buffers (GPT-2's
included) take kernels/cross_entropy_gluon.py's persistent kernel instead, which streams the next
row into shared memory by cp.async while computing this one: one program an SM here cannot overlap
a row's loads with its arithmetic (run 76, H100, a (4096, 50304) bf16 chunk: 296.6 us against
392.3; cross_entropy_fwd_bwd_'s `kernel` chooses; by default the Gluon kernel wherever it applies
and no Triton knob is pinned).

The exp-logits path (bf16 on Hopper with Gluon, the default there with gradients): the loss pass
above reads and writes every logit once more after the GEMM wrote them (3.3 GB a GPT-2 step, 1.17
ms of 27 in run 93's profile). Here the GEMM's own epilogue does that pass's work, so nothing
reads the logits between the GEMMs:

  1. shift_i = x_i . W[target_i], each row's target logit (_target_logit_kernel; 0 if ignored);
  2. E = exp(min(x_chunk @ W^T - shift, EXP_CAP)) in bf16, and its row sums over each 128-column
     tile (kernels/mlp_gluon.py's EXP_SHIFT epilogue; off Hopper exp_logits_reference stands in);
  3. per row (_exp_logits_finish_kernel): S = the sum of the tile sums, loss = log S (lse - the
     target's logit, with the shift being the target's logit), E[target] -= S, and the row scale
     r = 1 / (S n_valid). E's row times r is now softmax - onehot: the gradient of the logits,
     with the cancellation at the target done in fp32 (as PyTorch's softmax - onehot);
  4. grad_x_chunk = (E @ W in fp32) * r, rounded once;
  5. grad_W += E^T @ (x_chunk * r)   (x * r rounded to bf16 once; grad_W in fp32 as above).

E in bf16 holds exp to ~0.4% (relative), where bf16 logits hold a logit of 10 to 0.02 nats (2%
on its exponential). At GPT-2's scale (run 102, against float64): at init-sized logits grad_x
2.9e-3 and grad_W 2.3e-3, where the loss kernel's path gets 1.7e-3 and 2.3e-5 (its p - 1 is exact
when p ~ 1/V); with logits spread 15x wider 2.7e-3 and 2.2e-3 against 1.6e-2 and 1.6e-2. The
cap keeps E and its sums finite (exp(70) * 50304 < 2^127): a row whose logits pass its target's
by more than EXP_CAP nats (a loss over ~70 nats) has those capped, and its loss and gradient
saturate. fp16 cannot hold exp(70): bf16 only. Run 103 (H100): the LM head with its loss at
GPT-2's step shape 6.22-6.38 ms against 6.89-7.11 (a chunk's Gluon GEMM 554-563 us against
cuBLAS's 504-514, the loss kernel it replaces 297); the graphed step 26.77 against 27.60 ms. Run
105: the epilogue in log2 units, 522-542 us a chunk against cuBLAS's 507-527 in the same rounds.

Limits: mean reduction only (what GPT training uses); no bias, label smoothing or z-loss;
targets must lie in [0, V) or equal ignore_index (checked by the caller). The chunk size trades
memory for speed: small chunks make the grad_W accumulation (a read and write of V x C fp32 per
chunk) and the skinny GEMMs dominate. Default (`chunk_rows`): 8192 tokens a chunk, halved while
a chunk's logits would pass 1 GiB. grad_W is accumulated in one fp32 buffer that the first
chunk overwrites (no zero-fill) and is returned as it is: the backward's scaling pass casts it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode
from fastgpt.kernels import cross_entropy_gluon, gemm, mlp_gluon

# Two-pass path: the widest vocab block one program holds in registers, 32768 fp32 over 32 warps
# is 32 values per thread (Liger's limit; wider blocks spill).
MAX_BLOCK_V = 32768
# Single-pass path: a whole row (padded to a power of two) is held in registers in its storage
# dtype when it takes at most this many bytes: 128 KiB over 32 warps (1024 threads) is 32
# 32-bit registers per thread (64 bf16 values, two a register), half of the 64 registers a
# thread may have at 1024 threads a block. bf16/fp16 rows up to V = 65536 (GPT-2's 50304
# included) and fp32 rows up to 32768 qualify; wider rows take the two-pass path.
SINGLE_PASS_MAX_ROW_BYTES = 128 * 1024


@triton.jit
def _cross_entropy_fwd_bwd_kernel(
    Logits, stride_row,          # (rows, n_cols) logits; overwritten by their gradient if COMPUTE_GRAD
    Targets,                     # (rows,) integer class ids
    Loss,                        # (rows,) fp32 loss per row (0 where ignored)
    NValid,                      # pointer to the number of non-ignored targets of the whole batch
    n_cols, ignore_index,
    BLOCK_V: tl.constexpr, COMPUTE_GRAD: tl.constexpr,
    SINGLE_PASS: tl.constexpr,   # BLOCK_V >= n_cols: the row stays in registers, read once
):
    row = tl.program_id(0).to(tl.int64)
    Logits += row * stride_row
    target = tl.load(Targets + row).to(tl.int64)
    cols = tl.arange(0, BLOCK_V)

    if target == ignore_index:
        tl.store(Loss + row, 0.0)
        if COMPUTE_GRAD:
            for start in range(0, n_cols, BLOCK_V):
                tl.store(Logits + start + cols, tl.zeros([BLOCK_V], dtype=Logits.dtype.element_ty),
                         mask=start + cols < n_cols)
        return

    if SINGLE_PASS:
        # the whole row, kept in registers in its storage dtype (bf16: two values a register)
        z_row = tl.load(Logits + cols, mask=cols < n_cols, other=float("-inf"))
        m = tl.max(z_row.to(tl.float32), axis=0)
        d = tl.sum(tl.exp(z_row.to(tl.float32) - m), axis=0)
    else:
        # pass 1: online logsumexp in fp32
        m = float("-inf")
        d = 0.0
        for start in range(0, n_cols, BLOCK_V):
            z = tl.load(Logits + start + cols, mask=start + cols < n_cols,
                        other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(z, axis=0))
            d = d * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
            m = m_new
    lse = m + tl.log(d)
    # a target outside [0, n_cols) reads nothing and gives a NaN loss (the caller also checks)
    in_range = (target >= 0) & (target < n_cols)
    z_target = tl.load(Logits + target, mask=in_range, other=float("nan")).to(tl.float32)
    tl.store(Loss + row, lse - z_target)

    if COMPUTE_GRAD:
        # d loss_mean / d logits = (softmax - onehot) / n_valid, in place. The barrier first: every
        # warp reads z_target before any warp overwrites the row (the target's column among it)
        # with its gradient. Without it a fast warp's store could race a slow warp's load: run 71
        # saw loss errors of 5e-3 at GPT-2's vocab once the gradient's exponentials were made
        # cheaper (an experiment, not kept), and run 72 none with the barrier.
        tl.debug_barrier()
        inv_n_valid = 1.0 / tl.load(NValid).to(tl.float32)
        if SINGLE_PASS:
            # softmax everywhere, then the target's element again with the -1 after a barrier
            # (a per-element `cols == target` select keeps 64 column indices live per thread
            # and doubles the register spill of this path)
            p = tl.exp(z_row.to(tl.float32) - lse)
            tl.store(Logits + cols, (p * inv_n_valid).to(Logits.dtype.element_ty), mask=cols < n_cols)
            tl.debug_barrier()
            g_target = (tl.exp(z_target - lse) - 1.0) * inv_n_valid
            tl.store(Logits + target, g_target.to(Logits.dtype.element_ty), mask=in_range)
        else:
            # pass 2: read the row again
            for start in range(0, n_cols, BLOCK_V):
                mask = start + cols < n_cols
                z = tl.load(Logits + start + cols, mask=mask, other=0.0).to(tl.float32)
                p = tl.exp(z - lse)
                g = tl.where(start + cols == target, p - 1.0, p) * inv_n_valid
                tl.store(Logits + start + cols, g.to(Logits.dtype.element_ty), mask=mask)


def cross_entropy_fwd_bwd_(logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
                           n_valid: torch.Tensor, ignore_index: int, compute_grad: bool,
                           block_v: int | None = None, single_pass: bool | None = None,
                           num_warps: int | None = None, kernel: str | None = None) -> None:
    """Per-row loss of logits (rows, V) into loss (rows,) fp32; with compute_grad the logits are
    overwritten by the gradient of the mean loss over n_valid (a 1-element device tensor).

    kernel: "gluon" runs kernels/cross_entropy_gluon.py's persistent kernel (a ValueError where
    cross_entropy_gluon.applies does not hold), "triton" this file's, None (default) the Gluon
    kernel where it applies and none of block_v / single_pass / num_warps is given, else Triton's.
    Triton's kernel: single_pass (default: when the padded row fits SINGLE_PASS_MAX_ROW_BYTES)
    reads each row once, holding it in registers; otherwise the row is read twice in blocks of
    block_v. num_warps (default: by the block width; the Gluon kernel's: 8, or 16) is a tuning
    knob the benchmark times."""
    rows, n_cols = logits.shape
    if kernel not in (None, "triton", "gluon"):
        raise ValueError(f"cross_entropy_fwd_bwd_: kernel must be None, 'triton' or 'gluon', got {kernel!r}")
    if kernel == "gluon":
        if block_v is not None or single_pass is not None:
            raise ValueError("cross_entropy_fwd_bwd_: block_v and single_pass are the Triton kernel's knobs, "
                             "not the Gluon kernel's")
        if not cross_entropy_gluon.applies(logits):
            widest = cross_entropy_gluon.MAX_CHUNKS * cross_entropy_gluon.CHUNK
            raise ValueError("cross_entropy_fwd_bwd_: kernel='gluon' needs a Hopper GPU with Gluon and "
                             "bf16/fp16 logits on it, unit column stride, 16-byte aligned base and row stride, "
                             f"V a multiple of 8 and at most {widest}; "
                             f"got {logits.dtype} {tuple(logits.shape)} strides {logits.stride()} on {logits.device}")
    elif kernel is None:
        pinned = block_v is not None or single_pass is not None or num_warps is not None
        kernel = "gluon" if not pinned and cross_entropy_gluon.applies(logits) else "triton"
    if rows == 0:
        return
    if kernel == "gluon":
        cross_entropy_gluon.launch_cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, ignore_index,
                                                          compute_grad, num_warps=num_warps)
        return
    assert logits.stride(1) == 1 and targets.is_contiguous() and loss.is_contiguous()
    row_block = triton.next_power_of_2(n_cols)
    if single_pass is None:
        single_pass = block_v is None and row_block * logits.element_size() <= SINGLE_PASS_MAX_ROW_BYTES
    if single_pass:
        assert block_v is None or block_v >= n_cols, "the single pass holds the whole row"
        block_v = row_block
    else:
        block_v = block_v or min(MAX_BLOCK_V, row_block)
    if num_warps is None:
        num_warps = 32 if block_v >= 32768 else 16 if block_v >= 8192 else 8 if block_v >= 2048 else 4
    _cross_entropy_fwd_bwd_kernel[(rows,)](
        logits, logits.stride(0), targets, loss, n_valid, n_cols, ignore_index,
        BLOCK_V=block_v, COMPUTE_GRAD=compute_grad, SINGLE_PASS=single_pass, num_warps=num_warps)


@triton.jit
def _target_stats_kernel(Targets, n, vocab, ignore_index, NValid, InRange, BLOCK: tl.constexpr):
    """NValid = the number of targets != ignore_index (int64), InRange = whether every target lies
    in [0, vocab) or equals ignore_index: one program walks all targets, BLOCK at a time."""
    count = tl.zeros([BLOCK], dtype=tl.int64)
    bad = tl.zeros([BLOCK], dtype=tl.int32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        inside = offs < n
        target = tl.load(Targets + offs, mask=inside, other=ignore_index)
        valid = target != ignore_index
        count += valid.to(tl.int64)
        bad |= (valid & ((target < 0) | (target >= vocab))).to(tl.int32)
    tl.store(NValid, tl.sum(count, axis=0))
    tl.store(InRange, tl.max(bad, axis=0) == 0)


def target_stats(targets: torch.Tensor, vocab: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_valid, in_range) of 1-D integer targets: the number not equal to ignore_index (0-d int64,
    the loss's divisor) and whether every one lies in [0, vocab) or equals ignore_index (0-d
    bool), in one launch that reads the targets once and leaves both on the device (PyTorch's
    comparisons, reductions and count took 11 launches, ~27 us of a GPT-2 step with their idle,
    run 125's timeline). One program: its loads are what take the time, so a GPT-2 step's 16384
    targets are one block of 32 warps: 4.8 us a call against 6.7 in blocks of 4096 on 8 warps and
    20.1 for PyTorch's ops (run 146, CUDA-graph replays)."""
    n_valid = torch.empty((), dtype=torch.int64, device=targets.device)
    in_range = torch.empty((), dtype=torch.bool, device=targets.device)
    block = 256 if interpreter_mode() else min(16384, max(1024, triton.next_power_of_2(targets.numel())))
    _target_stats_kernel[(1,)](targets, targets.numel(), vocab, ignore_index, n_valid, in_range,
                               BLOCK=block, num_warps=32)
    return n_valid, in_range


@triton.jit
def _target_logit_kernel(X, stride_x, W, stride_w, Targets, Shift, C, ignore_index, BLOCK_C: tl.constexpr):
    """Shift[row] = x_row . W[target_row] in fp32 (0 where the target is ignored): each row's
    target logit, the exponent shift of the exp-logits path."""
    row = tl.program_id(0).to(tl.int64)
    target = tl.load(Targets + row)
    valid = target != ignore_index
    cols = tl.arange(0, BLOCK_C)
    x = tl.load(X + row * stride_x + cols, mask=cols < C, other=0.0).to(tl.float32)
    w = tl.load(W + tl.where(valid, target, 0).to(tl.int64) * stride_w + cols, mask=cols < C, other=0.0)
    tl.store(Shift + row, tl.where(valid, tl.sum(x * w.to(tl.float32)), 0.0))


@triton.jit
def _exp_logits_finish_kernel(RowSums, n_tiles, E, stride_e, Targets, X, stride_x, XScaled, stride_xs, Loss,
                              RowScale, NValid, C, ignore_index, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """One row of the exp-logits path, after the GEMM wrote E = exp(logits - shift) and its tile
    row sums: S = the row's sum (tiles added in one fixed order), loss = log S (the shift being the
    target's logit), E[target] -= S (so that E's row over S is softmax - onehot, the logits'
    gradient, its cancellation at the target done here in fp32 as PyTorch's softmax - onehot does),
    RowScale = 1 / (S n_valid), XScaled = x RowScale (dW's right operand). Ignored rows: loss 0,
    scale 0, E untouched."""
    row = tl.program_id(0).to(tl.int64)
    tiles = tl.arange(0, BLOCK_T)
    total = tl.sum(tl.load(RowSums + row * n_tiles + tiles, mask=tiles < n_tiles, other=0.0))
    target = tl.load(Targets + row)
    valid = target != ignore_index
    n_valid = tl.load(NValid).to(tl.float32)
    scale = tl.where(valid, 1.0 / tl.where(valid, total * n_valid, 1.0), 0.0)   # no 1 / 0 where ignored
    tl.store(Loss + row, tl.where(valid, tl.log(total), 0.0))
    tl.store(RowScale + row, scale)
    if valid:
        at_target = E + row * stride_e + target
        tl.store(at_target, (tl.load(at_target).to(tl.float32) - total).to(E.dtype.element_ty))
    cols = tl.arange(0, BLOCK_C)
    x = tl.load(X + row * stride_x + cols, mask=cols < C, other=0.0).to(tl.float32)
    tl.store(XScaled + row * stride_xs + cols, (x * scale).to(XScaled.dtype.element_ty), mask=cols < C)


@triton.jit
def _scale_gradient_kernel(Grad, GradOutput, Out, n, BLOCK: tl.constexpr):
    """Out = Grad * GradOutput[0] in Out's dtype: the backward's scaling of a stored gradient."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(GradOutput).to(tl.float32)
    x = tl.load(Grad + offs, mask=mask).to(tl.float32)
    tl.store(Out + offs, (x * g).to(Out.dtype.element_ty), mask=mask)


def scale_gradient(grad: torch.Tensor, grad_output: torch.Tensor, dtype: torch.dtype,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """grad * grad_output (a 0-d tensor, read on the device: nothing waits on the host) as a new
    tensor of `dtype` (or into `out`), in one pass. PyTorch's `grad * grad_output` broadcasts the 0-d tensor
    through its non-vectorised kernel (run 54's profile: 133 us for GPT-2's two gradients), and
    grad_W needs a cast besides (77 us)."""
    out = torch.empty(grad.shape, dtype=dtype, device=grad.device) if out is None else out
    n = grad.numel()
    if n:
        block = 1024 if interpreter_mode() else 4096
        _scale_gradient_kernel[(triton.cdiv(n, block),)](grad.contiguous(), grad_output.reshape(1), out, n,
                                                          BLOCK=block, num_warps=8)
    return out


# Default chunk: 8192 tokens. Each chunk re-reads and re-writes the fp32 V x C gradient of W
# (8 bytes a weight) against 6 * rows FLOPs a weight of GEMMs: at an H100's ~200 FLOP/byte that
# overhead is ~270 / rows of the GEMM time, 7% at 4096 rows (GPT-2 head, H100: 2048 rows 8.19 ms,
# 4096 rows 7.72 ms, 8192 rows 7.67 ms with 0.4 GiB more memory; runs/run2-cross_entropy.json).
# In the graphed GPT-2 step 8192 rows took 0.04-0.13 ms off 4096's (run 153, 3 pairs of
# processes), at 7.30-7.36 GiB peak against 6.93 (the reference with torch.compile: 8.10).
# Halved while a chunk's logits would exceed MAX_CHUNK_LOGITS_BYTES (GPT-2: 824 MB of bf16).
CHUNK_ROWS = 8192
MAX_CHUNK_LOGITS_BYTES = 2**30


def chunk_rows(n_rows: int, vocab: int, itemsize: int) -> int:
    """Default tokens per chunk: CHUNK_ROWS, halved while the chunk's (rows, vocab) logits of
    itemsize bytes exceed MAX_CHUNK_LOGITS_BYTES, never more than n_rows (nor less than 1)."""
    rows = CHUNK_ROWS
    while rows > 1 and rows * vocab * itemsize > MAX_CHUNK_LOGITS_BYTES:
        rows //= 2
    return max(1, min(n_rows, rows))


def _accumulate_grad_weight(grad_weight: torch.Tensor, dlogits: torch.Tensor, x_chunk: torch.Tensor,
                            first: bool, tuned: bool = False) -> None:
    """grad_weight (V, C, fp32) += dlogits^T @ x_chunk, without a V x C temporary on CUDA; the
    first chunk overwrites (beta = 0: the uninitialised buffer is never read, no zero-fill)."""
    beta = 0 if first else 1
    if grad_weight.is_cuda and dlogits.dtype in (torch.float16, torch.bfloat16):
        gemm.matmul(dlogits.t(), x_chunk, out=grad_weight, beta=beta, out_dtype=torch.float32, tuned=tuned)
    elif dlogits.dtype == torch.float32:
        grad_weight.addmm_(dlogits.t(), x_chunk, beta=beta)
    elif first:   # CPU has no mixed-dtype addmm
        grad_weight.copy_(torch.mm(dlogits.t(), x_chunk))
    else:
        grad_weight += torch.mm(dlogits.t(), x_chunk).float()


# The exp-logits path: see the header. EXP_CAP bounds the exponent so that bf16 holds E and fp32
# the row sums (exp(70) * 50304 < 2^127); fp16 (max 65504) cannot hold it: bf16 only.
EXP_CAP = 70.0


def exp_logits_applies(xc: torch.Tensor, wc: torch.Tensor) -> bool:
    """Whether linear_cross_entropy_fwd_bwd takes the exp-logits path by default: bf16 operands
    the Gluon GEMM runs (Hopper)."""
    return xc.dtype == torch.bfloat16 and mlp_gluon.applies(xc, wc, None)


def exp_logits_reference(x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, out: torch.Tensor,
                         row_sums: torch.Tensor, cap: float, block_n: int) -> None:
    """The Gluon GEMM's epilogue in PyTorch (its test oracle, and the path's GEMM off Hopper):
    out = exp(min(x @ weight^T - shift, cap)) in out's dtype, row_sums[:, j] = the sum of those
    exponentials (fp32, before out's rounding) over columns j * block_n.. ."""
    e = torch.exp(torch.clamp(torch.mm(x.float(), weight.float().t()) - shift[:, None], max=cap))
    out.copy_(e)
    pad = row_sums.shape[1] * block_n - e.shape[1]
    row_sums.copy_(torch.nn.functional.pad(e, (0, pad)).view(e.shape[0], -1, block_n).sum(2))


def _exp_logits_chunks(xc, wc, targets, ignore_index, n_valid, loss_rows, grad_x, grad_w, logits_buffer,
                       need_grad_x, need_grad_weight, tuned_gemms):
    """linear_cross_entropy_fwd_bwd's chunks on the exp-logits path (the header's steps 1-5); its
    kernels read rows of unit column stride."""
    xc, wc = xc.contiguous(), wc.contiguous()
    n_rows, C = xc.shape
    rows_per_chunk = logits_buffer.shape[0]
    block_n = mlp_gluon.BLOCK_N
    n_tiles = triton.cdiv(wc.shape[0], block_n)
    gluon_gemm = mlp_gluon.applies(xc, wc, None)
    shift = torch.empty(n_rows, dtype=torch.float32, device=xc.device)
    row_scale = torch.empty(n_rows, dtype=torch.float32, device=xc.device)
    row_sums = torch.empty(rows_per_chunk, n_tiles, dtype=torch.float32, device=xc.device)
    x_scaled = torch.empty(rows_per_chunk, C, dtype=xc.dtype, device=xc.device)
    block_c = triton.next_power_of_2(C)
    _target_logit_kernel[(n_rows,)](xc, xc.stride(0), wc, wc.stride(0), targets, shift, C, ignore_index,
                                    BLOCK_C=block_c)
    for start in range(0, n_rows, rows_per_chunk):
        end = min(start + rows_per_chunk, n_rows)
        rows = end - start
        e = logits_buffer[:rows]
        if gluon_gemm:
            mlp_gluon.launch_linear_exp(xc[start:end], wc, shift[start:end], e, row_sums[:rows], EXP_CAP)
        else:
            exp_logits_reference(xc[start:end], wc, shift[start:end], e, row_sums[:rows], EXP_CAP, block_n)
        _exp_logits_finish_kernel[(rows,)](row_sums, n_tiles, e, e.stride(0), targets[start:end], xc[start:end],
                                           xc.stride(0), x_scaled, x_scaled.stride(0), loss_rows[start:end],
                                           row_scale[start:end], n_valid, C, ignore_index,
                                           BLOCK_T=triton.next_power_of_2(n_tiles), BLOCK_C=block_c)
        if need_grad_x:     # (E @ W in fp32) * 1 / (S n_valid), rounded once into grad_x (PyTorch's
            # broadcast multiply with the cast took 17 us a chunk, run 104's profile)
            product, out = _mm_fp32(e, wc, tuned_gemms), grad_x[start:end]
            _scale_rows_kernel[(rows,)](product, product.stride(0), row_scale[start:end], out, out.stride(0), C,
                                        BLOCK_C=block_c)
        if need_grad_weight:
            _accumulate_grad_weight(grad_w, e, x_scaled[:rows], first=start == 0, tuned=tuned_gemms)


@triton.jit
def _scale_rows_kernel(In, stride_in, Scale, Out, stride_out, C, BLOCK_C: tl.constexpr):
    """Out[row] = In[row] * Scale[row] (fp32 arithmetic) in Out's dtype, one row a program."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    x = tl.load(In + row * stride_in + cols, mask=cols < C, other=0.0).to(tl.float32)
    tl.store(Out + row * stride_out + cols, (x * tl.load(Scale + row)).to(Out.dtype.element_ty), mask=cols < C)


def _mm_fp32(a: torch.Tensor, b: torch.Tensor, tuned: bool = False) -> torch.Tensor:
    """a @ b accumulated and returned in fp32 (16-bit operands on CUDA read as they are)."""
    if a.is_cuda:
        return gemm.matmul(a, b, out_dtype=torch.float32, tuned=tuned)
    return torch.mm(a.float(), b.float())


def linear_cross_entropy_fwd_bwd(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 ignore_index: int, compute_dtype: torch.dtype,
                                 need_grad_x: bool, need_grad_weight: bool, rows_per_chunk: int,
                                 exp_logits: bool | None = None, tuned_gemms: bool = False,
                                 n_valid: torch.Tensor | None = None):
    """Mean cross-entropy of x (N, C) @ weight (V, C)^T against targets (N,), and its gradients.

    The GEMMs run in compute_dtype (inputs are cast to it); the loss is accumulated in fp32.
    Returns (loss: 0-d fp32, grad_x: like x or empty, grad_weight: weight's shape in fp32 (the
    accumulator, cast by the backward's scale_gradient) or empty), the gradients being those of the
    loss itself (grad_output = 1). exp_logits: the exp-logits path (header; bf16 only), the loss
    kernel's, or None: exp-logits where exp_logits_applies (with gradients). tuned_gemms: the
    exp path's dX and dW GEMMs on kernels/gemm.py's timed choices (for callers whose launches
    are free), else PyTorch's calls. n_valid: the number of non-ignored targets (0-d, on the
    device: target_stats'), counted here when None.
    """
    n_rows, _ = x.shape
    vocab = weight.shape[0]
    device = x.device
    xc = x.to(compute_dtype)
    wc = weight.to(compute_dtype)
    targets = targets.contiguous()
    if n_valid is None:
        n_valid = (targets != ignore_index).sum()
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=device)
    compute_grad = need_grad_x or need_grad_weight
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=device) if need_grad_x else x.new_empty(0)
    # fp32 accumulator, written whole by the first chunk (so not zero-filled), returned as it is
    grad_w = (torch.empty(weight.shape, dtype=torch.float32, device=device) if need_grad_weight
              else weight.new_empty(0))
    rows_per_chunk = max(1, min(rows_per_chunk, n_rows))
    logits_buffer = torch.empty(rows_per_chunk, vocab, dtype=compute_dtype, device=device)
    if exp_logits is None:
        exp_logits = compute_grad and exp_logits_applies(xc, wc)
    if exp_logits:
        _exp_logits_chunks(xc, wc, targets, ignore_index, n_valid, loss_rows, grad_x, grad_w, logits_buffer,
                           need_grad_x, need_grad_weight, tuned_gemms)
        return loss_rows.sum() / n_valid, grad_x, grad_w
    for start in range(0, n_rows, rows_per_chunk):
        end = min(start + rows_per_chunk, n_rows)
        x_chunk = xc[start:end]
        logits = logits_buffer[:end - start]
        torch.mm(x_chunk, wc.t(), out=logits)
        cross_entropy_fwd_bwd_(logits, targets[start:end], loss_rows[start:end], n_valid,
                               ignore_index, compute_grad)
        if need_grad_x:
            if grad_x.dtype == compute_dtype:
                torch.mm(logits, wc, out=grad_x[start:end])
            else:
                grad_x[start:end] = torch.mm(logits, wc)
        if need_grad_weight:
            _accumulate_grad_weight(grad_w, logits, x_chunk, first=start == 0)
    loss = loss_rows.sum() / n_valid       # 0 / 0 = NaN when every target is ignored, as torch
    return loss, grad_x, grad_w
