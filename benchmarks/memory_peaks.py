"""Where the peak memory of a train-step configuration goes (benchmarks/bench_train_step.py's
configurations, its `build`): the CUDA caching allocator's history over the first steps (compile,
autotuning and warm-up included, as the benchmark's peak is), replayed to the peak of allocated
bytes; the blocks live there grouped by the innermost fastgpt / torch frame that allocated them.
Also prints the allocated bytes after each step, so a per-step leak shows.

    python benchmarks/memory_peaks.py triton triton-compile reference-compile [--steps 3]

Writes $OUT/memory_peaks.txt (or /tmp). Needs a GPU.
"""
import argparse
import collections
import os
import sys

import torch
sys.path.insert(0, os.path.dirname(__file__))
import bench_train_step as B

def site(frames):
    keep = [f for f in frames if any(k in f["filename"] for k in ("fastgpt", "kernels/", "benchmarks/", "torch/_inductor", "torch/_functorch", "torch/autograd", "torch/optim"))]
    f = (keep or frames or [{"filename": "?", "line": 0, "name": "?"}])[0]
    tail = "/".join(f["filename"].split("/")[-2:])
    inner = frames[0] if frames else f
    return f"{tail}:{f['line']} {f['name']}  <- {inner['filename'].split('/')[-1]}:{inner['line']} {inner['name']}"

def analyse(name, steps):
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")
    model, step = B.build(B.CONFIGS[name])
    for i in range(steps):
        step()
        torch.cuda.synchronize()
        print(f"{name} step {i}: allocated {torch.cuda.memory_allocated() / 2**30:.2f} GiB, "
              f"peak so far {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    peak_api = torch.cuda.max_memory_allocated()
    ev = snap["device_traces"][0]
    live, cur, peak, at = {}, 0, 0, 0
    for i, e in enumerate(ev):
        a = e["action"]
        if a == "alloc":
            live[e["addr"]] = e; cur += e["size"]
            if cur > peak:
                peak, at = cur, i
        elif a == "free_requested" and e["addr"] in live:
            cur -= live.pop(e["addr"])["size"]
    # replay again to the peak index to take the live set there
    live = {}
    for e in ev[:at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = e
        elif e["action"] == "free_requested":
            live.pop(e["addr"], None)
    groups = collections.Counter(); counts = collections.Counter()
    for e in live.values():
        k = site(e.get("frames", []))
        groups[k] += e["size"]; counts[k] += 1
    lines = [f"== {name}: max_memory_allocated {peak_api / 2**30:.2f} GiB; traced peak {peak / 2**30:.2f} GiB above "
             f"the allocations before recording, event {at} of {len(ev)}; allocated at the peak by: {site(ev[at].get('frames', []))}"]
    for k, v in groups.most_common(30):
        lines.append(f"{v / 2**20:10.1f} MiB  x{counts[k]:4d}  {k}")
    print("\n".join(lines), flush=True)
    del model, step
    torch._dynamo.reset(); torch.cuda.empty_cache()
    return lines

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("configs", nargs="+", choices=list(B.CONFIGS))
parser.add_argument("--steps", type=int, default=3)
args = parser.parse_args()
out = []
for name in args.configs:
    out += analyse(name, args.steps)
open(os.path.join(os.environ.get("OUT", "/tmp"), "memory_peaks.txt"), "w").write("\n".join(out) + "\n")
