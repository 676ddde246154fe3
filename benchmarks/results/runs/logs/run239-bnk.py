"""Session 30, run 239: is the MLP backward's K loop longer than the forward's because of its weight's
layout? dpre = (dy (16384, 768) @ W_fc2 (768, 3072)) * gelu'(codes), with the bias partials, as the step
runs it (B read (K, N) row-major, an MN-major wgmma operand) against the same kernel given W_fc2's
transpose (3072, 768) (B_NK: K-major, as the forward's weight). Run 228's stamps: the backward's K loop
~15% longer than the forward's. Outputs compared bitwise; eight alternating rounds (timing.replay_timer,
ab_step.compare_kernels). Prediction: B_NK -5 to -15 us if the layout is the cause.

    python .run239-bnk.py  (from benchmarks/)
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ab_step import compare_kernels  # noqa: E402
from fastgpt.kernels import mlp_gluon as G  # noqa: E402
from timing import replay_timer  # noqa: E402

bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
dy = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf)          # W_fc2 (out 768, in 3072) = (K, N) here
w_t = w.t().contiguous()                                          # (N, K)
codes = torch.randint(0, G.GELU_GRAD_TOP + 1, (M, H), device=dev, dtype=torch.uint8)
outs = [(torch.full((M, H), float("nan"), device=dev, dtype=bf),
         torch.full((G.partial_rows(M), H), float("nan"), device=dev)) for _ in range(2)]
calls = {"B (N, K), B_NK": lambda: G._launch(dy, w_t, True, outs[1][0], outs[1][0], True, pre=codes, partials=outs[1][1]),
         "B (K, N) (tree)": lambda: G.launch_matmul_gelu_grad(dy, w, codes, outs[0][0], outs[0][1])}
timers = {name: replay_timer(fn) for name, fn in calls.items()}
torch.cuda.synchronize()
print(f"CHECK dpre equal {bool(torch.equal(outs[0][0], outs[1][0]))}, partials equal {bool(torch.equal(outs[0][1], outs[1][1]))}, "
      f"unwritten {int(torch.isnan(outs[1][0]).sum())} {int(torch.isnan(outs[1][1]).sum())}", flush=True)
compare_kernels(timers, rounds=8, print_fn=lambda line: print(line, flush=True))
