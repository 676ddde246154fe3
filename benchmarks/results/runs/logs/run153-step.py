"""Session 20, run 153: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) under FASTGPT_ATTENTION_BWD (concurrent: attention's two backward kernels on two streams)
and CHUNK (the LM head's tokens a chunk; 8192 raises the chunk's logits cap to 1 GiB)."""
import os

import torch
import triton.testing

from fastgpt.kernels import cross_entropy
from bench_train_step import CONFIGS, build

if os.environ.get("CHUNK"):
    cross_entropy.CHUNK_ROWS = int(os.environ["CHUNK"])
    cross_entropy.MAX_CHUNK_LOGITS_BYTES = 1 << 30
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"attention bwd {os.environ.get('FASTGPT_ATTENTION_BWD', 'sequential')}, chunk "
      f"{cross_entropy.CHUNK_ROWS}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"|params| after 4 steps {checksum:.9e}")
