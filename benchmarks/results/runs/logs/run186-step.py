"""Session 24, run 186: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with the tree's Gluon MLP kernel (OLD=0) or HEAD's (OLD=1, its kernel swapped in)."""
import importlib.util
import os
import sys
import time

import torch
import triton.testing

from fastgpt.kernels import mlp_gluon as tree
from bench_train_step import CONFIGS, build

use_old = os.environ.get("OLD", "0") == "1"
if use_old:
    spec = importlib.util.spec_from_file_location("old_mlp_gluon", sys.argv[1])
    old = importlib.util.module_from_spec(spec); sys.modules["old_mlp_gluon"] = old; spec.loader.exec_module(old)
    tree._mlp_gluon_kernel = old._mlp_gluon_kernel
t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"OLD {int(use_old)}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"build + 4 steps {setup:.1f} s")
