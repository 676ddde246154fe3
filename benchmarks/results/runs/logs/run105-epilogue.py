"""exp (run 105): the EXP_SHIFT epilogue in log2 units with unrounded row sums and the column mask
on the last tile only (the working tree) against the committed one (f25a8a3, loaded from a copy),
one 4096-row chunk of GPT-2's LM head, alternating; CUDA-graph replay medians in us."""
import importlib.util, json, sys
import torch
from triton.testing import do_bench
from fastgpt.kernels import mlp_gluon
sys.path.insert(0, "benchmarks")
from timing import _capture
spec = importlib.util.spec_from_file_location("mlp_gluon_v1", "benchmarks/.runS16F_mlp_gluon_v1.py")
v1 = importlib.util.module_from_spec(spec); spec.loader.exec_module(v1)
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
    for name, mod in (("committed", v1), ("log2 units", mlp_gluon)):
        print("RESULT", json.dumps(dict(rnd=rnd, epilogue=name, us=time(lambda: mod.launch_linear_exp(x, w, shift, e, sums, 70.0)))), flush=True)
    print("RESULT", json.dumps(dict(rnd=rnd, epilogue="cuBLAS mm", us=time(lambda: torch.mm(x, w.t(), out=e)))), flush=True)
