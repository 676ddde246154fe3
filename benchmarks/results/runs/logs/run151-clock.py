"""Session 19, run 151: the SM clock and board power while a configuration's training step runs
back to back (nvidia-smi sampled every 100 ms beside ~8 s of steps), to see whether the H100 holds
its clock under the step or the power limit lowers it (NOTES "Next GPU run" 10)."""
import subprocess, sys, time
import torch
from bench_train_step import CONFIGS, build

name = sys.argv[1]
model, step = build(CONFIGS[name])
for _ in range(5):
    step()
torch.cuda.synchronize()
smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu",
                        "--format=csv,noheader,nounits", "-lms", "100"], stdout=subprocess.PIPE, text=True)
time.sleep(0.5)
start = time.time()
n = 0
while time.time() - start < 8:
    step()
    n += 1
torch.cuda.synchronize()
elapsed = time.time() - start
smi.terminate()
rows = [list(map(float, line.split(","))) for line in smi.communicate()[0].strip().splitlines() if line.strip()]
rows = rows[5:-3]      # the samples while the steps ran
sm = sorted(r[0] for r in rows); pw = sorted(r[2] for r in rows)
med = lambda v: v[len(v) // 2]
print(f"{name}: {n} steps in {elapsed:.2f} s ({elapsed / n * 1000:.2f} ms a step); SM clock MHz median {med(sm):.0f} "
      f"[{sm[0]:.0f}, {sm[-1]:.0f}]; power W median {med(pw):.0f} [{pw[0]:.0f}, {pw[-1]:.0f}] of limit {rows[0][3]:.0f}; "
      f"mem clock {rows[0][1]:.0f} MHz; temperature {rows[-1][4]:.0f} C; {len(rows)} samples")
