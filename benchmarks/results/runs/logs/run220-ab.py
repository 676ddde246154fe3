"""Session 28, run 220: the tree's exp GEMM with one accumulator a consumer (kernels/mlp_gluon.py, this
session) against the previous tree's (two halves; .run220_old_mlp_gluon.py = git show HEAD~ of it):
(1) the kernel alone at the LM head's chunk (8192 x 768 -> 50304), outputs compared, CUDA-graph
replays of 3 calls, six alternating rounds; (2) the graphed GPT-2 step on benchmarks/ab_step, the old
kernel patched in as the variant (sustained rounds alternating, an A/A control).

    ROUNDS=2 SUSTAIN_S=16 python .run220-ab.py  (from benchmarks/)
"""
import importlib.util
import os
import statistics
import sys
from unittest import mock

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_step import Variant, compare  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("old_mlp_gluon", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                            ".run220_old_mlp_gluon.py"))
old = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(old)


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
    R, C, V = 8192, 768, 50304
    bf, dev = torch.bfloat16, "cuda"
    torch.manual_seed(0)
    xl = torch.randn(R, C, device=dev, dtype=bf)
    wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
    shift = torch.randn(R, device=dev) * 0.5
    nblk = triton.cdiv(V, 128)
    e1, e2 = (torch.full((R, V), float("nan"), device=dev, dtype=bf) for _ in range(2))
    s1, s2 = (torch.full((R, nblk), float("nan"), device=dev) for _ in range(2))
    calls = {"exp, one accumulator (tree)": lambda: tree.launch_linear_exp(xl, wte, shift, e1, s1, 70.0),
             "exp, two halves (before)": lambda: old.launch_linear_exp(xl, wte, shift, e2, s2, 70.0)}
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    print(f"CHECK e equal {bool(torch.equal(e1, e2))}, sums equal {bool(torch.equal(s1, s2))}, "
          f"unwritten {int(torch.isnan(e1).sum())} {int(torch.isnan(s1).sum())}", flush=True)
    timers = {name: graphed(fn) for name, fn in calls.items()}
    results = {}
    for rnd in range(6):
        for name, t in timers.items():
            results.setdefault(name, []).append(t())
    for name, ts in results.items():
        print(f"RESULT {name:28s} " + " ".join(f"{v:7.1f}" for v in ts)
              + f"   min {min(ts):.1f} median {statistics.median(ts):.1f} us", flush=True)


def main():
    kernel_ab()
    before = lambda: mock.patch.object(tree, "launch_linear_exp", old.launch_linear_exp)  # noqa: E731
    compare([Variant("tree"), Variant("exp-in-halves", before)],
            rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
