"""Session 20, run 156: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with kernels/gemm.py's candidates widened by their one-attribute variations
(FASTGPT_CUBLASLT_VARIANTS=1, the tree's default now) or the heuristic's 8 only (=0); the LM
head's 8192-token chunks in both."""
import os
import time

import torch
import triton.testing

from fastgpt.kernels import gemm
from bench_train_step import CONFIGS, build

t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
problems = gemm.tuned_problems()
print(f"variants {os.environ.get('FASTGPT_CUBLASLT_VARIANTS', '1')}: step {ms:.3f} ms, peak "
      f"{torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, build + 4 steps {setup:.1f} s, {len(problems)} problems, "
      f"candidates {[p['candidates'] for p in problems]}, choices {[p['choice'] for p in problems]}, "
      f"|params| after 4 steps {checksum:.9e}")
