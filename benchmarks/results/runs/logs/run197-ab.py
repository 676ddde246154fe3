"""Session 26, run 197: what the AdamW step costs the graphed step sustained: the tree against the
same step captured without its optimizer step (fastgpt.cuda_graph.step_with_copies a no-op: the
parameters stay as they are, every value finite), in one process, back to back SUSTAIN_S seconds
each, alternating, ROUNDS rounds (timing.sustained). At the power cap the difference is the
AdamW step's energy over ~700 W, not its 1.16 ms (run 178) of memory-bound time.

    VARIANTS=tree,noadamw ROUNDS=2 SUSTAIN_S=16 python .run197-ab.py  (from benchmarks/)
"""
import os
import sys
import time

import torch

import fastgpt.cuda_graph as cuda_graph
from timing import sustained

TREE_STEP = cuda_graph.step_with_copies


def main():
    from bench_train_step import CONFIGS, build
    names = os.environ.get("VARIANTS", "tree,noadamw").split(",")
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps = {}
    for name in names:
        t = time.perf_counter()
        cuda_graph.step_with_copies = (lambda *args, **kwargs: None) if name == "noadamw" else TREE_STEP
        _, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps[name] = step
        print(f"built {name} in {time.perf_counter() - t:.1f} s", flush=True)
    cuda_graph.step_with_copies = TREE_STEP
    for r in range(rounds):
        for name in names:
            rep = sustained(steps[name], seconds)
            print(f"round {r} {name}: sustained {rep['sustained_ms']:.3f} ms (first half "
                  f"{rep['sustained_first_half_ms']:.3f}), {rep.get('sm_clock_mhz', 0):.0f} MHz, "
                  f"{rep.get('power_w', 0):.0f} W, {rep.get('temperature_c', 0):.0f} C, "
                  f"{rep.get('power_w', float('nan')) * rep['sustained_ms'] / 1000:.2f} J/step", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
