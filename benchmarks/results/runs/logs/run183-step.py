"""Session 24, run 183: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with the Gluon GEMM's BLOCK_K / ring depth BK / STAGES (default 64 / 5)."""
import os
import time

import torch
import triton.testing

from fastgpt.kernels import mlp_gluon as tree
from bench_train_step import CONFIGS, build

bk, stages = int(os.environ.get("BK", "64")), int(os.environ.get("STAGES", "5"))
tree.BLOCK_K, tree.STAGES["pingpong"] = bk, stages
t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"BK {bk} STAGES {stages}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"build + 4 steps {setup:.1f} s")
