"""Session 29, run 224: where a consumer warpgroup's time goes in the MLP forward (c_fc, GELU + codes),
read from the kernel itself: %clock64 stamps per tile (.run224_timed_*.py, made from the tree's
kernel and run 223's logistic variant by adding four stamps): c0 tile start (bias in registers),
c1 the turn taken (K loop starts), c2 the accumulators ready, c3 the epilogue's stores issued.
Per tile: turn wait c1 - c0, K loop c2 - c1, epilogue c3 - c2; per SM, the period between
successive K loop starts (any consumer): where it exceeds the K loop, the tensor cores waited for
an epilogue. Prediction (run 222, K = 64: ~4.7 us a tile a warpgroup with both in epilogues): the
epilogue ~3-5 us against a K loop of ~4.5-5 us at K = 768, and the K-loop period above the K loop
by the unhidden ~2 us a tile. Also run 223's timing of the logistic GELU (its script failed on
freed inputs held by graphs). CUDA-graph replays of 10 calls, 4 alternating rounds."""
import importlib.util
import os
import sys

import numpy as np
import torch
import triton
import triton.testing

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sig = load("sig", ".run223_sig_gluon.py")
timed = {"tree": load("timed_tree", ".run224_timed_tree.py"), "logistic": load("timed_log", ".run224_timed_logistic.py")}


def launch_timed(mod, x, w, b, h, code, clocks, nprog):
    M, K = x.shape
    N = h.shape[1]
    d = mod._descriptor
    mod._mlp_gluon_kernel[(nprog,)](
        d(x, [128, 64]), d(w, [128, 64]), d(h, [64, 128]), d(code, [64, 128]), d(code, [64, 128]), b, h, M, N, K,
        GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False, NUM_STAGES=5,
        CONSUMER_REGS=mod.CONSUMER_REGS, PRODUCER_REGS=mod.PRODUCER_REGS, GRAD_CODE=True, Clocks=clocks, TIMING=True,
        num_warps=4, maxnreg=mod.MAX_REGS)


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
nsm = torch.cuda.get_device_properties(0).multi_processor_count
torch.manual_seed(0)
keep, timers = [], {}
for C in (768, 64):
    x = torch.randn(M, C, device=dev, dtype=bf)
    w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
    b = (torch.randn(H, device=dev) * 0.5).to(bf)
    tiles = triton.cdiv(M, 128) * triton.cdiv(H, 128)
    nprog = min(tiles, nsm)
    for name in ("tree", "logistic"):
        h = torch.empty(M, H, device=dev, dtype=bf)
        code = torch.empty(M, H, device=dev, dtype=torch.uint8)
        clocks = torch.zeros(tiles * 4, device=dev, dtype=torch.int64)
        keep.append((x, w, b, h, code, clocks))
        mod = tree if name == "tree" else sig
        timers[f"K={C:3d} {name}"] = graphed(lambda mod=mod, x=x, w=w, b=b, h=h, code=code: mod.launch_linear_gelu(x, w, b, h, code))
        fn = lambda name=name, x=x, w=w, b=b, h=h, code=code, clocks=clocks, nprog=nprog: launch_timed(
            timed[name], x, w, b, h, code, clocks, nprog)
        timers[f"K={C:3d} {name} +clocks"] = graphed(fn)
        href, cref = torch.empty_like(h), torch.empty_like(code)
        mod.launch_linear_gelu(x, w, b, href, cref)
        clocks.zero_(); fn(); torch.cuda.synchronize()
        print(f"CHECK K={C} {name} timed copy equals untimed: h {bool(torch.equal(h, href))} codes {bool(torch.equal(code, cref))}",
              flush=True)
        us = timers[f"K={C:3d} {name} +clocks"]()
        c = clocks.view(-1, 4).cpu().numpy().astype(np.int64)
        t = np.arange(tiles)
        pid, idx = t % nprog, t // nprog
        span = np.array([c[pid == p, 3].max() - c[pid == p, 0].min() for p in range(nprog)])
        mhz = np.median(span) / us
        cyc = lambda v: f"{np.median(v):7.0f} cyc {np.median(v) / mhz:6.2f} us (mean {np.mean(v) / mhz:6.2f})"
        wait, main, epi = c[:, 1] - c[:, 0], c[:, 2] - c[:, 1], c[:, 3] - c[:, 2]
        # successive K-loop starts on one SM (tiles idx, idx + 1 alternate consumers)
        nxt = t + nprog
        ok = nxt < tiles
        period = c[nxt[ok], 1] - c[t[ok], 1]
        gap_same = c[(t + 2 * nprog)[t + 2 * nprog < tiles], 0] - c[t[t + 2 * nprog < tiles], 3]
        print(f"RESULT K={C} {name}: kernel {us:.1f} us, SM clock ~{mhz:.0f} MHz (span/kernel)", flush=True)
        print(f"RESULT K={C} {name}:   turn wait  {cyc(wait)}", flush=True)
        print(f"RESULT K={C} {name}:   K loop     {cyc(main)}", flush=True)
        print(f"RESULT K={C} {name}:   epilogue   {cyc(epi)}", flush=True)
        print(f"RESULT K={C} {name}:   K-loop start period {cyc(period)}", flush=True)
        print(f"RESULT K={C} {name}:   epilogue end -> same consumer's next tile start {cyc(gap_same)}", flush=True)
        np.save(os.path.join(os.environ.get("R", "."), f"clocks-K{C}-{name}.npy"), c)
results = {}
for rnd in range(4):
    for name, tm in timers.items():
        results.setdefault(name, []).append(tm())
for name, ts in results.items():
    print(f"RESULT {name:24s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} median "
          f"{sorted(ts)[len(ts) // 2]:.1f} us", flush=True)
