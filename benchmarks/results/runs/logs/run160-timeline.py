"""Session 21: the graphed step's kernel timeline, steps back to back (no host sync between them, as
do_bench times them): per-kernel totals and the idle inside one whole step."""
import json, sys, collections
import torch, triton.testing
from torch.profiler import profile, ProfilerActivity
from bench_train_step import CONFIGS, build
name = sys.argv[1] if len(sys.argv) > 1 else "triton-adamwcopy-cudagraph"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
model, step = build(CONFIGS[name])
for _ in range(4):
    step()
torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=30, rep=300, return_mode="median")
print(f"{name}: step {ms:.3f} ms (do_bench median)")
for _ in range(20):
    step()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        step()
    torch.cuda.synchronize()
path = f"{out}/trace-{name}.json"
prof.export_chrome_trace(path)
ev = json.load(open(path))["traceEvents"]
gpu = sorted((e for e in ev if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
             key=lambda e: e["ts"])
starts = [i for i, e in enumerate(gpu) if e["name"].startswith("_embedding_fwd_kernel")]
print("steps (embedding fwd launches):", len(starts))
rows_all = []
for k in range(1, len(starts) - 1):          # whole steps only, from one embedding fwd to the next
    s = gpu[starts[k]:starts[k + 1]]
    t0, t1 = s[0]["ts"], gpu[starts[k + 1]]["ts"]
    busy = sum(e["dur"] for e in s)
    print(f"step {k}: start-to-start {(t1 - t0) / 1e3:.3f} ms, kernels {busy / 1e3:.3f} ms, "
          f"idle {(t1 - t0 - busy) / 1e3:.3f} ms, {len(s)} nodes")
    rows_all.append(s)
s = rows_all[len(rows_all) // 2]
agg = collections.defaultdict(lambda: [0, 0.0])
for e in s:
    agg[e["name"][:70]][0] += 1; agg[e["name"][:70]][1] += e["dur"]
print("per kernel (one step): total us, count, mean us")
for n, (c, d) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"  {d:9.1f} {c:4d} {d / c:7.1f}  {n}")
end, gaps = s[0]["ts"], collections.defaultdict(lambda: [0.0, 0])
lines = ["i\tstart_us\tdur_us\tgap_us\tname"]
for i, e in enumerate(s):
    gap = e["ts"] - end
    if i:
        key = (s[i - 1]["name"][:40], e["name"][:40]); gaps[key][0] += gap; gaps[key][1] += 1
    lines.append(f"{i}\t{e['ts'] - s[0]['ts']:.1f}\t{e['dur']:.1f}\t{gap:.1f}\t{e['name'][:110]}")
    end = max(end, e["ts"] + e["dur"])
open(f"{out}/timeline-{name}.tsv", "w").write("\n".join(lines) + "\n")
print("idle by (prev -> next), top 15:")
for (a, b), (g, n) in sorted(gaps.items(), key=lambda kv: -kv[1][0])[:15]:
    print(f"  {g:8.1f} us {n:4d}x  {a} -> {b}")
