"""Session 30, run 231: the MLP forward's epilogue with each half in its own block (kernels/mlp_gluon.py:
`if row < M` around the forward half's body). In one block ptxas computes both halves' GELU and codes
before any store (offline SASS); run 230's stamped kernel, whose clock reads kept each half's arithmetic
before its own stores, ran 152-157 us against the plain tree's 163-166 in the same rounds. (1) c_fc's
forward (16384 x 768 -> 3072, codes) against the previous tree's (.run231_before_gluon.py), outputs
compared bitwise, eight rounds alternating in both orders; (2) the graphed GPT-2 step on
benchmarks/ab_step, the old forward launcher patched in as the variant (sustained rounds alternating,
an A/A control). Prediction: the forward -4 to -9 us (5-10 us less than run 230's gap, the stamps'
own cost ~1-2 us), the step -0.05 to -0.11 ms (12 launches).

    ROUNDS=2 SUSTAIN_S=16 python .run231-fwd-order.py  (from benchmarks/)
"""
import importlib.util
import os
import statistics
import sys
from unittest import mock

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


old = load("before_gluon", ".run231_before_gluon.py")


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


def kernel_ab(rounds=8):
    bf, dev = torch.bfloat16, "cuda"
    torch.manual_seed(0)
    M, C, H = 16384, 768, 3072
    x = torch.randn(M, C, device=dev, dtype=bf)
    w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
    b = (torch.randn(H, device=dev) * 0.5).to(bf)
    hs = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(2)]
    cs = [torch.full((M, H), 255, device=dev, dtype=torch.uint8) for _ in range(2)]
    calls = {"fwd c_fc, halves apart (tree)": lambda: tree.launch_linear_gelu(x, w, b, hs[0], cs[0]),
             "fwd c_fc, before": lambda: old.launch_linear_gelu(x, w, b, hs[1], cs[1])}
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    print(f"CHECK fwd h equal {bool(torch.equal(hs[0], hs[1]))}, codes equal {bool(torch.equal(cs[0], cs[1]))}, "
          f"unwritten {int(torch.isnan(hs[0]).sum())} {int((cs[0] == 255).sum())}", flush=True)
    timers = {name: graphed(fn) for name, fn in calls.items()}
    names = list(timers)
    results = {name: [] for name in names}
    for rnd in range(rounds):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            results[name].append(timers[name]())
    for name, ts in results.items():
        print(f"RESULT {name:30s} " + " ".join(f"{v:7.1f}" for v in ts)
              + f"   min {min(ts):.1f} median {statistics.median(ts):.1f} us", flush=True)
    diffs = [a - b for a, b in zip(*results.values())]
    print(f"RESULT paired (tree - before) " + " ".join(f"{d:+6.1f}" for d in diffs)
          + f"   median {statistics.median(diffs):+.1f} us", flush=True)


def main():
    kernel_ab()
    before = lambda: mock.patch.object(tree, "launch_linear_gelu", old.launch_linear_gelu)  # noqa: E731
    compare([Variant("tree"), Variant("before", before)],
            rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
