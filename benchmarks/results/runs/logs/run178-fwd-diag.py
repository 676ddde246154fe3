"""Prepared in session 23 for NOTES' "Next GPU run" 14: what bounds the Gluon MLP forward with
gelu'(pre) codes (run 173: 163.5 us with codes against 162.5 with pre; cuBLAS's plain GEMM 129)?
Copies of kernels/mlp_gluon.py with the code's arithmetic replaced (loaded as separate modules),
timed beside the tree's kernel at the step's shapes (M 16384, C 768, H 3072, bf16), CUDA-graph
replays of 10 calls, three rounds:
    tree-pre       the tree's kernel storing pre in bf16
    tree-codes     the tree's kernel storing codes (the default)
    level-t        codes from t alone (K0 + K1 t: no derivative arithmetic; wrong codes)
    level-zero     a constant code (no arithmetic at all; the store kept)
If level-zero and level-t run at ~150 us, the epilogue's instructions bound the forward (next: the
level in f16x2 arithmetic); if they stay at ~163, the stores or their waits do."""
import importlib.util
import sys
from pathlib import Path

import torch
import triton.testing

from fastgpt.kernels import mlp_gluon as tree

SOURCE = Path(tree.__file__).read_text()
LEVEL = "        level = (_CODE_K0 + _CODE_K1 * t) + half_x * (1.0 - t * t) * (_CODE_D0 + _CODE_D1 * x2)\n"
assert SOURCE.count(LEVEL) == 1
VARIANTS = {"level-t": "        level = _CODE_K0 + _CODE_K1 * t\n",
            "level-zero": "        level = x * 0.0 + 100.0\n"}


def variant(name, line):
    path = Path(f"/tmp/mlp_gluon_{name.replace('-', '_')}.py")
    path.write_text(SOURCE.replace(LEVEL, line))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
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
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=400, return_mode="median") / n * 1e3


M, C, H = 16384, 768, 3072
bf = torch.bfloat16
torch.manual_seed(0)
x = torch.randn(M, C, device="cuda", dtype=bf)
w_fc = (torch.randn(H, C, device="cuda") * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device="cuda") * 0.5).to(bf)
h = torch.empty(M, H, device="cuda", dtype=bf)
pre = torch.empty(M, H, device="cuda", dtype=bf)
code = torch.empty(M, H, device="cuda", dtype=torch.uint8)
timers = {"tree-pre": graphed(lambda: tree.launch_linear_gelu(x, w_fc, b_fc, h, pre)),
          "tree-codes": graphed(lambda: tree.launch_linear_gelu(x, w_fc, b_fc, h, code))}
for name, line in VARIANTS.items():
    mod = variant(name, line)
    timers[name] = graphed(lambda mod=mod: mod.launch_linear_gelu(x, w_fc, b_fc, h, code))
timers["cuBLAS x @ W_fc^T"] = graphed(lambda: torch.mm(x, w_fc.t(), out=h))
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:18s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
