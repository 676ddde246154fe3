"""Run 140: the residual add in the projection GEMM's epilogue (cuBLASLt C = residual, D = s) and a
plain LayerNorm after it, against the GEMM and the add+LayerNorm kernel (x_bias) as the step runs them.
Each chain replayed in a CUDA graph (10 calls), do_bench median."""
import torch, triton
from fastgpt.kernels import gemm, layernorm as ln

torch.manual_seed(0)
M, C, dt = 16384, 768, torch.bfloat16
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__)


def graph_us(fn, reps=10):
    fn(); torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    out = []
    for _ in range(3):
        out.append(triton.testing.do_bench(g.replay, warmup=100, rep=600, return_mode="median") / reps * 1000)
    return out


rows = []
for K in (768, 3072):
    a = torch.randn(M, K, device="cuda", dtype=dt)
    w = (torch.randn(C, K, device="cuda") * 0.02).to(dt)
    r = torch.randn(M, C, device="cuda", dtype=dt)
    xb = (torch.randn(C, device="cuda") * 0.1).to(dt)
    lw = (1 + 0.1 * torch.randn(C, device="cuda")).to(dt)
    lb = (0.1 * torch.randn(C, device="cuda")).to(dt)
    wt = w.t()
    cases = {
        "gemm plain": lambda: gemm.matmul(a, wt, tuned=True),
        "gemm +res+bias": lambda: gemm.matmul(a, wt, xb, addend=r, tuned=True),
        "gemm +res": lambda: gemm.matmul(a, wt, addend=r, tuned=True),
        "LN add(res,xbias)": lambda: ln.add_layernorm_fwd(r, r, lw, lb, 1e-5, x_bias=xb),
        "LN plain": lambda: ln.add_layernorm_fwd(r, None, lw, lb, 1e-5),
        "now: gemm; LN(add)": lambda: ln.add_layernorm_fwd(gemm.matmul(a, wt, tuned=True), r, lw, lb, 1e-5, x_bias=xb),
        "new: gemm(+res+bias); LN": lambda: ln.add_layernorm_fwd(gemm.matmul(a, wt, xb, addend=r, tuned=True), None, lw, lb, 1e-5),
    }
    # correctness: s and y of the two chains
    y0, s0, _, _ = ln.add_layernorm_fwd(gemm.matmul(a, wt, tuned=True), r, lw, lb, 1e-5, x_bias=xb)
    s1 = gemm.matmul(a, wt, xb, addend=r, tuned=True)
    y1, _, _, _ = ln.add_layernorm_fwd(s1, None, lw, lb, 1e-5)
    ref = (a.double() @ w.double().t() + xb.double() + r.double())
    err = lambda t: ((t.double() - ref).norm() / ref.norm()).item()
    print(f"K={K}: s rel err now {err(s0):.2e} new {err(s1):.2e}; y max diff {(y0.float()-y1.float()).abs().max().item():.3e}")
    for name, fn in cases.items():
        t = graph_us(fn)
        rows.append((K, name, t))
        print(f"K={K:5d} {name:28s} " + " ".join(f"{x:7.2f}" for x in t), flush=True)
for p in gemm.tuned_problems():
    print({k: p[k] for k in ("M", "K", "N", "bias", "beta", "choice", "candidates")},
          {k: round(v * 1000, 1) for k, v in (p["times"] or {}).items()})
