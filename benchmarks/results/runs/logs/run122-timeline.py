"""Session 18: the graphed step's kernel timeline: gaps between kernels, memsets and their neighbours."""
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
print(f"{name}: step {ms:.3f} ms")
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        step()
        torch.cuda.synchronize()
path = f"{out}/trace-{name}.json"
prof.export_chrome_trace(path)
ev = json.load(open(path))["traceEvents"]
gpu = [e for e in ev if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
gpu.sort(key=lambda e: e["ts"])
steps, cur = [], [gpu[0]]
for e in gpu[1:]:
    prev_end = cur[-1]["ts"] + cur[-1]["dur"]
    if e["ts"] - prev_end > 2000:
        steps.append(cur); cur = [e]
    else:
        cur.append(e)
steps.append(cur)
print("steps found", len(steps), [len(s) for s in steps])
s = steps[-1]
t0 = s[0]["ts"]
span = s[-1]["ts"] + s[-1]["dur"] - t0
busy = sum(e["dur"] for e in s)
rows, gaps = [], []
end = t0
for i, e in enumerate(s):
    gap = e["ts"] - end
    gaps.append((gap, s[i - 1]["name"][:60] if i else "-", e["name"][:60]))
    rows.append(f"{i}\t{e['ts'] - t0:.1f}\t{e['dur']:.1f}\t{gap:.1f}\t{e.get('cat')}\t{e['name'][:110]}\t{json.dumps(e.get('args', {}).get('bytes', ''))}")
    end = max(end, e["ts"] + e["dur"])
open(f"{out}/timeline-{name}.tsv", "w").write("i\tstart_us\tdur_us\tgap_us\tcat\tname\tbytes\n" + "\n".join(rows) + "\n")
print(f"events {len(s)} span {span/1e3:.3f} ms busy {busy/1e3:.3f} ms gaps {(span-busy)/1e3:.3f} ms")
pos = [g for g, _, _ in gaps[1:] if g > 0]
print("gap quantiles us:", [round(sorted(pos)[int(q * (len(pos) - 1))], 2) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)] if pos else None)
print("negative/overlap gaps:", sum(1 for g, _, _ in gaps[1:] if g < 0))
by_pair = collections.defaultdict(lambda: [0.0, 0])
for g, a, b in gaps[1:]:
    key = (a[:40], b[:40]); by_pair[key][0] += g; by_pair[key][1] += 1
print("gap sum by (prev -> next), top 25:")
for (a, b), (g, n) in sorted(by_pair.items(), key=lambda kv: -kv[1][0])[:25]:
    print(f"  {g:8.1f} us {n:4d}x  {a} -> {b}")
print("memsets:")
for i, e in enumerate(s):
    if e.get("cat") == "gpu_memset":
        print(f"  {i:4d} dur {e['dur']:.1f} args {json.dumps(e.get('args', {}))[:160]} prev {s[i-1]['name'][:50]} | next {s[i+1]['name'][:60] if i + 1 < len(s) else '-'}")
