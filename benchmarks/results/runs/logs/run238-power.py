"""Session 30, run 238: does the forward's epilogue cost the K loops through the power cap? Run 237: the
codes cost c_fc's forward ~15 us, the GELU ~7, though the clock stamps put the epilogue off the
critical path. If the kernel, replayed back to back, holds the GPU at its 700 W cap, work anywhere
lowers the clock. Each variant (run 237's files: the tree, no codes, plain; cuBLAS's addmm) as
CUDA-graph replays of 10 calls, run back to back for 8 s (timing.sustained: the second half's
median, SM clock and board power), two rounds alternating. Prediction: at the cap (~690-700 W) with
the clock lower the more epilogue work (tree < no codes < plain), and the energy a call in the same
order; if not at the cap, equal clocks and the costs are the SM's own.

    python .run238-power.py  (from benchmarks/)
"""
import importlib.util
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402
from timing import _capture, sustained  # noqa: E402


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
h = torch.empty(M, H, device=dev, dtype=bf)
codes = torch.empty(M, H, device=dev, dtype=torch.uint8)
mods = {"tree": tree, "no codes": load("no_codes", ".run237_no_codes.py"), "plain": load("plain", ".run237_plain.py")}
calls = {name: (lambda mod=mod: mod.launch_linear_gelu(x, w, b, h, codes)) for name, mod in mods.items()}
calls["cuBLAS addmm"] = lambda: torch.addmm(b, x, w.t(), out=h)
CALLS = 10
graphs = {}
for name, fn in calls.items():
    fn()
    graphs[name] = _capture(lambda fn=fn: [fn() for _ in range(CALLS)])
torch.cuda.synchronize()
for rnd in range(2):
    for name, graph in graphs.items():
        r = sustained(graph.replay, 8.0, slice_s=0.5)
        us = r["sustained_ms"] * 1e3 / CALLS
        mj = r.get("power_w", float("nan")) * us / 1e3
        print(f"RESULT round {rnd} {name:12s} {us:7.1f} us a call (first half {r['sustained_first_half_ms'] * 1e3 / CALLS:7.1f}), "
              f"{r.get('sm_clock_mhz', float('nan')):.0f} MHz, {r.get('power_w', float('nan')):.0f} W, "
              f"{r.get('temperature_c', float('nan')):.0f} C, {mj:.2f} mJ a call", flush=True)
