"""Session 18: the graphed step (do_bench median of replays) with / without the memset rewrite
(FASTGPT_GRAPH_MEMSETS), and how many memsets were rewritten."""
import os
import torch, triton.testing
from fastgpt import graph_memsets
_rewrite = graph_memsets.rewrite
def rewrite(*args):
    n = _rewrite(*args)
    print(f"  rewrote {n} memset nodes")
    return n
graph_memsets.rewrite = rewrite
from bench_train_step import CONFIGS, build
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step(); torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"memsets-rewrite {os.environ.get('FASTGPT_GRAPH_MEMSETS', '1')}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB")
