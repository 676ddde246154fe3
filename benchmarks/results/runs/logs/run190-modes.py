"""Session 25, run 190: the graphed step (triton-adamwcopy-cudagraph) with the Gluon kernel's two
schedules, the SM clock and board power sampled beside each (the step is power-bound, NOTES
"Next GPU run" 10 and 16: the cooperative schedule reads a third less operand data per FLOP, so it
might buy clock in the step although it was slower alone, run 175).

    MODE=tree|coop python .run190-modes.py        (from benchmarks/)
"""
import os
import subprocess
import time

import torch
import triton.testing

from fastgpt.kernels import mlp_gluon


def sampled(fn):
    """fn's result, with the median SM clock (MHz) and board power (W) of nvidia-smi's samples while it ran."""
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                            "-lms", "100"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    out = fn()
    torch.cuda.synchronize()
    smi.terminate()
    rows = [list(map(float, line.split(","))) for line in smi.communicate()[0].strip().splitlines() if line.strip()]
    rows = rows[4:-2] or rows
    med = lambda v: sorted(v)[len(v) // 2]
    return out, med([r[0] for r in rows]), med([r[1] for r in rows]), len(rows)


def main():
    from bench_train_step import CONFIGS, build
    mode = os.environ.get("MODE", "tree")
    if mode == "coop":
        mlp_gluon.SCHEDULE = "cooperative"
    model, run = build(CONFIGS[os.environ.get("CONFIG", "triton-adamwcopy-cudagraph")])
    for _ in range(4):
        run()
    torch.cuda.synchronize()
    ms, clock, power, n = sampled(lambda: triton.testing.do_bench(run, warmup=50, rep=1000, return_mode="median"))
    print(f"MODE {mode}: step {ms:.3f} ms, SM clock {clock:.0f} MHz, power {power:.0f} W ({n} samples), "
          f"energy {power * ms / 1000:.2f} J a step, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB", flush=True)


if __name__ == "__main__":
    main()
