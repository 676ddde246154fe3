"""Session 23, run 172: the Gluon MLP kernel with gelu'(pre) kept as 8-bit codes (GRAD_CODE) against
pre in bf16, at GPT-2's step shapes (M 16384, C 768, H 3072, bf16): the forward (h and pre / codes)
and the backward (dpre = (dy W_proj) * gelu'(.) with the db_fc partials); cuBLAS's plain GEMMs of
the same shapes beside them. CUDA-graph replays of 10 calls, three rounds, min and all."""
import torch
import triton.testing
from fastgpt.kernels import mlp_gluon as G


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
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=400, return_mode="median") / n * 1e3


M, C, H = 16384, 768, 3072
bf = torch.bfloat16
torch.manual_seed(0)
x = torch.randn(M, C, device="cuda", dtype=bf)
w_fc = (torch.randn(H, C, device="cuda") * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device="cuda") * 0.5).to(bf)
w_proj = (torch.randn(C, H, device="cuda") * H ** -0.5).to(bf)
dy = torch.randn(M, C, device="cuda", dtype=bf)
h = torch.empty(M, H, device="cuda", dtype=bf)
pre = torch.empty(M, H, device="cuda", dtype=bf)
code = torch.empty(M, H, device="cuda", dtype=torch.uint8)
dpre = torch.empty(M, H, device="cuda", dtype=bf)
partials = torch.empty(G.partial_rows(M), H, device="cuda", dtype=torch.float32)

G.launch_linear_gelu(x, w_fc, b_fc, h, pre)
h2 = torch.empty_like(h)
G.launch_linear_gelu(x, w_fc, b_fc, h2, code)
torch.cuda.synchronize()
ref_code = G.gelu_grad_encode(pre)
print(f"CHECK h equal {torch.equal(h, h2)}; codes off by >1: {int(((code.int() - ref_code.int()).abs() > 1).sum())}, "
      f"off by 1: {int((code != ref_code).sum())} of {code.numel()}; max code {int(code.max())}", flush=True)
G.launch_matmul_gelu_grad(dy, w_proj, code, dpre, partials)
dh = (dy.float() @ w_proj.float())
want = dh * G.gelu_grad_decode(code)
torch.cuda.synchronize()
rel = ((dpre.float() - want).norm() / want.norm()).item()
p = pre.double().requires_grad_()
g64 = torch.autograd.grad(torch.nn.functional.gelu(p, approximate="tanh").sum(), p)[0]
rel_exact = ((dpre.double() - dh.double() * g64).norm() / (dh.double() * g64).norm()).item()
print(f"CHECK dpre vs decoded codes rel {rel:.2e}; vs exact gelu'(pre) rel {rel_exact:.2e}", flush=True)
del want, dh, p, g64

timers = {
    "fwd pre (bf16)": graphed(lambda: G.launch_linear_gelu(x, w_fc, b_fc, h, pre)),
    "fwd codes (uint8)": graphed(lambda: G.launch_linear_gelu(x, w_fc, b_fc, h, code)),
    "bwd pre (bf16)": graphed(lambda: G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, partials)),
    "bwd codes (uint8)": graphed(lambda: G.launch_matmul_gelu_grad(dy, w_proj, code, dpre, partials)),
    "cuBLAS x @ W_fc^T": graphed(lambda: torch.mm(x, w_fc.t(), out=h)),
    "cuBLAS dy @ W_proj": graphed(lambda: torch.mm(dy, w_proj, out=dpre)),
}
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:22s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
