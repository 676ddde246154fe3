"""Session 20, run 152: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with attention's backward schedule FASTGPT_ATTENTION_BWD=recompute or stored_ds."""
import os

import torch
import triton.testing

from bench_train_step import CONFIGS, build

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"attention bwd {os.environ.get('FASTGPT_ATTENTION_BWD')}: step {ms:.3f} ms, peak "
      f"{torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, |params| after 4 steps {checksum:.9e}")
