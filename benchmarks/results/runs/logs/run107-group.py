"""exp (run 107): the LM head's EXP_SHIFT GEMM with the whole 4096-row chunk in one tile group (W
read from DRAM once a chunk) against groups of 8 rows (W streamed four times), alternating; CUDA-graph
replay medians in us; then the op at the step's shape."""
import json, sys
import torch
from triton.testing import do_bench
from fastgpt.kernels import mlp_gluon
import fastgpt.kernels.cross_entropy as CE
sys.path.insert(0, "benchmarks")
from timing import _capture
torch.manual_seed(0)
rows, C, V = 4096, 768, 50304
x = torch.randn(4 * rows, C, device="cuda").to(torch.bfloat16)
w = (torch.randn(V, C, device="cuda") * 0.02).to(torch.bfloat16)
t = torch.randint(0, 50257, (4 * rows,), device="cuda")
e = torch.empty(rows, V, device="cuda", dtype=torch.bfloat16)
sums = torch.empty(rows, V // 128 + 1, device="cuda")
shift = torch.zeros(rows, device="cuda")
def time(fn, scale=1000):
    fn(); torch.cuda.synchronize()
    g = _capture(fn)
    return [round(do_bench(g.replay, warmup=10, rep=300, return_mode="median") * scale, 1) for _ in range(2)]
for rnd in range(3):
    for group in (8, 32):
        print("RESULT", json.dumps(dict(rnd=rnd, group_m=group, us=time(lambda: mlp_gluon.launch_linear_exp(x[:rows], w, shift, e, sums, 70.0, group_m=group)))), flush=True)
    print("RESULT", json.dumps(dict(rnd=rnd, kernel="cuBLAS mm", us=time(lambda: torch.mm(x[:rows], w.t(), out=e)))), flush=True)
for rnd in range(2):
    for group in (8, 32):
        mlp_gluon.EXP_GROUP_M = group
        fn = lambda: CE.linear_cross_entropy_fwd_bwd(x, w, t, -100, torch.bfloat16, True, True, 4096)
        print("RESULT", json.dumps(dict(rnd=rnd, op="lm head + loss", group_m=group, us=time(fn))), flush=True)
