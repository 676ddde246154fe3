"""Session 29, run 223, part 2: the MLP forward (c_fc, GELU + codes) with the GELU's tanh as the
logistic 1 / (1 + 2^(-2 log2(e) u)) (ex2 + rcp, .run223_sig_gluon.py) against the tree's tanh.approx.
Prediction, if part 1 finds tanh at a quarter of ex2's rate: the epilogue's SFU time halves, so
K = 64 (the epilogue sets the time) drops by up to ~25 us of run 222's ~55 us arithmetic, and K =
768 by up to ~10 of its ~23 unhidden; if tanh runs at ex2's rate, the variant is slower (twice the
SFU ops). Errors: h against float64 (relative, norm-wise and largest), codes against
gelu_grad_encode of the fp32 pre-activation. CUDA-graph replays of 10 calls, 4 alternating rounds."""
import importlib.util
import os
import sys

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("sig", os.path.join(os.path.dirname(__file__), ".run223_sig_gluon.py"))
sig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sig)


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


M, H = 16384, 3072
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
timers = {}
for C in (768, 64):
    x = torch.randn(M, C, device=dev, dtype=bf)
    w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
    b = (torch.randn(H, device=dev) * 0.5).to(bf)
    outs = {}
    for name, mod in (("tree", tree), ("logistic", sig)):
        h = torch.full((M, H), float("nan"), device=dev, dtype=bf)
        code = torch.full((M, H), 255, device=dev, dtype=torch.uint8)
        mod.launch_linear_gelu(x, w, b, h, code)
        torch.cuda.synchronize()
        outs[name] = (h, code)
        timers[f"K={C:3d} {name}"] = graphed(lambda mod=mod, h=h, code=code: mod.launch_linear_gelu(x, w, b, h, code))
    pre64 = x.double() @ w.double().t() + b.double()
    ref = torch.nn.functional.gelu(pre64, approximate="tanh")
    ref_code = tree.gelu_grad_encode((x.float() @ w.float().t() + b.float()))
    for name, (h, code) in outs.items():
        err = (h.double() - ref)
        print(f"CHECK K={C} {name:8s} h rel err norm {(err.norm() / ref.norm()).item():.3e} "
              f"max {(err.abs().max() / ref.abs().max()).item():.3e} nan {int(torch.isnan(h).sum())}; "
              f"codes equal {(code == ref_code).double().mean().item():.6f} "
              f"max|d| {int((code.int() - ref_code.int()).abs().max())} 255s {int((code == 255).sum())}", flush=True)
    print(f"CHECK K={C} h tree vs logistic equal frac {(outs['tree'][0] == outs['logistic'][0]).double().mean().item():.5f}",
          flush=True)
results = {}
for rnd in range(4):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:16s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} median "
          f"{sorted(ts)[len(ts) // 2]:.1f} us", flush=True)
