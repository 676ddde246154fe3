"""Session 17: the graphed step's GEMM problems and kernels/gemm.py's timed choices, then the step
timed (do_bench median of graph replays) with those choices. argv[1]: JSON out."""
import json, sys, os
sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
import torch, triton.testing
from bench_train_step import CONFIGS, build
from fastgpt.kernels import gemm
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(3):
    step(); torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=300, return_mode="median")
rows = gemm.tuned_problems()
print(f"step {ms:.3f} ms; {len(rows)} problems")
for r in rows:
    t = r["times"] or {}
    best = min(t, key=t.get) if t else None
    print(f"{r['M']:6d} {r['K']:6d} {r['N']:6d} a{r['a_stride']} b{r['b_stride']} {r['out_dtype'][6:]:8s} bias={int(r['bias'])} "
          f"beta={r['beta']} n={r['candidates']} choice={r['choice']} torch={t.get(-1, float('nan'))*1e3:.1f}us "
          f"best={best}:{(t.get(best) or float('nan'))*1e3:.1f}us " + " ".join(f"{k}:{v*1e3:.1f}" for k, v in sorted(t.items())))
json.dump(dict(step_ms=ms, rows=[{**r, "times": {str(k): v for k, v in (r["times"] or {}).items()}} for r in rows]),
          open(sys.argv[1], "w"), default=str)
