"""Session 19, run 145: the ceiling of deferring the backward's 49 column-sum second passes
(kernels/common.sum_partials) to one launch: the graphed step with every sum_partials call
skipped (SUMS=skip; gradients then wrong, timing only) against the tree's (SUMS=run), alternating
processes; and with SUMS=once, each call skipped but one launch at the end of the backward over
the same bytes (106 MB of partials, as one sum_partials over a buffer that size)."""
import os

import torch
import triton.testing

from fastgpt.kernels import attention, common, layernorm, linear, mlp

mode = os.environ.get("SUMS", "run")
if mode != "run":
    def skip(partials, out, *rest, **kw):
        return out
    for module in (attention, layernorm, linear, mlp):
        module.sum_partials = skip

from bench_train_step import CONFIGS, build  # noqa: E402
import fastgpt.cuda_graph as cg  # noqa: E402

if mode == "once":   # one sum over 106 MB of partials (27,000 x 1024 fp32) after the backward
    big = torch.randn(27000, 1024, device="cuda")
    out = torch.empty(1024, device="cuda")
    original = cg.GraphedTrainStep._forward_backward

    def forward_backward(self):
        original_backward = torch.Tensor.backward

        def backward(t, *a, **k):
            original_backward(t, *a, **k)
            common.sum_partials(big, out)
        torch.Tensor.backward = backward
        try:
            return original(self)
        finally:
            torch.Tensor.backward = original_backward
    cg.GraphedTrainStep._forward_backward = forward_backward

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"sums {mode}: step {ms:.3f} ms")
