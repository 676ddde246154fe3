"""AdamW's step fused with the half-precision copy of the parameters the next forward reads.

What is fused, and why. A bf16-autocast step with fp32 parameters moves each parameter through
three passes besides the GEMMs: a cast of the fp32 parameter to the bf16 copy the forward reads
(4 + 2 bytes), a cast of the bf16 gradient back to fp32 for the optimizer (2 + 4), and
torch's fused AdamW (parameter, gradient, two moments read, three written: 28 bytes). Here one
pass reads the fp32 parameter, the bf16 gradient and both moments, and writes the parameter, the
moments and the bf16 copy: 4 + 2 + 8 + 12 + 2 = 28 bytes instead of 40, and two passes fewer (run
32's profile put the casts at 0.59 ms and AdamW at 1.34 a GPT-2 step on an H100).

The arithmetic is torch's fused AdamW (ADAMW mode, no amsgrad, no maximize), step by step:
    param     -= lr * weight_decay * param
    exp_avg    = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad^2
    param     -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps)
    copy       = param in the copy's dtype
with grad read in its own dtype and multiplied by an optional scale (a gradient-clipping
coefficient, so clipping needs no pass that rewrites the gradients), all in fp32. The step count
and the learning rate are read from device memory, so a captured CUDA graph replays the schedule.

Many tensors, one launch. The parameters, gradients, moments and copies stay separate tensors
(the optimizer's own state, autograd's gradients): each list is passed as a table of their
addresses, and a chunk table says which tensor, and which BLOCK elements of it, each program
updates (as PyTorch's multi_tensor_apply does). Tables of fixed tensors are built once; the
gradients' table wherever their addresses change (fastgpt/ops/adamw.py).

Limits: contiguous fp32 parameters and moments; gradients and copies of one dtype each (fp32,
fp16 or bf16); one learning rate (a 0-d fp32 tensor) for all, weight decay per tensor.

Launchers: `address_table(tensors)` and `chunk_table(numels)` build the tables (chunk tensor ids
and starts for a list of sizes); `adamw_step(tables...)` runs the step over them;
`aligned(tensors)` says whether the vector-access variant may run.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgpt.backend import interpreter_mode
from fastgpt.kernels.common import TRITON_TYPES

# elements one program updates: 2048 at 8 warps is 8 a thread of each stream, 28 KB of loads a
# program; offline sm_90 compile (triton 3.6, bf16 gradients and copies, aligned): 60 registers,
# 16-byte vector accesses (4096: 93 registers; 1024: 39)
BLOCK = 256 if interpreter_mode() else 2048


@triton.jit
def _adamw_step_kernel(
    ParamPtrs, GradPtrs, ExpAvgPtrs, ExpAvgSqPtrs, CopyPtrs, StepPtrs,   # (tensors,) int64 addresses
    Numels, WeightDecays,             # (tensors,) int64 sizes, fp32 weight decay of each tensor
    ChunkTensor, ChunkStart,          # (programs,) int32 tensor id, int64 first element
    Lr, GradScale,                    # 0-d fp32: learning rate; scale the gradients are multiplied by
    beta1, beta2, eps,
    GRAD_TYPE: tl.constexpr, COPY_TYPE: tl.constexpr,
    HAS_COPY: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(ChunkTensor + pid)
    start = tl.load(ChunkStart + pid)
    numel = tl.load(Numels + t)
    param_ptr = tl.load(ParamPtrs + t).to(tl.pointer_type(tl.float32))
    grad_ptr = tl.load(GradPtrs + t).to(tl.pointer_type(GRAD_TYPE))
    m_ptr = tl.load(ExpAvgPtrs + t).to(tl.pointer_type(tl.float32))
    v_ptr = tl.load(ExpAvgSqPtrs + t).to(tl.pointer_type(tl.float32))
    if ALIGNED:
        # every address 16-byte aligned and every size a multiple of 16 (the launcher checked): the
        # compiler may then use vector accesses, the mask being constant over 16 elements
        numel = tl.multiple_of(numel, 16)
        start = tl.multiple_of(start, 16)
        param_ptr = tl.multiple_of(param_ptr, 16)
        grad_ptr = tl.multiple_of(grad_ptr, 16)
        m_ptr = tl.multiple_of(m_ptr, 16)
        v_ptr = tl.multiple_of(v_ptr, 16)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < numel
    step = tl.load(tl.load(StepPtrs + t).to(tl.pointer_type(tl.float32)))
    lr = tl.load(Lr)
    weight_decay = tl.load(WeightDecays + t)

    p = tl.load(param_ptr + offs, mask=mask, other=0.0)
    g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_GRAD_SCALE:
        g = g * tl.load(GradScale)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)

    p = p - lr * weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    bias_correction1 = 1.0 - tl.exp2(step * tl.log2(beta1))
    bias_correction2_sqrt = tl.sqrt(1.0 - tl.exp2(step * tl.log2(beta2)))
    p = p - (lr / bias_correction1) * m / (tl.sqrt(v) / bias_correction2_sqrt + eps)

    tl.store(param_ptr + offs, p, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    if HAS_COPY:
        copy_ptr = tl.load(CopyPtrs + t).to(tl.pointer_type(COPY_TYPE))
        if ALIGNED:
            copy_ptr = tl.multiple_of(copy_ptr, 16)
        tl.store(copy_ptr + offs, p.to(COPY_TYPE), mask=mask)


# ---------------------------------------------------------------------------------------------
# Launchers: plain tensor-in / tensor-out functions (tables, grid).


def address_table(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """(len(tensors),) int64 device tensor of the tensors' data addresses."""
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64, device=device)


def aligned(tensors: list[torch.Tensor]) -> bool:
    """Every tensor 16-byte aligned with a size that is a multiple of 16 elements."""
    return all(t.data_ptr() % 16 == 0 and t.numel() % 16 == 0 for t in tensors)


def chunk_table(numels: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tensor id, first element) of every BLOCK-element chunk of tensors of these sizes."""
    ids, starts = [], []
    for i, n in enumerate(numels):
        for start in range(0, n, BLOCK):
            ids.append(i)
            starts.append(start)
    return (torch.tensor(ids, dtype=torch.int32, device=device),
            torch.tensor(starts, dtype=torch.int64, device=device))


def adamw_step(param_ptrs: torch.Tensor, grad_ptrs: torch.Tensor, exp_avg_ptrs: torch.Tensor,
               exp_avg_sq_ptrs: torch.Tensor, copy_ptrs: torch.Tensor | None, step_ptrs: torch.Tensor,
               numels: torch.Tensor, weight_decays: torch.Tensor, chunks: tuple[torch.Tensor, torch.Tensor],
               lr: torch.Tensor, grad_scale: torch.Tensor | None, beta1: float, beta2: float, eps: float,
               grad_dtype: torch.dtype, copy_dtype: torch.dtype | None, aligned: bool = False) -> None:
    """One AdamW step of every tensor the tables name (in place); the step counts must already
    be incremented. copy_ptrs None: no copies written. grad_scale None: gradients as they are.
    aligned: every address 16-byte aligned and every size a multiple of 16 (the caller knows the
    tensors; the kernel then uses vector accesses)."""
    chunk_ids, chunk_starts = chunks
    if chunk_ids.numel() == 0:
        return
    for name, t in (("lr", lr), ("grad_scale", grad_scale)):
        if t is not None and (t.dtype != torch.float32 or t.numel() != 1):
            raise TypeError(f"{name} must be a one-element float32 tensor, got {t.dtype} {tuple(t.shape)}")
    _adamw_step_kernel[(chunk_ids.numel(),)](
        param_ptrs, grad_ptrs, exp_avg_ptrs, exp_avg_sq_ptrs,
        param_ptrs if copy_ptrs is None else copy_ptrs, step_ptrs,
        numels, weight_decays, chunk_ids, chunk_starts,
        lr, lr if grad_scale is None else grad_scale,
        beta1, beta2, eps,
        GRAD_TYPE=TRITON_TYPES[grad_dtype],
        COPY_TYPE=TRITON_TYPES[copy_dtype if copy_dtype is not None else torch.float32],
        HAS_COPY=copy_ptrs is not None, HAS_GRAD_SCALE=grad_scale is not None, ALIGNED=aligned, BLOCK=BLOCK,
        num_warps=8,
    )
