"""Session 27, run 206: build order reversed (during first), the AdamW step during the backward, inside the attention backward windows (joined at their ends) (fastgpt.ops.adamw.StepDuringBackward,
the tree's default without clipping) against all of it after the backward
(FASTGPT_STEP_DURING_BACKWARD=0), the graphed step of bench_train_step's triton-adamwcopy-cudagraph,
in one process: do_bench's window, then back to back SUSTAIN_S seconds each, alternating, ROUNDS
rounds (timing.sustained).

    ROUNDS=2 SUSTAIN_S=16 python .run200-ab.py  (from benchmarks/)
"""
import os
import sys
import time

import torch
import triton

from timing import sustained

VARIANTS = {"during": "1", "after": "0"}


def main():
    from bench_train_step import CONFIGS, build
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps = {}
    for name, switch in VARIANTS.items():
        t = time.perf_counter()
        os.environ["FASTGPT_STEP_DURING_BACKWARD"] = switch
        _, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps[name] = step
        print(f"built {name} in {time.perf_counter() - t:.1f} s", flush=True)
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
