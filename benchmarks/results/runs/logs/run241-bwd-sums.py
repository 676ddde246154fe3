"""Session 31, run 241: the MLP backward's bias-gradient column sums as the transposed, narrow product
half^T (128, 64) @ ones (64, 8) (N = 8, wgmma's least: 1/16 of the tensor work) instead of ones (64, 64)
@ half (N = 128), ~8% of the backward tile's tensor work. (1) dh's GEMM (dy 16384 x 768 @ W 768 x 3072,
codes, partials) in the tree against kernels/mlp_gluon.py at f1d5163 (.run241_before_gluon.py) and the
tree without partials (the column sums' whole cost), dpre compared bitwise, partials to fp32 rounding,
the bias gradient against float64; eight rounds alternating in both orders; (2) the graphed GPT-2 step
on benchmarks/ab_step, the old backward launcher patched in (sustained rounds alternating, an A/A
control). Prediction: the backward -4 to -10 us (no partials: -8 to -15), the step -0.05 to -0.12 ms.

    ROUNDS=2 SUSTAIN_S=16 python .run241-bwd-sums.py  (from benchmarks/)
"""
import importlib.util
import os
import sys
from unittest import mock

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ab_step import Variant, compare, compare_kernels  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402
from timing import replay_timer  # noqa: E402

spec = importlib.util.spec_from_file_location("before_gluon", os.path.join(HERE, ".run241_before_gluon.py"))
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)


def kernel_ab():
    bf, dev = torch.bfloat16, "cuda"
    torch.manual_seed(0)
    M, C, H = 16384, 768, 3072
    dy = (torch.randn(M, C, device=dev) * 0.02).to(bf)
    w = (torch.randn(C, H, device=dev) * C ** -0.5).to(bf)
    codes = torch.randint(0, 255, (M, H), device=dev, dtype=torch.uint8)
    rows = tree.partial_rows(M)
    dpres = [torch.full((M, H), float("nan"), device=dev, dtype=bf) for _ in range(3)]
    parts = [torch.full((rows, H), float("nan"), device=dev) for _ in range(2)]
    calls = {"bwd sums transposed (tree)": lambda: tree.launch_matmul_gelu_grad(dy, w, codes, dpres[0], parts[0]),
             "bwd no partials": lambda: tree.launch_matmul_gelu_grad(dy, w, codes, dpres[2], None),
             "bwd sums ones@half (f1d5163)": lambda: before.launch_matmul_gelu_grad(dy, w, codes, dpres[1], parts[1])}
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    exact = (dy.double() @ w.double()) * tree.gelu_grad_decode(codes).double()
    db_exact = dpres[0].double().sum(0)     # the sums of dpre as rounded, which the partials sum
    db = [p.double().sum(0) for p in parts]
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    print(f"CHECK dpre equal {bool(torch.equal(dpres[0], dpres[1]))} {bool(torch.equal(dpres[0], dpres[2]))}, "
          f"unwritten {int(torch.isnan(dpres[0]).sum())} {int(torch.isnan(parts[0]).sum())}; "
          f"dpre rel err {rel(dpres[0].double(), exact):.2e}; bias grad rel err tree {rel(db[0], db_exact):.2e} "
          f"before {rel(db[1], db_exact):.2e}; partials max |tree - before| "
          f"{float((parts[0] - parts[1]).abs().max()):.3e} of max {float(parts[1].abs().max()):.3e}", flush=True)
    timers = {name: replay_timer(fn) for name, fn in calls.items()}
    compare_kernels(timers, rounds=8, print_fn=lambda line: print(line, flush=True))


def main():
    if os.environ.get("KERNELS", "1") == "1":
        kernel_ab()
    if os.environ.get("STEP", "1") == "1":
        old = lambda: mock.patch.object(tree, "launch_matmul_gelu_grad", before.launch_matmul_gelu_grad)  # noqa: E731
        compare([Variant("tree"), Variant("before", old)],
                rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
