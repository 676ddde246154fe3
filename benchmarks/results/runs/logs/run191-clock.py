"""Session 25, run 191 (run 190's probe with the clock-event reasons sampled): the graphed step with the Gluon kernel's two
schedules, the SM clock and board power sampled beside each (the step is power-bound, NOTES
"Next GPU run" 10 and 16: the cooperative schedule reads a third less operand data per FLOP, so it
might buy clock in the step although it was slower alone, run 175).

    MODE=tree|coop [CONFIG=name] [REP_MS=ms] [SAMPLES=file] python .run191-clock.py       (from benchmarks/)
"""
import os
import subprocess
import time

import torch
import triton.testing

from fastgpt.kernels import mlp_gluon


EXTRA = ["power.draw.instant", "temperature.gpu", "clocks_event_reasons.active", "clocks_event_reasons.sw_power_cap",
         "clocks_event_reasons.hw_slowdown", "clocks_event_reasons.sw_thermal_slowdown",
         "clocks_event_reasons.hw_thermal_slowdown", "clocks_event_reasons.hw_power_brake_slowdown"]
EXTRA = [f for f in EXTRA if subprocess.run(["nvidia-smi", f"--query-gpu={f}", "--format=csv,noheader"],
                                            capture_output=True).returncode == 0]


def sampled(fn):
    """fn's result, with the median SM clock (MHz) and board power (W) of nvidia-smi's samples while it ran
    (and EXTRA's fields, each sample's, into $SAMPLES if set)."""
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw," + ",".join(EXTRA),
                            "--format=csv,noheader,nounits", "-lms", "100"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    out = fn()
    torch.cuda.synchronize()
    smi.terminate()
    lines = [line for line in smi.communicate()[0].strip().splitlines() if line.strip()][4:-2]
    if os.environ.get("SAMPLES"):
        with open(os.environ["SAMPLES"], "a") as f:
            f.write(f"# {os.environ.get('MODE', 'tree')} {os.environ.get('CONFIG', '')}: clocks.sm,power.draw,"
                    + ",".join(EXTRA) + "\n" + "\n".join(lines) + "\n")
    rows = []
    for line in lines:
        try:
            rows.append(list(map(float, line.split(",")[:2])))
        except ValueError:     # [N/A] or a cut line
            pass
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
    ms, clock, power, n = sampled(lambda: triton.testing.do_bench(run, warmup=50, rep=int(os.environ.get("REP_MS", "1000")), return_mode="median"))
    print(f"MODE {mode}: step {ms:.3f} ms, SM clock {clock:.0f} MHz, power {power:.0f} W ({n} samples), "
          f"energy {power * ms / 1000:.2f} J a step, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB", flush=True)


if __name__ == "__main__":
    main()
