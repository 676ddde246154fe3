"""Session 24, run 183: the Gluon GEMM's K step and ring depth. Run 182 (Nsight Compute) found the
forward's main loops waiting on their slots' data (29% of their stall samples) while the producer
waited on a full ring: a slot comes back one K step after its wgmmas. BLOCK_K 32 with twice the
slots keeps the ring's bytes and hands each slot back after half the work. Timed at the step's
shapes (CUDA-graph replays of 10 calls, three rounds, min): MLP forward (codes), backward (codes,
bias partials), the LM head's exp GEMM (an 8192-row chunk); outputs checked against BLOCK_K 64's."""
import torch
import triton.testing

from fastgpt.kernels import mlp_gluon as tree


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
bf = torch.bfloat16
torch.manual_seed(0)
x = torch.randn(M, C, device="cuda", dtype=bf)
w_fc = (torch.randn(H, C, device="cuda") * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device="cuda") * 0.5).to(bf)
w_proj = (torch.randn(C, H, device="cuda") * H ** -0.5).to(bf)
dy = torch.randn(M, C, device="cuda", dtype=bf)
wte = (torch.randn(V, C, device="cuda") * 0.02).to(bf)
xl = torch.randn(R, C, device="cuda", dtype=bf)
shift = torch.randn(R, device="cuda") * 0.5
h = torch.empty(M, H, device="cuda", dtype=bf)
code = torch.empty(M, H, device="cuda", dtype=torch.uint8)
dpre = torch.empty(M, H, device="cuda", dtype=bf)
parts = torch.empty(tree.partial_rows(M), H, device="cuda", dtype=torch.float32)
e = torch.empty(R, V, device="cuda", dtype=bf)
sums = torch.empty(R, triton.cdiv(V, tree.BLOCK_N), device="cuda", dtype=torch.float32)


def run_all(bk, stages):
    tree.BLOCK_K = bk
    tree.launch_linear_gelu(x, w_fc, b_fc, h, code, stages=stages)
    tree.launch_matmul_gelu_grad(dy, w_proj, code, dpre, parts, stages=stages)
    tree.launch_linear_exp(xl, wte, shift, e, sums, 70.0, stages=stages)
    torch.cuda.synchronize()
    return [t.clone() for t in (h, code, dpre, parts, e, sums)]


ref = run_all(64, 5)
variants = [(64, 5), (32, 10), (32, 9), (32, 8)]
timers = {}
for bk, st in variants:
    out = run_all(bk, st)
    same = [bool(torch.equal(a, b)) for a, b in zip(out, ref)]
    print(f"CHECK BK {bk} stages {st}: outputs equal to BK 64's {same}", flush=True)
    tree.BLOCK_K = bk
    timers[f"fwd BK{bk} s{st}"] = graphed(lambda st=st: tree.launch_linear_gelu(x, w_fc, b_fc, h, code, stages=st))
    timers[f"bwd BK{bk} s{st}"] = graphed(lambda st=st: tree.launch_matmul_gelu_grad(dy, w_proj, code, dpre, parts, stages=st))
    timers[f"exp BK{bk} s{st}"] = graphed(lambda st=st: tree.launch_linear_exp(xl, wte, shift, e, sums, 70.0, stages=st), n=3)
tree.BLOCK_K = 64
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in sorted(results.items()):
    print(f"RESULT {name:16s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
