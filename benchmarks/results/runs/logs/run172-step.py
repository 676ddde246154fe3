"""Session 23, run 172: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with every MLP keeping gelu'(pre) as 8-bit codes (CODE=1) or pre in bf16 (CODE=0)."""
import os
import time

import torch
import triton.testing

from fastgpt.ops.mlp import MLPOptions
from bench_train_step import CONFIGS, build

code = os.environ.get("CODE", "0") == "1"
config = CONFIGS["triton-adamwcopy-cudagraph"]._replace(mlp=MLPOptions(gelu_grad_code=code))
t0 = time.perf_counter()
model, step = build(config)
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"CODE {int(code)}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"build + 4 steps {setup:.1f} s, |params| after 4 steps {checksum:.9e}")
