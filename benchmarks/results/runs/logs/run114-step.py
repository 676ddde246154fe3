"""Session 17: the graphed step (do_bench median of replays) and its peak memory, with the LM head's
chunk rows from argv[1] (0: the default), printing kernels/gemm.py's choices when argv[2] == 'v'."""
import sys, os
import torch, triton.testing
from fastgpt.kernels import cross_entropy as ce
rows = int(sys.argv[1])
if rows:
    ce.CHUNK_ROWS, ce.MAX_CHUNK_LOGITS_BYTES = rows, 2**31
from bench_train_step import CONFIGS, build
from fastgpt.kernels import gemm
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(3):
    step(); torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=400, return_mode="median")
print(f"chunk {rows or ce.CHUNK_ROWS} cublaslt {os.environ.get('FASTGPT_CUBLASLT', '1')}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB")
if len(sys.argv) > 2:
    for r in gemm.tuned_problems():
        t = r["times"] or {}
        print(f"  {r['M']:6d} {r['K']:6d} {r['N']:6d} {r['out_dtype'][6:]:8s} bias={int(r['bias'])} beta={r['beta']} "
              f"choice={r['choice']} ws={r['candidates']} " + " ".join(f"{k}:{v*1e3:.1f}" for k, v in sorted(t.items())))
