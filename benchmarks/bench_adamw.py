"""AdamW's step with the bf16 parameter copies against what it replaces, side by side, over GPT-2
124M's parameters (their real shapes, fp32, on one GPU).

    torch     what a bf16-autocast step runs around the optimizer today: torch's fused AdamW
              (fused=True, capturable, a device learning rate) from fp32 gradients, with the two
              casts beside it, bf16 gradients -> fp32 before the step and fp32 parameters -> the
              bf16 copies after it (one multi-tensor copy each, as fastgpt.ops.autocast does)
    triton    fastgpt.ops.adamw.adamw_step_with_copies: one launch reads the bf16 gradients and
              writes the parameters, both moments and the bf16 copies
Memory bound: 40 bytes a parameter for torch (AdamW 28, casts 6 + 6), 28 for the fused step; the
floor of each is its bytes over the copy bandwidth measured in the same run (copy_gbps).

    pytest benchmarks/bench_adamw.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch

import fastgpt
from fastgpt.ops.adamw import adamw_step_with_copies
from timing import measure

BYTES_PER_PARAMETER = {"torch": 40, "triton": 28}


def gpt2_parameters():
    """GPT-2 124M's trainable fp32 parameters (the tied embedding once), and its optimizer."""
    torch.manual_seed(0)
    model = fastgpt.GPT(fastgpt.gpt_preset("gpt2")).cuda()
    optimizer = model.configure_optimizer(0.1, 6e-4, (0.9, 0.95), "cuda")
    lr = torch.tensor(6e-4, device="cuda")
    for group in optimizer.param_groups:    # as GraphedTrainStep sets them
        group["lr"], group["capturable"] = lr, True
    return [p for p in model.parameters() if p.requires_grad], optimizer


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_adamw_step(benchmark, copy_gbps, impl):
    params, optimizer = gpt2_parameters()
    grads = [torch.randn_like(p, dtype=torch.bfloat16) * 1e-3 for p in params]
    copies = [torch.empty_like(p, dtype=torch.bfloat16) for p in params]
    fp32_grads = [torch.empty_like(p) for p in params]
    for p, g in zip(params, fp32_grads):
        p.grad = g

    def reference():
        torch._foreach_copy_(fp32_grads, grads)      # the backward's cast of the bf16 gradients
        optimizer.step()
        torch._foreach_copy_(copies, params)         # the next forward's cast of the parameters

    def fused():
        with fastgpt.use_backend("triton"):
            adamw_step_with_copies(optimizer, params, grads, copies)
    n = sum(p.numel() for p in params)
    bytes_moved = BYTES_PER_PARAMETER[impl] * n
    floor_ms = bytes_moved / (copy_gbps * 1e9) * 1e3
    ms = measure(benchmark, reference if impl == "torch" else fused, bytes_moved=bytes_moved,
                 parameters=n, copy_gbps=copy_gbps, floor_ms=floor_ms)
    benchmark.extra_info["vs_floor"] = ms / floor_ms
