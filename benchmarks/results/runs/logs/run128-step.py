"""Session 18: the graphed step with kernels/gemm.py's choices timed as graph replays (argv[1] = 10, the
default) or one call at a time (0): do_bench median and the choices."""
import sys
import torch, triton.testing
from fastgpt.kernels import gemm
gemm.GRAPH_CALLS = int(sys.argv[1])
from bench_train_step import CONFIGS, build
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step(); torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"graph_calls {gemm.GRAPH_CALLS}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB")
for r in gemm.tuned_problems():
    t = r["times"] or {}
    print(f"  {r['M']:6d} {r['K']:6d} {r['N']:6d} {r['out_dtype'][6:]:8s} bias={int(r['bias'])} beta={r['beta']} "
          f"choice={r['choice']} " + " ".join(f"{k}:{v*1e3:.1f}" for k, v in sorted(t.items())))
