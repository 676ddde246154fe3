"""Session 30, run 233: one output buffer a consumer warpgroup, its 32 KB given to a sixth slot
(kernels/mlp_gluon.py: ONE_OUT_BUFFER, OUT_BUFS), in the forward (c_fc, 16384 x 768 -> 3072, codes) and
the LM head's exp GEMM (8192 x 768 -> 50304). Both are paced by their K loops, which wait on their
slots' operand data (run 230: ~1500 cycles a tile in the forward), while their epilogues have time to
spare; with one buffer each store waits for the one before it to leave shared memory. (1) the kernels,
one buffer + six slots (the tree), one buffer + five slots, two buffers + five slots (as before),
outputs compared bitwise, eight rounds alternating in both orders; (2) the graphed GPT-2 step on
benchmarks/ab_step with ONE_OUT_BUFFER off as the variant (sustained rounds alternating, an A/A
control). Prediction: if the K loops' waits are latency (data in flight), forward -3 to -8 us and the
exp chunk -20 to -50 us, the step -0.1 to -0.2 ms; if L2 bandwidth, none.

    ROUNDS=2 SUSTAIN_S=16 python .run233-out-buffer.py  (from benchmarks/)
"""
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


def graphed(fn, two_buffers, n=10):
    with mock.patch.object(tree, "ONE_OUT_BUFFER", not two_buffers):
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
    hs = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(3)]
    cs = [torch.full((M, H), 255, device=dev, dtype=torch.uint8) for _ in range(3)]
    R, V = 8192, 50304
    xl = torch.randn(R, C, device=dev, dtype=bf)
    wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
    shift = torch.randn(R, device=dev) * 0.5
    nblk = triton.cdiv(V, 128)
    es = [torch.full((R, V), float("nan"), device=dev, dtype=bf) for _ in range(2)]
    ss = [torch.full((R, nblk), float("nan"), device=dev) for _ in range(2)]
    fwd = {"fwd 1 buffer, 6 slots (tree)": (lambda: tree.launch_linear_gelu(x, w, b, hs[0], cs[0]), False),
           "fwd 1 buffer, 5 slots": (lambda: tree.launch_linear_gelu(x, w, b, hs[1], cs[1], stages=5), False),
           "fwd 2 buffers, 5 slots": (lambda: tree.launch_linear_gelu(x, w, b, hs[2], cs[2]), True)}
    exp = {"exp 1 buffer, 6 slots (tree)": (lambda: tree.launch_linear_exp(xl, wte, shift, es[0], ss[0], 70.0), False),
           "exp 2 buffers, 5 slots": (lambda: tree.launch_linear_exp(xl, wte, shift, es[1], ss[1], 70.0), True)}
    for group in (fwd, exp):
        for fn, two in group.values():
            with mock.patch.object(tree, "ONE_OUT_BUFFER", not two):
                fn()
    torch.cuda.synchronize()
    print(f"CHECK fwd h equal {all(torch.equal(hs[0], h) for h in hs[1:])}, codes equal "
          f"{all(torch.equal(cs[0], c) for c in cs[1:])}, unwritten {int(torch.isnan(hs[0]).sum())} "
          f"{int((cs[0] == 255).sum())}", flush=True)
    print(f"CHECK exp e equal {bool(torch.equal(es[0], es[1]))}, sums equal {bool(torch.equal(ss[0], ss[1]))}, "
          f"unwritten {int(torch.isnan(es[0]).sum())} {int(torch.isnan(ss[0]).sum())}", flush=True)
    for group in (fwd, exp):
        timers = {name: graphed(fn, two) for name, (fn, two) in group.items()}
        names = list(timers)
        results = {name: [] for name in names}
        for rnd in range(rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                results[name].append(timers[name]())
        for name, ts in results.items():
            print(f"RESULT {name:30s} " + " ".join(f"{v:7.1f}" for v in ts)
                  + f"   min {min(ts):.1f} median {statistics.median(ts):.1f} us", flush=True)
        base = results[names[-1]]
        for name in names[:-1]:
            diffs = [a - b for a, b in zip(results[name], base)]
            print(f"RESULT paired ({name} - {names[-1]}) " + " ".join(f"{d:+6.1f}" for d in diffs)
                  + f"   median {statistics.median(diffs):+.1f} us", flush=True)


def main():
    kernel_ab()
    two_buffers = lambda: mock.patch.object(tree, "ONE_OUT_BUFFER", False)  # noqa: E731
    compare([Variant("tree"), Variant("two out buffers", two_buffers)],
            rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
