"""Is a warp-specialised ping-pong Gluon kernel (kernels/mlp_gluon.py) faster for the MLP's GELU GEMMs?

Times, at the GPT-2 step's shapes (M = 16384 tokens, C = 768, H = 3072, bf16), the c_fc forward
(pre and h stored) and the backward's dpre = (dy @ W_proj) * gelu'(pre) with the bias partials
(h kept from the forward, as MLPOptions.save_gelu does), beside kernels/mlp.py's Triton kernels and cuBLAS (+ our elementwise pass), after
checking the Gluon kernel against an fp32 reference at four shapes (relative error).

    python benchmarks/probe_gluon_mlp.py        # writes $OUT/gluon_probe.json (or /tmp)
"""
import json, os, traceback
import torch, triton
import torch.nn.functional as F
from triton.testing import do_bench
import fastgpt.kernels.mlp as Mk
import fastgpt.kernels.mlp_gluon as G
from fastgpt.testing import rel_error
torch.manual_seed(0)
dev = "cuda"
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, "gluon", G.HAVE_GLUON, G.available(), flush=True)
triton.set_allocator(Mk._tma_allocator)
rows = []
def bench(name, fn, flops):
    try:
        ms = do_bench(fn, warmup=50, rep=300, return_mode="median")
    except Exception as e:
        print(f"{name}: FAIL {e!r}"[:400], flush=True); return
    rows.append(dict(name=name, ms=ms, tflops=flops / ms / 1e9))
    print(f"{name:58s} {ms*1e3:8.1f} us {flops/ms/1e9:6.0f} TFLOP/s", flush=True)

def check(M, C, H, schedule):
    x = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
    w_fc = (torch.randn(H, C, device=dev) * 0.05).bfloat16()
    b_fc = (torch.randn(H, device=dev) * 0.1).bfloat16()
    w_proj = (torch.randn(C, H, device=dev) * 0.03).bfloat16()
    dy = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
    pre_ref = x.float() @ w_fc.float().t() + b_fc.float()
    h_ref = F.gelu(pre_ref, approximate="tanh")
    h, pre = gluon_linear_gelu(x, w_fc, b_fc, schedule=schedule)
    torch.cuda.synchronize()
    e1, e2 = rel_error(h, h_ref), rel_error(pre, pre_ref)
    preb = pre_ref.bfloat16()
    p32 = preb.float()
    dh_ref = dy.float() @ w_proj.float()
    t = torch.tanh(0.7978845608028654 * (p32 + 0.044715 * p32 ** 3))
    s = 0.5 * (1 + t)
    grad = s + p32 * 0.5 * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * p32 * p32)
    dpre_ref = dh_ref * grad
    dpre, part = gluon_gelu_grad(dy, w_proj, preb, schedule=schedule)
    torch.cuda.synchronize()
    e3, e5 = rel_error(dpre, dpre_ref), rel_error(part.sum(0), dpre_ref.sum(0))
    ok = max(e1, e2, e3, e5) < 2e-2
    print(f"check {schedule} M={M} C={C} H={H}: h {e1:.2e} pre {e2:.2e} dpre {e3:.2e} db {e5:.2e} {'OK' if ok else 'FAIL'}", flush=True)
    return dict(schedule=schedule, M=M, C=C, H=H, h=e1, pre=e2, dpre=e3, db=e5, ok=ok)

def gluon_linear_gelu(x, w, b, stages=None, alloc=None, schedule=None):
    alloc = alloc or nan     # checks: NaN-filled outputs; timings: torch.empty (no fill timed)
    h, pre = alloc(x.shape[0], w.shape[0]), alloc(x.shape[0], w.shape[0])
    G.launch_linear_gelu(x, w, b, h, pre, schedule=schedule, stages=stages)
    return h, pre


def gluon_gelu_grad(dy, w, pre, bias_grad=True, alloc=None, schedule=None):
    alloc = alloc or nan
    dpre = alloc(*pre.shape)
    part = torch.empty(G.partial_rows(pre.shape[0], schedule), pre.shape[1], device=dev) if bias_grad else None
    G.launch_matmul_gelu_grad(dy, w, pre, dpre, part, schedule=schedule)
    return dpre, part


def nan(*shape):
    return torch.full(shape, float("nan"), device=dev, dtype=torch.bfloat16)


def empty(*shape):
    return torch.empty(shape, device=dev, dtype=torch.bfloat16)


checks = []
for schedule in G.BLOCK_M:
    for shape in [(16384, 768, 3072), (1000, 200, 264), (129, 64, 136), (1, 768, 3072)]:
        try:
            checks.append(check(*shape, schedule))
        except Exception:
            traceback.print_exc(); checks.append(dict(schedule=schedule, shape=shape, ok=False, error=traceback.format_exc()[-500:]))

M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
w_fc = (torch.randn(H, C, device=dev) * 0.05).bfloat16()
b_fc = (torch.randn(H, device=dev) * 0.1).bfloat16()
w_proj = (torch.randn(C, H, device=dev) * 0.03).bfloat16()
dy = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
pre = (x @ w_fc.t() + b_fc)
fl = 2 * M * C * H
bench("cublas mm x@Wfc^T (GEMM only)", lambda: torch.mm(x, w_fc.t()), fl)
bench("cublas addmm + F.gelu tanh", lambda: F.gelu(torch.addmm(b_fc, x, w_fc.t()), approximate="tanh"), fl)
bench("triton linear_gelu store_pre (current)", lambda: Mk.linear_gelu(x, w_fc, b_fc, store_pre=True), fl)
for schedule in G.BLOCK_M:
    for st in (G.STAGES[schedule] - 1, G.STAGES[schedule]):     # the ring's depth against one slot less
        bench(f"gluon {schedule} linear_gelu stages={st}",
              lambda: gluon_linear_gelu(x, w_fc, b_fc, stages=st, alloc=empty, schedule=schedule), fl)
bench("cublas dh = dy @ Wproj (GEMM only)", lambda: torch.mm(dy, w_proj), fl)
bench("cublas dh + triton gelu_bwd (the default: bias partials, h kept)", lambda: Mk.gelu_bwd(torch.mm(dy, w_proj), pre, bias_grad=True, overwrite_dh=True), fl)
bench("triton matmul_gelu_grad (fused)", lambda: Mk.matmul_gelu_grad(dy, w_proj, pre, bias_grad=True), fl)
for schedule in G.BLOCK_M:
    bench(f"gluon {schedule} matmul_gelu_grad", lambda: gluon_gelu_grad(dy, w_proj, pre, alloc=empty, schedule=schedule), fl)
    bench(f"gluon {schedule} matmul_gelu_grad no bias grad",
          lambda: gluon_gelu_grad(dy, w_proj, pre, bias_grad=False, alloc=empty, schedule=schedule), fl)
bench("matmul_gelu_grad kernel='gluon' (MLPOptions(gelu_grad='gluon'), partials summed)",
      lambda: Mk.matmul_gelu_grad(dy, w_proj, pre, bias_grad=True, kernel="gluon"), fl)
bench("triton linear_gelu kernel='gluon' (the MLPOptions(fc='gluon') path)",
      lambda: Mk.linear_gelu(x, w_fc, b_fc, store_pre=True, kernel="gluon"), fl)
out = os.environ.get("OUT", "/tmp")
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               checks=checks, rows=rows), open(f"{out}/gluon_probe.json", "w"), indent=1, default=str)
print("| variant | us | TFLOP/s |\n|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['ms']*1e3:.1f} | {r['tflops']:.0f} |")
