"""Session 28, run 209: run 208 found the LayerNorm fold free in the consuming GEMM's epilogue when
the rows' (mean, rstd) are given, the Gluon kernel's one-output mode at cuBLAS's time on c_attn's
shape, and the statistics from the consumer's own A tiles far too slow (+40 us). Where else can they
come from? (a) the producing GEMM (c_proj, residual added in its epilogue) on the Gluon kernel, each
tile's per-row (mean, M2) of s as rounded, merged (Chan) by the consumer's epilogue; (b) a
statistics-only pass over s (L2-resident after the producer). Timed at the step's shapes
(CUDA-graph replays of 10 calls, three rounds, min): the two c_proj shapes on cuBLAS with the
residual as addend (the tree) and on the Gluon kernel with and without the statistics; the
statistics-only pass against the LayerNorm forward; the consumers merging six partials against
given statistics. Errors against float64. Kernel: runs/logs/run209_fold_gluon.py."""
import importlib.util
import os
import sys

import torch
import triton
import triton.language as tl
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import gemm, layernorm  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("fold_gluon", os.path.join(os.path.dirname(__file__), ".run209_fold_gluon.py"))
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def launch(a, w, out, aux, bias=None, stats=None, fold=None, plain=False, residual=None, tile_stats=False,
           partials=0, stats_out=None):
    M, K = a.shape
    N = out.shape[1]
    tiles = triton.cdiv(M, 128) * triton.cdiv(N, 128)
    d = probe._descriptor
    pre = residual if residual is not None else aux
    probe._mlp_gluon_kernel[(min(tiles, torch.cuda.get_device_properties(0).multi_processor_count),)](
        d(a, [128, 64]), d(w, [128, 64]), d(out, [64, 128]), d(aux, [64, 128]), d(pre, [64, 128]),
        bias if bias is not None else out, out, stats if stats is not None else out, fold if fold is not None else out,
        stats_out if stats_out is not None else out,
        M, N, K, GELU_GRAD=False, HAS_BIAS=bias is not None, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False,
        NUM_STAGES=5, CONSUMER_REGS=probe.CONSUMER_REGS, PRODUCER_REGS=probe.PRODUCER_REGS,
        GRAD_CODE=aux.dtype == torch.uint8, PLAIN=plain, ROW_STATS=False, FOLD=fold is not None,
        RESIDUAL=residual is not None, STATS=tile_stats, PARTIALS=partials, num_warps=4, maxnreg=probe.MAX_REGS)


@triton.jit
def _row_stats_kernel(X, Stats, M, C, eps, ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
    """(mean, rstd) of ROWS rows a program, the row in registers (two passes, no second read)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < M) & (cols[None, :] < C)
    x = tl.load(X + rows[:, None].to(tl.int64) * C + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, 1) / C
    d = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, 1) / C + eps)
    tl.store(Stats + rows * 2, mean, mask=rows < M)
    tl.store(Stats + rows * 2 + 1, rstd, mask=rows < M)


def row_stats(x, out, rows, warps):
    M, C = x.shape
    _row_stats_kernel[(triton.cdiv(M, rows),)](x, out, M, C, 1e-5, ROWS=rows, BLOCK_C=triton.next_power_of_2(C),
                                               num_warps=warps)


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
scale = torch.ones(C, device=dev); scale[torch.randperm(C)[:6]] = 20.0
r = ((torch.randn(M, C, device=dev) * scale + torch.randn(M, 1, device=dev) * 3.0)).to(bf)   # the stream
y_at = torch.randn(M, C, device=dev, dtype=bf)            # attention's output
y_h = torch.randn(M, H, device=dev, dtype=bf)             # the MLP's GELU output
w_p1 = (torch.randn(C, C, device=dev) * C ** -0.5).to(bf); b_p1 = (torch.randn(C, device=dev) * 0.1).to(bf)
w_p2 = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf); b_p2 = (torch.randn(C, device=dev) * 0.1).to(bf)
gamma = (1.0 + 0.2 * torch.randn(C, device=dev)).to(bf)
beta = (0.1 * torch.randn(C, device=dev)).to(bf)
w_fc = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf); b_fc = (torch.randn(H, device=dev) * 0.1).to(bf)
w_at = (torch.randn(A, C, device=dev) * C ** -0.5).to(bf); b_at = (torch.randn(A, device=dev) * 0.1).to(bf)


def fold_of(w, b):
    wg = (w.float() * gamma.float()).to(bf)
    return wg.contiguous(), torch.stack([wg.float().sum(1), w.float() @ beta.float() + b.float()]).contiguous()


wg_fc, fold_fc = fold_of(w_fc, b_fc)
wg_at, fold_at = fold_of(w_at, b_at)
NT = C // 128
buf = lambda *shape, dt=bf: torch.full(shape, float("nan") if dt.is_floating_point else 255, device=dev, dtype=dt)  # noqa: E731
s = {k: buf(M, C) for k in ("p1 cublas", "p1 gluon", "p1 gluon+stats", "p2 cublas", "p2 gluon", "p2 gluon+stats")}
parts = {k: buf(M, NT, 2, dt=torch.float32) for k in ("p1", "p2")}
stats = {k: buf(M, 2, dt=torch.float32) for k in ("r2w8", "r4w8", "r8w8", "fc", "at")}
out = {k: buf(M, H) for k in ("tree", "given", "merged")}
codes = {k: buf(M, H, dt=torch.uint8) for k in out}
att = {k: buf(M, A) for k in ("cublas", "merged")}

calls = {
    "p1 cublas+addend (tree)": lambda: gemm.matmul(y_at, w_p1.t(), b_p1, out=s["p1 cublas"], addend=r, tuned=True),
    "p1 gluon+residual": lambda: launch(y_at, w_p1, s["p1 gluon"], s["p1 gluon"], bias=b_p1, plain=True, residual=r),
    "p1 gluon+residual+stats": lambda: launch(y_at, w_p1, s["p1 gluon+stats"], s["p1 gluon+stats"], bias=b_p1, plain=True,
                                              residual=r, tile_stats=True, stats=parts["p1"]),
    "p2 cublas+addend (tree)": lambda: gemm.matmul(y_h, w_p2.t(), b_p2, out=s["p2 cublas"], addend=r, tuned=True),
    "p2 gluon+residual": lambda: launch(y_h, w_p2, s["p2 gluon"], s["p2 gluon"], bias=b_p2, plain=True, residual=r),
    "p2 gluon+residual+stats": lambda: launch(y_h, w_p2, s["p2 gluon+stats"], s["p2 gluon+stats"], bias=b_p2, plain=True,
                                              residual=r, tile_stats=True, stats=parts["p2"]),
    "layernorm fwd (s -> h)": lambda: layernorm.add_layernorm_fwd(s["p1 cublas"], None, gamma, beta, 1e-5),
    "stats pass 2 rows 8 warps": lambda: row_stats(s["p1 cublas"], stats["r2w8"], 2, 8),
    "stats pass 4 rows 8 warps": lambda: row_stats(s["p1 cublas"], stats["r4w8"], 4, 8),
    "stats pass 8 rows 8 warps": lambda: row_stats(s["p1 cublas"], stats["r8w8"], 8, 8),
}
for fn in calls.values():
    fn()
torch.cuda.synchronize()
h_tree, _, mean_t, rstd_t = layernorm.add_layernorm_fwd(s["p1 cublas"], None, gamma, beta, 1e-5)
given = torch.stack([mean_t, rstd_t], 1).contiguous()
calls.update({
    "fc tree (h)": lambda: tree.launch_linear_gelu(h_tree, w_fc, b_fc, out["tree"], codes["tree"]),
    "fc fold, stats given (s)": lambda: launch(s["p1 cublas"], wg_fc, out["given"], codes["given"], stats=given, fold=fold_fc),
    "fc fold, 6 partials (s)": lambda: launch(s["p1 gluon+stats"], wg_fc, out["merged"], codes["merged"], stats=parts["p1"],
                                              fold=fold_fc, partials=NT, stats_out=stats["fc"]),
    "at cublas (h)": lambda: gemm.matmul(h_tree, w_at.t(), b_at, out=att["cublas"], tuned=True),
    "at fold, 6 partials (s)": lambda: launch(s["p1 gluon+stats"], wg_at, att["merged"], att["merged"], stats=parts["p1"],
                                              fold=fold_at, plain=True, partials=NT, stats_out=stats["at"]),
})
for name in ("fc tree (h)", "fc fold, stats given (s)", "fc fold, 6 partials (s)", "at cublas (h)", "at fold, 6 partials (s)"):
    calls[name]()
torch.cuda.synchronize()

for p, y, w, b in (("p1", y_at, w_p1, b_p1), ("p2", y_h, w_p2, b_p2)):
    truth = r.double() + y.double() @ w.double().t() + b.double()
    for k in (f"{p} cublas", f"{p} gluon", f"{p} gluon+stats"):
        print(f"CHECK {k}: s rel err {rel(s[k], truth):.3e}, equal to cublas's {(s[k] == s[f'{p} cublas']).float().mean().item():.4f}, "
              f"unwritten {int(torch.isnan(s[k]).sum())}", flush=True)
s64 = s["p1 gluon+stats"].double()
mu64 = s64.mean(1)
rstd64 = 1 / torch.sqrt(s64.var(1, unbiased=False) + 1e-5)
for k in ("fc", "at"):
    print(f"CHECK merged stats ({k}): mean rel err {rel(stats[k][:, 0], mu64):.3e}, rstd rel err {rel(stats[k][:, 1], rstd64):.3e}, "
          f"unwritten {int(torch.isnan(stats[k]).sum())}", flush=True)
for k in ("r2w8", "r4w8", "r8w8"):
    sc = s["p1 cublas"].double()
    print(f"CHECK stats pass {k}: mean rel err {rel(stats[k][:, 0], sc.mean(1)):.3e}, "
          f"rstd rel err {rel(stats[k][:, 1], 1 / torch.sqrt(sc.var(1, unbiased=False) + 1e-5)):.3e}", flush=True)
h64 = (s64 - mu64[:, None]) * rstd64[:, None] * gamma.double() + beta.double()
gelu64 = torch.nn.functional.gelu(h64 @ w_fc.double().t() + b_fc.double(), approximate="tanh")
print(f"CHECK fc fold 6 partials: gelu rel err {rel(out['merged'], gelu64):.3e}, unwritten {int(torch.isnan(out['merged']).sum())}", flush=True)
print(f"CHECK at fold 6 partials: rel err {rel(att['merged'], h64 @ w_at.double().t() + b_at.double()):.3e}, "
      f"unwritten {int(torch.isnan(att['merged']).sum())}", flush=True)

timers = {name: graphed(fn) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:28s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
