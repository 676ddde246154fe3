"""Session 19, run 147: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with the backward's column sums deferred to one launch after it (FASTGPT_DEFER_SUMS=1,
the tree's default) or in place (=0); and how many sums the flush ran."""
import os

import torch
import triton.testing

from fastgpt.kernels import common

_flush = common.DeferredColumnSums.flush
counts = []


def flush(self, grads):
    counts.append(_flush(self, grads))
    return counts[-1]


common.DeferredColumnSums.flush = flush
from bench_train_step import CONFIGS, build  # noqa: E402

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"defer {os.environ.get('FASTGPT_DEFER_SUMS', '1')}: step {ms:.3f} ms, peak "
      f"{torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, sums flushed a step {counts[:3]}, "
      f"|params| after 4 steps {checksum:.9e}")
