"""Session 25, run 192: the graphed step and the compiled reference run back to back for DURATION_S
seconds each, timed in ~1 s slices (CUDA events), with the SM clock, instantaneous board power and
temperature sampled beside them (nvidia-smi, every 200 ms). Run 191 found both steps at the
power cap ("SW power cap" active) and ours slower over a 3 s window (26.52 ms) than in the
benchmark's 0.3 s do_bench window (25.60-25.76) while the GPU warmed (47 -> 66 C): the question is
the sustained ratio, and whether the cooperative schedule (less operand traffic: less energy?)
wins once the GPU is at its steady temperature.

    CONFIG=name MODE=tree|coop DURATION_S=40 SAMPLES=file python .run192-sustain.py   (from benchmarks/)
"""
import os
import subprocess
import time

import torch

from fastgpt.kernels import mlp_gluon

FIELDS = "clocks.sm,power.draw.instant,temperature.gpu"


def main():
    from bench_train_step import CONFIGS, build
    config, mode = os.environ.get("CONFIG", "triton-adamwcopy-cudagraph"), os.environ.get("MODE", "tree")
    duration = float(os.environ.get("DURATION_S", "40"))
    if mode == "coop":
        mlp_gluon.SCHEDULE = "cooperative"
    model, run = build(CONFIGS[config])
    for _ in range(4):
        run()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        run()
    torch.cuda.synchronize()
    per_slice = max(1, round(1.0 / ((time.perf_counter() - t) / 10)))
    smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits", "-lms", "200"],
                           stdout=subprocess.PIPE, text=True)
    start = time.perf_counter()
    slices = []
    while time.perf_counter() - start < duration:
        t0 = time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(per_slice):
            run()
        end.record()
        end.synchronize()
        slices.append((t0, begin.elapsed_time(end) / per_slice))
    smi.terminate()
    lines = [line for line in smi.communicate()[0].strip().splitlines() if line.strip()]
    samples = []
    for line in lines:
        try:
            samples.append([float(v) for v in line.split(",")])
        except ValueError:
            pass
    if os.environ.get("SAMPLES"):
        with open(os.environ["SAMPLES"], "a") as f:
            f.write(f"# {config} {mode}: slices (s, ms/step) then samples ({FIELDS}, 200 ms apart)\n")
            f.write(" ".join(f"{s:.1f}:{ms:.3f}" for s, ms in slices) + "\n")
            f.write("\n".join(lines) + "\n")
    med = lambda v: sorted(v)[len(v) // 2]
    third = max(1, len(slices) // 3)
    early, late = [ms for _, ms in slices[:third]], [ms for _, ms in slices[-third:]]
    late_samples = samples[-max(1, len(samples) // 3):]
    print(f"{config} {mode}: {len(slices)} slices of {per_slice} steps; ms/step first third {med(early):.3f}, "
          f"last third {med(late):.3f} (min {min(late):.3f}, max {max(late):.3f}); last third's SM clock "
          f"{med([s[0] for s in late_samples]):.0f} MHz, power {med([s[1] for s in late_samples]):.0f} W, "
          f"temperature {med([s[2] for s in late_samples]):.0f} C; energy {med([s[1] for s in late_samples]) * med(late) / 1000:.2f} J a step",
          flush=True)


if __name__ == "__main__":
    main()
