"""Session 22, run 169: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with the attention kernels' programs head-major (HEAD_MAJOR=1, the tree's default now) or
block-major as before (=0)."""
import os
import time

import torch
import triton.testing

from fastgpt.kernels import attention
attention.HEAD_MAJOR = os.environ.get("HEAD_MAJOR", "1") == "1"
from bench_train_step import CONFIGS, build

t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"HEAD_MAJOR {attention.HEAD_MAJOR}: step {ms:.3f} ms, peak "
      f"{torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, build + 4 steps {setup:.1f} s, "
      f"|params| after 4 steps {checksum:.9e}")
