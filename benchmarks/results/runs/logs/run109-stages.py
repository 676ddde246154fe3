"""exp (run 109): the LM head's EXP_SHIFT GEMM (log2-unit epilogue) with 4 ring slots against the
default 5, one 4096-row chunk, alternating; CUDA-graph replay medians in us."""
import json, sys
import torch
from triton.testing import do_bench
from fastgpt.kernels import mlp_gluon
sys.path.insert(0, "benchmarks")
from timing import _capture
torch.manual_seed(0)
rows, C, V = 4096, 768, 50304
x = torch.randn(rows, C, device="cuda").to(torch.bfloat16)
w = (torch.randn(V, C, device="cuda") * 0.02).to(torch.bfloat16)
e = torch.empty(rows, V, device="cuda", dtype=torch.bfloat16)
sums = torch.empty(rows, V // 128 + 1, device="cuda")
shift = torch.zeros(rows, device="cuda")
def time(fn):
    fn(); torch.cuda.synchronize()
    g = _capture(fn)
    return [round(do_bench(g.replay, warmup=10, rep=300, return_mode="median") * 1000, 1) for _ in range(2)]
for rnd in range(3):
    for stages in (5, 4):
        print("RESULT", json.dumps(dict(rnd=rnd, stages=stages, us=time(lambda: mlp_gluon.launch_linear_exp(x, w, shift, e, sums, 70.0, stages=stages)))), flush=True)
    print("RESULT", json.dumps(dict(rnd=rnd, kernel="cuBLAS mm", us=time(lambda: torch.mm(x, w.t(), out=e)))), flush=True)
