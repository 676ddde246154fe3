"""Session 24, run 181: run 178's breakdown of the graphed step by kernel, with the LM head in chunks
of CHUNK rows (run 174: 16384 slower than 8192 by 0.1-0.2 ms; which kernels?)."""
import json, sys, collections
import torch, triton.testing
from torch.profiler import profile, ProfilerActivity
import os
from fastgpt.kernels import cross_entropy
rows = int(os.environ.get("CHUNK", "8192"))
cross_entropy.CHUNK_ROWS = rows
cross_entropy.MAX_CHUNK_LOGITS_BYTES = max(cross_entropy.MAX_CHUNK_LOGITS_BYTES, rows * 50304 * 2)
from bench_train_step import CONFIGS, build
name = sys.argv[1]
out = sys.argv[2]
model, step = build(CONFIGS[name])
for _ in range(4):
    step()
torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=30, rep=300, return_mode="median")
print(f"{name} CHUNK {rows}: step {ms:.3f} ms")
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        step()
        torch.cuda.synchronize()
path = f"{out}/trace-{name}-{rows}.json"
prof.export_chrome_trace(path)
ev = json.load(open(path))["traceEvents"]
gpu = [e for e in ev if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
gpu.sort(key=lambda e: e["ts"])
steps, cur = [], [gpu[0]]
for e in gpu[1:]:
    if e["ts"] - (cur[-1]["ts"] + cur[-1]["dur"]) > 2000:
        steps.append(cur); cur = [e]
    else:
        cur.append(e)
steps.append(cur)
s = steps[-1]
t0 = s[0]["ts"]
span = s[-1]["ts"] + s[-1]["dur"] - t0
busy = sum(e["dur"] for e in s)
print(f"steps {len(steps)} events {len(s)} span {span/1e3:.3f} ms busy {busy/1e3:.3f} ms idle {(span-busy)/1e3:.3f} ms")
by = collections.defaultdict(lambda: [0.0, 0])
for e in s:
    k = e["name"][:90]
    by[k][0] += e["dur"]; by[k][1] += 1
print(f"{'total_us':>9} {'n':>4} {'mean_us':>8}  kernel")
for k, (d, n) in sorted(by.items(), key=lambda kv: -kv[1][0])[:45]:
    print(f"{d:9.1f} {n:4d} {d/n:8.1f}  {k}")
with open(f"{out}/timeline-{name}-{rows}.tsv", "w") as f:
    f.write("i\tstart_us\tdur_us\tname\n")
    for i, e in enumerate(s):
        f.write(f"{i}\t{e['ts']-t0:.1f}\t{e['dur']:.1f}\t{e['name'][:140]}\n")
