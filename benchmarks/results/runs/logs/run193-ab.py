"""Session 26, run 193: the graphed step with kernels/gemm.py's choices timed at the power cap
(FASTGPT_GEMM_TIMING=cap) against the short-window choices (the tree's) and PyTorch's own
(FASTGPT_CUBLASLT=0), and the compiled reference, all built in one process and run back to back
SUSTAIN_S seconds each, alternating, ROUNDS rounds (timing.sustained: second-half medians, clock,
power, temperature). Energy a step = power x ms. Prints each variant's GEMM choices.

    VARIANTS=short,cap,heuristic,reference ROUNDS=2 SUSTAIN_S=16 python .run193-ab.py  (from benchmarks/)
"""
import json
import os
import sys
import time

import torch

from fastgpt.kernels import gemm
from timing import sustained

SETTINGS = {"short": {"FASTGPT_CUBLASLT": "1", "FASTGPT_GEMM_TIMING": "short"},
            "cap": {"FASTGPT_CUBLASLT": "1", "FASTGPT_GEMM_TIMING": "cap"},
            "heuristic": {"FASTGPT_CUBLASLT": "0", "FASTGPT_GEMM_TIMING": "short"},
            "reference": {}}


def main():
    from bench_train_step import CONFIGS, build
    names = os.environ.get("VARIANTS", "short,cap,heuristic,reference").split(",")
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps, choices = {}, {}
    for name in names:
        t = time.perf_counter()
        os.environ.update(SETTINGS[name])
        gemm._state.problems = {}
        config = "reference-compile" if name == "reference" else "triton-adamwcopy-cudagraph"
        _, step = build(CONFIGS[config])
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps[name] = step
        choices[name] = [{k: r[k] for k in ("M", "K", "N", "a_stride", "b_stride", "out_dtype", "bias", "beta",
                                            "choice", "times")} for r in gemm.tuned_problems()]
        print(f"built {name} in {time.perf_counter() - t:.1f} s, {len(choices[name])} GEMM problems", flush=True)
    if os.environ.get("CHOICES"):
        with open(os.environ["CHOICES"], "w") as f:
            json.dump(choices, f, indent=1, default=str)
    rows = []
    for r in range(rounds):
        for name in names:
            rep = sustained(steps[name], seconds)
            energy = rep.get("power_w", float("nan")) * rep["sustained_ms"] / 1000
            rows.append((r, name, rep, energy))
            print(f"round {r} {name}: sustained {rep['sustained_ms']:.3f} ms (first half "
                  f"{rep['sustained_first_half_ms']:.3f}), {rep.get('sm_clock_mhz', 0):.0f} MHz, "
                  f"{rep.get('power_w', 0):.0f} W, {rep.get('temperature_c', 0):.0f} C, {energy:.2f} J/step", flush=True)
    print("\nvariant      " + "  ".join(f"round{r}" for r in range(rounds)) + "   (sustained ms/step)")
    for name in names:
        print(f"{name:12s} " + "  ".join(f"{rep['sustained_ms']:7.3f}" for _, n, rep, _ in rows if n == name))
    if "reference" in names:
        for name in names:
            if name != "reference":
                ratios = [ref[2]["sustained_ms"] / ours[2]["sustained_ms"]
                          for ours, ref in zip([x for x in rows if x[1] == name], [x for x in rows if x[1] == "reference"])]
                print(f"reference / {name}: " + ", ".join(f"{x:.4f}x" for x in ratios))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
