"""Session 28, run 208: can a GEMM that consumes LayerNorm's output take the norm in itself (NOTES
Next GPU run 24), with the row statistics computed by its own consumer warps from the A tiles in
shared memory while the wgmmas run (no producer change, no LayerNorm launch)? The probe kernel is
kernels/mlp_gluon.py with three constexpr flags (runs/logs/run208_fold_gluon.py):
  ROW_STATS  each consumer sums its 128 A rows (thread per row) every K step: mean, rstd
  FOLD       epilogue rstd (acc - mean c1) + c2, acc = s @ (W gamma)^T, c1 = row sums of the rounded
             W gamma, c2 = W beta + b (stats from ROW_STATS, or a buffer without it)
  PLAIN      one output (c_attn's shape), for comparison with cuBLAS
Timed at the step's shapes (CUDA-graph replays of 10 calls, three rounds, min): c_fc (codes) on h
(the tree) against the variants on s; c_attn: cuBLAS (kernels.gemm, tuned) against PLAIN and
PLAIN + stats + fold; the LayerNorm forward that the fold would remove. Errors against float64."""
import importlib.util
import os
import sys

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import gemm, layernorm  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("fold_gluon", os.path.join(os.path.dirname(__file__), ".run208_fold_gluon.py"))
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def launch(a, w, out, aux, bias=None, stats=None, fold=None, plain=False, row_stats=False):
    M, K = a.shape
    N = out.shape[1]
    tiles = triton.cdiv(M, 128) * triton.cdiv(N, 128)
    d = probe._descriptor
    probe._mlp_gluon_kernel[(min(tiles, torch.cuda.get_device_properties(0).multi_processor_count),)](
        d(a, [128, 64]), d(w, [128, 64]), d(out, [64, 128]), d(aux, [64, 128]), d(aux, [64, 128]),
        bias if bias is not None else out, out, stats if stats is not None else out, fold if fold is not None else out,
        M, N, K, GELU_GRAD=False, HAS_BIAS=bias is not None, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False,
        NUM_STAGES=5, CONSUMER_REGS=probe.CONSUMER_REGS, PRODUCER_REGS=probe.PRODUCER_REGS,
        GRAD_CODE=aux.dtype == torch.uint8, PLAIN=plain, ROW_STATS=row_stats, FOLD=fold is not None,
        num_warps=4, maxnreg=probe.MAX_REGS)


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


def rel(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


M, C, H, A = 16384, 768, 3072, 2304
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
# a residual-stream-like s: per-channel scales with a few outlier channels, a per-row offset
scale = torch.ones(C, device=dev); scale[torch.randperm(C)[:6]] = 20.0
s = ((torch.randn(M, C, device=dev) * scale + torch.randn(M, 1, device=dev) * 3.0)).to(bf)
gamma = (1.0 + 0.2 * torch.randn(C, device=dev)).to(bf)
beta = (0.1 * torch.randn(C, device=dev)).to(bf)
w_fc = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device=dev) * 0.1).to(bf)
w_at = (torch.randn(A, C, device=dev) * C ** -0.5).to(bf)
b_at = (torch.randn(A, device=dev) * 0.1).to(bf)


def fold_of(w, b):
    wg = (w.float() * gamma.float()).to(bf)                      # W gamma, rounded: the GEMM's operand
    c1 = wg.float().sum(1)                                        # its row sums as rounded (fp32)
    c2 = w.float() @ beta.float() + b.float()
    return wg.contiguous(), torch.stack([c1, c2]).contiguous()


wg_fc, fold_fc = fold_of(w_fc, b_fc)
wg_at, fold_at = fold_of(w_at, b_at)
h, _, mean, rstd = layernorm.add_layernorm_fwd(s, None, gamma, beta, 1e-5)
stats_in = torch.stack([mean, rstd], 1).contiguous()

# float64 truth
s64 = s.double()
mu = s64.mean(1, keepdim=True)
h64 = (s64 - mu) / torch.sqrt(s64.var(1, unbiased=False, keepdim=True) + 1e-5) * gamma.double() + beta.double()
pre64 = h64 @ w_fc.double().t() + b_fc.double()
gelu64 = torch.nn.functional.gelu(pre64, approximate="tanh")
at64 = h64 @ w_at.double().t() + b_at.double()

out = {k: torch.full((M, H), float("nan"), device=dev, dtype=bf) for k in ("tree", "ptree", "stats", "fold", "statsfold")}
codes = {k: torch.full((M, H), 255, device=dev, dtype=torch.uint8) for k in out}
stats_out = {k: torch.full((M, 2), float("nan"), device=dev) for k in ("stats", "statsfold", "plainstatsfold")}
att = {k: torch.full((M, A), float("nan"), device=dev, dtype=bf) for k in ("cublas", "plain", "plainstatsfold")}
h_ln = torch.empty_like(h)

calls = {
    "fc tree (h)": lambda: tree.launch_linear_gelu(h, w_fc, b_fc, out["tree"], codes["tree"]),
    "fc probe-tree (h)": lambda: launch(h, w_fc, out["ptree"], codes["ptree"], bias=b_fc),
    "fc stats (s, no fold)": lambda: launch(s, w_fc, out["stats"], codes["stats"], bias=b_fc, stats=stats_out["stats"], row_stats=True),
    "fc fold (s, stats given)": lambda: launch(s, wg_fc, out["fold"], codes["fold"], stats=stats_in, fold=fold_fc),
    "fc stats+fold (s)": lambda: launch(s, wg_fc, out["statsfold"], codes["statsfold"], stats=stats_out["statsfold"], fold=fold_fc, row_stats=True),
    "attn cublas (h)": lambda: gemm.matmul(h, w_at.t(), b_at, out=att["cublas"], tuned=True),
    "attn plain (h)": lambda: launch(h, w_at, att["plain"], att["plain"], bias=b_at, plain=True),
    "attn plain stats+fold (s)": lambda: launch(s, wg_at, att["plainstatsfold"], att["plainstatsfold"], stats=stats_out["plainstatsfold"], fold=fold_at, plain=True, row_stats=True),
    "layernorm fwd (s -> h)": lambda: layernorm.add_layernorm_fwd(s, None, gamma, beta, 1e-5),
}
for fn in calls.values():
    fn()
torch.cuda.synchronize()
for k, o in out.items():
    nan = int(torch.isnan(o).sum())
    print(f"CHECK fc {k}: gelu rel err {rel(o, gelu64):.3e}, unwritten {nan}, codes==tree {bool(torch.equal(codes[k], codes['tree']))}", flush=True)
for k, o in att.items():
    print(f"CHECK attn {k}: rel err {rel(o, at64):.3e}, unwritten {int(torch.isnan(o).sum())}", flush=True)
for k, st in stats_out.items():
    print(f"CHECK stats {k}: mean rel err {rel(st[:, 0], mu[:, 0]):.3e}, rstd rel err {rel(st[:, 1], 1 / torch.sqrt(s64.var(1, unbiased=False) + 1e-5)):.3e}", flush=True)

timers = {name: graphed(fn) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:28s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
