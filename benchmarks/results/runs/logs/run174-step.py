"""Session 23, run 174: the graphed GPT-2 step (triton-adamwcopy-cudagraph, the session's default MLP
with gelu'(pre) codes, do_bench median of replays) with the LM head's loss in chunks of CHUNK rows
(8192: the tree's, two chunks of 824 MB logits; 16384: the whole batch, 1.65 GB, cap raised)."""
import os
import time

import torch
import triton.testing

from fastgpt.kernels import cross_entropy
rows = int(os.environ.get("CHUNK", "8192"))
cross_entropy.CHUNK_ROWS = rows
cross_entropy.MAX_CHUNK_LOGITS_BYTES = max(cross_entropy.MAX_CHUNK_LOGITS_BYTES, rows * 50304 * 2)
from bench_train_step import CONFIGS, build

t0 = time.perf_counter()
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
setup = time.perf_counter() - t0
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"CHUNK {rows}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"build + 4 steps {setup:.1f} s, |params| after 4 steps {checksum:.9e}")
