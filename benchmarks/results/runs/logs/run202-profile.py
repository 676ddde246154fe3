"""Session 27, run 202: why StepDuringBackward's graphed step is ~2 ms slower in do_bench (runs
200-201): a kernel timeline (torch.profiler, CUDA activity) of 3 replays of each variant, per
stream: busy time, the AdamW kernels' count and time, the span of a replay, and the kernels whose
total time differs most between the variants.

    python .run202-profile.py  (from benchmarks/)
"""
import collections
import json
import os
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

VARIANTS = {"after": "0", "during": "1"}


def timeline(step, replays=3):
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            step()
        torch.cuda.synchronize()
    path = os.path.join(tempfile.mkdtemp(), "trace.json")
    prof.export_chrome_trace(path)
    events = [e for e in json.load(open(path))["traceEvents"]
              if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    return sorted(events, key=lambda e: e["ts"]), replays


def summary(name, events, replays):
    by_stream = collections.defaultdict(float)
    by_kernel = collections.defaultdict(float)
    for e in events:
        by_stream[e["args"].get("stream")] += e["dur"] / replays
        by_kernel[e["name"][:90]] += e["dur"] / replays
    span = (events[-1]["ts"] + events[-1]["dur"] - events[0]["ts"]) / replays
    adamw = [e for e in events if "adamw" in e["name"]]
    print(f"{name}: span/replay {span:.0f} us, {len(events) / replays:.0f} ops/replay; busy per stream "
          + ", ".join(f"{s}: {t:.0f} us" for s, t in by_stream.items()), flush=True)
    print(f"  adamw kernels/replay {len(adamw) / replays:.0f}, {sum(e['dur'] for e in adamw) / replays:.0f} us: "
          + ", ".join(f"{e['dur']:.0f}" for e in adamw[: len(adamw) // replays]), flush=True)
    # idle on the main stream between its kernels, per replay
    main = max(by_stream, key=by_stream.get)
    ev = [e for e in events if e["args"].get("stream") == main]
    gaps = sorted(((b["ts"] - (a["ts"] + a["dur"]), a["name"][:50], b["name"][:50]) for a, b in zip(ev, ev[1:])),
                  reverse=True)
    print("  largest main-stream gaps: " + "; ".join(f"{g:.0f} us {a} -> {b}" for g, a, b in gaps[:8]), flush=True)
    return by_kernel


def main():
    from bench_train_step import CONFIGS, build
    kernels = {}
    for name, switch in VARIANTS.items():
        os.environ["FASTGPT_STEP_DURING_BACKWARD"] = switch
        _, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
        events, replays = timeline(step)
        kernels[name] = summary(name, events, replays)
    diffs = sorted(((kernels["during"].get(k, 0) - kernels["after"].get(k, 0), k)
                    for k in set(kernels["during"]) | set(kernels["after"])), key=lambda x: -abs(x[0]))
    print("largest per-kernel differences (during - after, us/replay):")
    for d, k in diffs[:15]:
        print(f"  {d:+8.1f}  after {kernels['after'].get(k, 0):8.1f}  {k}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
