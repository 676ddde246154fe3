"""Session 23, run 175: the Gluon MLP kernel's two schedules with gelu'(pre) kept as codes, at GPT-2's
step shapes (M 16384, C 768, H 3072, bf16). Ping-pong (the default: a 128-row tile per warpgroup,
each epilogue under the other's main loop) against cooperative ((256, 128) tiles, the B slot shared:
a third less operand traffic, both epilogues at once), for the forward (h and codes) and the
backward (dpre with the db_fc partials), whose epilogue the codes made lighter (no tanh).
CUDA-graph replays of 10 calls, three rounds."""
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
outs = {}
timers = {}
for schedule in ("pingpong", "cooperative"):
    h = torch.empty(M, H, device="cuda", dtype=bf)
    code = torch.empty(M, H, device="cuda", dtype=torch.uint8)
    dpre = torch.empty(M, H, device="cuda", dtype=bf)
    partials = torch.empty(G.partial_rows(M, schedule), H, device="cuda", dtype=torch.float32)
    G.launch_linear_gelu(x, w_fc, b_fc, h, code, schedule=schedule)
    G.launch_matmul_gelu_grad(dy, w_proj, code, dpre, partials, schedule=schedule)
    torch.cuda.synchronize()
    outs[schedule] = (h, code, dpre, partials.sum(0))
    timers[f"fwd {schedule}"] = graphed(lambda s=schedule, h=h, c=code: G.launch_linear_gelu(x, w_fc, b_fc, h, c, schedule=s))
    timers[f"bwd {schedule}"] = graphed(
        lambda s=schedule, c=code, d=dpre, p=partials: G.launch_matmul_gelu_grad(dy, w_proj, c, d, p, schedule=s))
for i, what in enumerate(("h", "code", "dpre", "db")):
    a, b = outs["pingpong"][i].float(), outs["cooperative"][i].float()
    print(f"CHECK {what}: max |pingpong - cooperative| {(a - b).abs().max().item():.3e}", flush=True)
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:18s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
