"""Session 27, run 204: what the add+LayerNorm forward kernels cost the graphed step at the power
cap, as an upper bound on fusing them into the projections' GEMM epilogues (NOTES Next GPU run
20): the tree against the same step with every FusedAddLayerNorm forward run twice (the first
call's outputs dropped, so the values and every other kernel stay as they are), in one process:
do_bench's window, then back to back SUSTAIN_S seconds each, alternating, ROUNDS rounds.

    ROUNDS=2 SUSTAIN_S=16 python .run204-ab.py  (from benchmarks/)
"""
import os
import sys
import time

import torch
import triton

from fastgpt.ops.layernorm import FusedAddLayerNorm
from timing import sustained

TREE_FORWARD = FusedAddLayerNorm.forward


def twice(self, *args, **kwargs):
    TREE_FORWARD(self, *args, **kwargs)           # its kernel runs in the graph, its outputs dropped
    return TREE_FORWARD(self, *args, **kwargs)


def main():
    from bench_train_step import CONFIGS, build
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps = {}
    for name, forward in (("tree", TREE_FORWARD), ("ln-twice", twice)):
        t = time.perf_counter()
        FusedAddLayerNorm.forward = forward
        _, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps[name] = step
        print(f"built {name} in {time.perf_counter() - t:.1f} s", flush=True)
    FusedAddLayerNorm.forward = TREE_FORWARD
    for name, step in steps.items():
        print(f"window {name}: {triton.testing.do_bench(step, warmup=100, rep=300):.3f} ms", flush=True)
    for r in range(rounds):
        for name, step in steps.items():
            rep = sustained(step, seconds)
            print(f"round {r} {name}: sustained {rep['sustained_ms']:.3f} ms (first half "
                  f"{rep['sustained_first_half_ms']:.3f}), {rep.get('sm_clock_mhz', 0):.0f} MHz, "
                  f"{rep.get('power_w', 0):.0f} W, {rep.get('temperature_c', 0):.0f} C, "
                  f"{rep.get('power_w', float('nan')) * rep['sustained_ms'] / 1000:.2f} J/step", flush=True)
    for name, step in steps.items():
        print(f"window {name} after: {triton.testing.do_bench(step, warmup=100, rep=300):.3f} ms", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
