"""Session 30, run 236: run 231's kernel A/B again on another machine, through the new shared helpers
(timing.replay_timer, ab_step.compare_kernels): c_fc's forward (16384 x 768 -> 3072, codes), the tree
(each epilogue half in its own block) against kernels/mlp_gluon.py at 7b124e6 (.run231_before_gluon.py),
outputs compared bitwise. Prediction: as run 231, -5 to -14 us a round, median ~-10.

    python .run236-kernels.py  (from benchmarks/)
"""
import importlib.util
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ab_step import compare_kernels  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402
from timing import replay_timer  # noqa: E402

spec = importlib.util.spec_from_file_location("before_gluon", os.path.join(HERE, ".run231_before_gluon.py"))
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)

bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
hs = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(2)]
cs = [torch.full((M, H), 255, device=dev, dtype=torch.uint8) for _ in range(2)]
calls = {"fwd c_fc, halves apart (tree)": lambda: tree.launch_linear_gelu(x, w, b, hs[0], cs[0]),
         "fwd c_fc, 7b124e6": lambda: before.launch_linear_gelu(x, w, b, hs[1], cs[1])}
timers = {name: replay_timer(fn) for name, fn in calls.items()}
torch.cuda.synchronize()
print(f"CHECK fwd h equal {bool(torch.equal(hs[0], hs[1]))}, codes equal {bool(torch.equal(cs[0], cs[1]))}, "
      f"unwritten {int(torch.isnan(hs[0]).sum())} {int((cs[0] == 255).sum())}", flush=True)
compare_kernels(timers, rounds=8, print_fn=lambda line: print(line, flush=True))
