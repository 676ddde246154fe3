"""Session 29, run 230: does the MLP forward's K loop wait for operand data once the gap before it is
gone? Run 225 loaded the bias a tile ahead: the gap between a consumer's epilogue and its next K loop
fell from ~1370 to ~610 cycles, but the K loop grew from ~7255 to ~8478, the period unchanged. A
fifth stamp a tile (`runs/logs/run230_timed_k.diff`, made by run230-make-timed-k.py): the K loop's
summed waits on the slots' `ready` barriers; and six in the epilogue (per half: before the code's
store, after it, after h's), which also stop the compiler from hoisting the second half's
arithmetic above the first half's stores (offline SASS): the timed kernels are timed too.
Prediction: in the tree the K loop waits little (the producer is ahead while the consumer is in its
epilogue + gap), with the bias ahead ~1200 cycles more (the K loop's growth).
Also the bias-ahead kernel fixed (the next tile clamped to the grid; .run230_ahead_gluon.py) timed
against the tree (c_fc's forward, 16384 x 768 -> 3072 with codes), outputs compared."""
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


ahead = load("ahead", ".run230_ahead_gluon.py")
timed = {"tree": load("timed_tree", ".run230_timed_tree.py"), "bias ahead": load("timed_ahead", ".run230_timed_ahead.py")}
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
hs = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(2)]
cs = [torch.full((M, H), 255, device=dev, dtype=torch.uint8) for _ in range(2)]
tiles = triton.cdiv(M, 128) * triton.cdiv(H, 128)
nprog = min(tiles, torch.cuda.get_device_properties(0).multi_processor_count)
clocks = {name: torch.zeros(tiles * 11, device=dev, dtype=torch.int64) for name in timed}


def launch_timed(name):
    mod = timed[name]
    d = mod._descriptor
    mod._mlp_gluon_kernel[(nprog,)](
        d(x, [128, 64]), d(w, [128, 64]), d(hs[1], [64, 128]), d(cs[1], [64, 128]), d(cs[1], [64, 128]), b, hs[1],
        M, H, C, GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False, NUM_STAGES=5,
        CONSUMER_REGS=mod.CONSUMER_REGS, PRODUCER_REGS=mod.PRODUCER_REGS, GRAD_CODE=True, Clocks=clocks[name],
        TIMING=True, num_warps=4, maxnreg=mod.MAX_REGS)


calls = {"tree": lambda: tree.launch_linear_gelu(x, w, b, hs[0], cs[0]),
         "bias ahead": lambda: ahead.launch_linear_gelu(x, w, b, hs[1], cs[1]),
         "tree, stamped": lambda: launch_timed("tree"),
         "bias ahead, stamped": lambda: launch_timed("bias ahead")}
for name in ("tree", "bias ahead"):
    calls[name]()
torch.cuda.synchronize()
print(f"CHECK h equal {bool(torch.equal(hs[0], hs[1]))}, codes equal {bool(torch.equal(cs[0], cs[1]))}, "
      f"unwritten {int(torch.isnan(hs[1]).sum())} {int((cs[1] == 255).sum())}", flush=True)
timers = {name: graphed(fn) for name, fn in calls.items()}   # the stamped ones write hs[1], cs[1] too
results = {}
for rnd in range(4):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:12s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} median "
          f"{sorted(ts)[len(ts) // 2]:.1f} us", flush=True)
for name in timed:
    c = clocks[name].view(-1, 11).cpu().numpy().astype(np.int64)
    t = np.arange(tiles)
    period = c[t[t + nprog < tiles] + nprog, 1] - c[t[t + nprog < tiles], 1]
    nxt = t[t + 2 * nprog < tiles]
    gap = c[nxt + 2 * nprog, 0] - c[nxt, 3]
    med = lambda v: f"{np.median(v):6.0f}"  # noqa: E731
    print(f"RESULT clocks {name:10s} (cycles, medians): turn wait {med(c[:, 1] - c[:, 0])} K loop {med(c[:, 2] - c[:, 1])} "
          f"of which waiting on ready {med(c[:, 4])} (mean {np.mean(c[:, 4]):.0f}) epilogue {med(c[:, 3] - c[:, 2])} "
          f"gap {med(gap)} period {med(period)}", flush=True)
    marks = [c[:, 2], c[:, 5], c[:, 6], c[:, 7], c[:, 8], c[:, 9], c[:, 10], c[:, 3]]
    parts = ["arith 0", "code store 0", "h store 0", "arith 1", "code store 1", "h store 1", "to the end"]
    print(f"RESULT clocks {name:10s} epilogue phases: " + ", ".join(
        f"{p} {med(b - a)}" for p, a, b in zip(parts, marks, marks[1:])), flush=True)
