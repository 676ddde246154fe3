"""Session 28, run 214: run 213's anatomy for the Gluon kernel's two other uses: the LM head's exp GEMM
(an 8192-row chunk x 768 -> 50304, exp(acc - shift) + row sums) and the MLP backward's GELU-gradient
GEMM (16384 x 768 -> 3072, codes, bias partials): each against the same kernel with one plain output
(PLAIN) and against cuBLAS's GEMM of the shape (kernels.gemm, tuned); the exp GEMM also with
NO_FILL and NO_STORE. Kernel: runs/logs/run214_anatomy_gluon.py (run 213's, NO_STORE also before
the exp epilogue). CUDA-graph replays (10 calls, 3 for the exp GEMM), three alternating rounds, min."""
import importlib.util
import os
import sys

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import gemm  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("anat", os.path.join(os.path.dirname(__file__), ".run214_anatomy_gluon.py"))
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def launch(a, w, out, b_nk, vector=None, sums=None, exp=False, plain=False, no_fill=False, no_store=False, scratch=None):
    M, K = a.shape
    N = out.shape[1]
    tiles = triton.cdiv(M, 128) * triton.cdiv(N, 128)
    d = probe._descriptor
    probe._mlp_gluon_kernel[(min(tiles, torch.cuda.get_device_properties(0).multi_processor_count),)](
        d(a, [128, 64]), d(w, [128, 64] if b_nk else [64, 128]), d(out, [64, 128]), d(out, [64, 128]), d(out, [64, 128]),
        vector if vector is not None else out, sums if sums is not None else out, scratch, out, M, N, K,
        GELU_GRAD=False, HAS_BIAS=False, BIAS_GRAD=False, B_NK=b_nk, COOPERATIVE=False, NUM_STAGES=5,
        CONSUMER_REGS=probe.CONSUMER_REGS, PRODUCER_REGS=probe.PRODUCER_REGS, EXP_SHIFT=exp, CAP=70.0 if exp else 0.0,
        GRAD_CODE=False, PLAIN=plain, NO_FILL=no_fill, NO_STORE=no_store, num_warps=4, maxnreg=probe.MAX_REGS)


def graphed(fn, n=10):
    fn(); torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=300, return_mode="median") / n * 1e3


M, C, H, V, R = 16384, 768, 3072, 50304, 8192
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
xl = torch.randn(R, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
shift = torch.randn(R, device=dev) * 0.5
e = torch.empty(R, V, device=dev, dtype=bf)
e2 = torch.empty(R, V, device=dev, dtype=bf)
sums = torch.empty(R, triton.cdiv(V, 128), device=dev)
sums2 = torch.empty_like(sums)
dy = torch.randn(M, C, device=dev, dtype=bf)
w_proj = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf)
code = torch.randint(0, 255, (M, H), device=dev, dtype=torch.uint8)
dpre = torch.empty(M, H, device=dev, dtype=bf)
dpre2 = torch.empty(M, H, device=dev, dtype=bf)
parts = torch.empty(tree.partial_rows(M), H, device=dev)
scratch = torch.zeros(1024, device=dev)
calls = {
    "exp tree": lambda: tree.launch_linear_exp(xl, wte, shift, e, sums, 70.0),
    "exp probe copy": lambda: launch(xl, wte, e2, True, shift, sums2, exp=True, scratch=scratch),
    "exp NO_FILL": lambda: launch(xl, wte, e2, True, shift, sums2, exp=True, no_fill=True, scratch=scratch),
    "exp NO_STORE": lambda: launch(xl, wte, e2, True, shift, sums2, exp=True, no_store=True, scratch=scratch),
    "exp-shape PLAIN": lambda: launch(xl, wte, e2, True, plain=True, scratch=scratch),
    "exp-shape PLAIN NO_FILL": lambda: launch(xl, wte, e2, True, plain=True, no_fill=True, scratch=scratch),
    "exp-shape cuBLAS": lambda: gemm.matmul(xl, wte.t(), out=e2, tuned=True),
    "bwd tree": lambda: tree.launch_matmul_gelu_grad(dy, w_proj, code, dpre, parts),
    "bwd-shape PLAIN": lambda: launch(dy, w_proj, dpre2, False, plain=True, scratch=scratch),
    "bwd-shape cuBLAS": lambda: gemm.matmul(dy, w_proj, out=dpre2, tuned=True),
}
for fn in calls.values():
    fn()
torch.cuda.synchronize()
launch(xl, wte, e2, True, shift, sums2, exp=True, scratch=scratch)
torch.cuda.synchronize()
print(f"CHECK exp probe copy equals the tree: e {bool(torch.equal(e, e2))}, sums {bool(torch.equal(sums, sums2))}", flush=True)
timers = {name: graphed(fn, n=3 if name.startswith("exp") else 10) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:24s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
