"""Session 26, run 194: the graphed step's LM head variants, built in one process and run back to
back SUSTAIN_S seconds each, alternating, ROUNDS rounds (timing.sustained: second-half medians,
clock, power, temperature; energy a step = power x ms). At the power cap a step's time is its
energy over ~700 W (run 192), so these compare energy:
  tree        the tree (exp GEMM ping-pong, tile groups of 8 row tiles, 8192-token chunks)
  expcoop     the exp GEMM on the cooperative schedule (256 x 128 tiles: a third less operand
              traffic from L2; the MLP stays ping-pong)
  group16/64  the exp GEMM's tile groups of 16 / 64 row tiles (W read from DRAM 4x / once a chunk)
  onechunk    one 16384-token chunk (one dX, one dW GEMM, no fp32 accumulate pass; +0.8 GiB)

    VARIANTS=tree,expcoop,group16,group64,onechunk ROUNDS=2 SUSTAIN_S=16 python .run194-ab.py  (from benchmarks/)
"""
import functools
import os
import sys
import time

import torch

from fastgpt.kernels import cross_entropy, mlp_gluon
from timing import sustained

TREE_LAUNCH = mlp_gluon.launch_linear_exp


def setup(name):
    mlp_gluon.launch_linear_exp = TREE_LAUNCH
    mlp_gluon.EXP_GROUP_M = mlp_gluon.GROUP_M
    cross_entropy.CHUNK_ROWS, cross_entropy.MAX_CHUNK_LOGITS_BYTES = 8192, 2**30
    if name == "expcoop":
        mlp_gluon.launch_linear_exp = functools.partial(TREE_LAUNCH, schedule="cooperative")
    elif name.startswith("group"):
        mlp_gluon.EXP_GROUP_M = int(name[5:])
    elif name == "onechunk":
        cross_entropy.CHUNK_ROWS, cross_entropy.MAX_CHUNK_LOGITS_BYTES = 16384, 2**31
    else:
        assert name == "tree", name


def main():
    from bench_train_step import CONFIGS, build
    names = os.environ.get("VARIANTS", "tree,expcoop,group16,group64,onechunk").split(",")
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps = {}
    for name in names:
        t = time.perf_counter()
        setup(name)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        _, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps[name] = step
        print(f"built {name} in {time.perf_counter() - t:.1f} s, peak {(torch.cuda.max_memory_allocated() - before) / 2**30:.2f} GiB",
              flush=True)
    setup("tree")
    rows = []
    for r in range(rounds):
        for name in names:
            rep = sustained(steps[name], seconds)
            energy = rep.get("power_w", float("nan")) * rep["sustained_ms"] / 1000
            rows.append((name, rep["sustained_ms"], energy))
            print(f"round {r} {name}: sustained {rep['sustained_ms']:.3f} ms (first half "
                  f"{rep['sustained_first_half_ms']:.3f}), {rep.get('sm_clock_mhz', 0):.0f} MHz, "
                  f"{rep.get('power_w', 0):.0f} W, {rep.get('temperature_c', 0):.0f} C, {energy:.2f} J/step", flush=True)
    print("\nvariant     " + "  ".join(f"round{r}" for r in range(rounds)) + "   (sustained ms/step; J/step)")
    for name in names:
        mine = [(ms, j) for n, ms, j in rows if n == name]
        print(f"{name:10s} " + "  ".join(f"{ms:7.3f}" for ms, _ in mine) + "   " + "  ".join(f"{j:.2f}" for _, j in mine))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
