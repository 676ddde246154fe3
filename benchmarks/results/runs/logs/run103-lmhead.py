"""exp (run 103): the exp-logits LM head at the step's shape (16384 x 768 x 50304 bf16): the whole op
against the loss-kernel path at 4096- and 8192-row chunks, and one chunk's GEMM alone (cuBLAS mm
against the Gluon EXP_SHIFT kernel, ping-pong and cooperative); CUDA-graph replay medians."""
import json, sys
import torch
from triton.testing import do_bench
import fastgpt.kernels.cross_entropy as CE
from fastgpt.kernels import mlp_gluon
sys.path.insert(0, "benchmarks")
from timing import _capture
torch.manual_seed(0)
n, C, V = 16384, 768, 50304
x = torch.randn(n, C, device="cuda").to(torch.bfloat16)
w = (torch.randn(V, C, device="cuda") * 0.02).to(torch.bfloat16)
t = torch.randint(0, 50257, (n,), device="cuda")
def time(fn, reps=3):
    fn(); torch.cuda.synchronize()
    g = _capture(fn)
    return [round(do_bench(g.replay, warmup=10, rep=300, return_mode="median"), 3) for _ in range(reps)]
for chunk in (4096, 8192):
    for mode in (True, False):
        ms = time(lambda: CE.linear_cross_entropy_fwd_bwd(x, w, t, -100, torch.bfloat16, True, True, chunk, exp_logits=mode))
        print("RESULT", json.dumps(dict(op="lm head + loss", chunk=chunk, path="exp-logits" if mode else "loss kernel", ms=ms)), flush=True)
rows = 4096
xc = x[:rows]
e = torch.empty(rows, V, device="cuda", dtype=torch.bfloat16)
sums = torch.empty(rows, V // 128 + 1, device="cuda")
shift = torch.zeros(rows, device="cuda")
print("RESULT", json.dumps(dict(op="chunk GEMM", kernel="cuBLAS mm", us=[m * 1000 for m in time(lambda: torch.mm(xc, w.t(), out=e))])), flush=True)
for sched, stages in (("pingpong", None), ("pingpong", 4), ("cooperative", None)):
    try:
        us = [m * 1000 for m in time(lambda: mlp_gluon.launch_linear_exp(xc, w, shift, e, sums, 70.0, schedule=sched, stages=stages))]
    except Exception as ex:
        us = repr(ex)[:200]
    print("RESULT", json.dumps(dict(op="chunk GEMM", kernel=f"gluon exp {sched} stages={stages}", us=us)), flush=True)
from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_
loss = torch.empty(rows, device="cuda"); nv = torch.tensor(rows, device="cuda")
torch.mm(xc, w.t(), out=e)
print("RESULT", json.dumps(dict(op="chunk loss pass", kernel="gluon loss kernel", us=[m * 1000 for m in time(lambda: cross_entropy_fwd_bwd_(e, t[:rows], loss, nv, -100, True))])), flush=True)
