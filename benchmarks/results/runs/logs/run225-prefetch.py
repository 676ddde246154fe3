"""Session 29, run 225: the Gluon GEMMs' per-tile vectors loaded ahead (kernels/mlp_gluon.py, this
session): the forward's bias for the next tile during this tile's epilogue, the LM head's exp
shift at the tile's start (before: the bias load between the epilogue and the next K loop, run
224: ~1300 cycles a tile on the critical path; the shift loaded at each half's epilogue start).
(1) the kernels against the previous tree's (.run225_before_gluon.py): c_fc's forward with codes
(16384 x 768 -> 3072) and the LM head's exp chunk (8192 x 768 -> 50304), outputs compared bitwise,
CUDA-graph replays, six alternating rounds; (2) run 224's clock stamps on both forwards; (3) the
graphed GPT-2 step on benchmarks/ab_step, the old launchers patched in as the variant (sustained
rounds alternating, an A/A control). Prediction: forward -8 to -10 us a launch (K-loop period 8490
-> ~7800 cycles), exp chunk -20 to -100 us, the step -0.1 to -0.3 ms.

    ROUNDS=2 SUSTAIN_S=16 python .run225-prefetch.py  (from benchmarks/)
"""
import importlib.util
import os
import statistics
import sys
from unittest import mock

import numpy as np
import torch
import triton
import triton.testing

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ab_step import Variant, compare  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


old = load("before_gluon", ".run225_before_gluon.py")


def graphed(fn, n=3):
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


def kernel_ab():
    bf, dev = torch.bfloat16, "cuda"
    torch.manual_seed(0)
    M, C, H = 16384, 768, 3072
    x = torch.randn(M, C, device=dev, dtype=bf)
    w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
    b = (torch.randn(H, device=dev) * 0.5).to(bf)
    hs = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(2)]
    cs = [torch.full((M, H), 255, device=dev, dtype=torch.uint8) for _ in range(2)]
    R, V = 8192, 50304
    xl = torch.randn(R, C, device=dev, dtype=bf)
    wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
    shift = torch.randn(R, device=dev) * 0.5
    nblk = triton.cdiv(V, 128)
    es = [torch.full((R, V), float("nan"), device=dev, dtype=bf) for _ in range(2)]
    ss = [torch.full((R, nblk), float("nan"), device=dev) for _ in range(2)]
    calls = {"fwd c_fc, prefetch (tree)": lambda: tree.launch_linear_gelu(x, w, b, hs[0], cs[0]),
             "fwd c_fc, before": lambda: old.launch_linear_gelu(x, w, b, hs[1], cs[1]),
             "exp chunk, prefetch (tree)": lambda: tree.launch_linear_exp(xl, wte, shift, es[0], ss[0], 70.0),
             "exp chunk, before": lambda: old.launch_linear_exp(xl, wte, shift, es[1], ss[1], 70.0)}
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    print(f"CHECK fwd h equal {bool(torch.equal(hs[0], hs[1]))}, codes equal {bool(torch.equal(cs[0], cs[1]))}, "
          f"unwritten {int(torch.isnan(hs[0]).sum())} {int((cs[0] == 255).sum())}", flush=True)
    print(f"CHECK exp e equal {bool(torch.equal(es[0], es[1]))}, sums equal {bool(torch.equal(ss[0], ss[1]))}, "
          f"unwritten {int(torch.isnan(es[0]).sum())} {int(torch.isnan(ss[0]).sum())}", flush=True)
    timers = {name: graphed(fn) for name, fn in calls.items()}
    results = {}
    for rnd in range(6):
        for name, t in timers.items():
            results.setdefault(name, []).append(t())
    for name, ts in results.items():
        print(f"RESULT {name:28s} " + " ".join(f"{v:7.1f}" for v in ts)
              + f"   min {min(ts):.1f} median {statistics.median(ts):.1f} us", flush=True)
    # (2) clock stamps of the forward (run 224's instrumentation), before and after
    nprog = min(triton.cdiv(M, 128) * triton.cdiv(H, 128), torch.cuda.get_device_properties(0).multi_processor_count)
    tiles = triton.cdiv(M, 128) * triton.cdiv(H, 128)
    for name, file in (("prefetch", ".run225_timed_new.py"), ("before", ".run225_timed_before.py")):
        mod = load("timed_" + name, file)
        clocks = torch.zeros(tiles * 4, device=dev, dtype=torch.int64)
        d = mod._descriptor
        for _ in range(3):
            mod._mlp_gluon_kernel[(nprog,)](
                d(x, [128, 64]), d(w, [128, 64]), d(hs[1], [64, 128]), d(cs[1], [64, 128]), d(cs[1], [64, 128]), b, hs[1],
                M, H, C, GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False, NUM_STAGES=5,
                CONSUMER_REGS=mod.CONSUMER_REGS, PRODUCER_REGS=mod.PRODUCER_REGS, GRAD_CODE=True, Clocks=clocks,
                TIMING=True, num_warps=4, maxnreg=mod.MAX_REGS)
        torch.cuda.synchronize()
        c = clocks.view(-1, 4).cpu().numpy().astype(np.int64)
        t = np.arange(tiles)
        period = c[t[t + nprog < tiles] + nprog, 1] - c[t[t + nprog < tiles], 1]
        nxt = t[t + 2 * nprog < tiles]
        gap = c[nxt + 2 * nprog, 0] - c[nxt, 3]
        med = lambda v: f"{np.median(v):6.0f}"  # noqa: E731
        print(f"RESULT clocks {name:9s} (cycles, medians): turn wait {med(c[:, 1] - c[:, 0])} K loop {med(c[:, 2] - c[:, 1])} "
              f"epilogue {med(c[:, 3] - c[:, 2])} epilogue end -> next tile start {med(gap)} K-loop start period {med(period)}",
              flush=True)


def main():
    kernel_ab()
    before = lambda: mock.patch.multiple(tree, launch_linear_gelu=old.launch_linear_gelu,  # noqa: E731
                                         launch_linear_exp=old.launch_linear_exp)
    compare([Variant("tree"), Variant("before", before)],
            rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
