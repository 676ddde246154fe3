# Record note: during runs 167-168 the tree had kernels/attention_gluon.py (kept here as
# run167-attention_gluon.py) and kernels/attention.attention_qkvpacked_fwd(..., kernel=) /
# FWD_KERNEL choosing it; neither was kept (the Gluon forward was slower than the Triton one).
"""Session 22, run 167: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with attention's forward on kernels/attention_gluon.py (FWD_KERNEL=auto, the tree's
default now) or on the Triton kernel (=triton)."""
import os
import time

import torch
import triton.testing

from fastgpt.kernels import attention
attention.FWD_KERNEL = os.environ.get("FWD_KERNEL", "auto")
from bench_train_step import CONFIGS, build

t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"attention fwd {attention.FWD_KERNEL}: step {ms:.3f} ms, peak "
      f"{torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, build + 4 steps {setup:.1f} s, "
      f"|params| after 4 steps {checksum:.9e}")
