"""Are the attention kernels' autotuned tiles the best at the GPT-2 step's shape?

Times each of the three attention kernels (forward, dQ, dK/dV) at B = 32, T = 512, H = 12, D = 64
(bf16, causal, the strided q/k/v views of a packed qkv, as in the model) with one explicit tile
after another (BLOCK_M, BLOCK_N, num_warps, num_stages; CUDA-graph replay medians), beside the
autotuner's pick, and writes every row: the grid is wider than the kernels' tuning lists, so a
better tile shows up here before it goes into kernels/attention.py (run 72 found dK/dV's
(16, 64, 4, 4)). Tiles that do not compile or fit are skipped.

    python benchmarks/probe_attention_tiles.py     # writes $OUT/attention_tiles.json (or /tmp)
"""
import json
import os
import time

import torch
import triton
from triton.testing import do_bench_cudagraph

import fastgpt.kernels.attention as A

TIME_BUDGET_S = 330      # the sweep stops here (a device call has a time limit)
torch.manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
B, T, H, D = 32, 512, 12, 64
qkv = (torch.randn(B, T, 3, H, D, device="cuda") * 1.5).bfloat16()
dout = torch.randn(B, T, H, D, device="cuda").bfloat16()
scale = D ** -0.5
q, k, v = A.qkv_views(qkv)
out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
o4, do4 = out.transpose(1, 2), dout.transpose(1, 2)
dq, dk, dv = A.qkv_views(torch.empty_like(qkv))
_, delta = A.attention_bwd_dq(do4, q, k, v, o4, lse, True, scale, dq=dq)


def replay_us(fn) -> float | None:
    try:
        return do_bench_cudagraph(fn, rep=200) * 1e3
    except Exception:             # a tile over the shared-memory or register limits
        return None


kernels = {
    "fwd": lambda c: (lambda: A.attention_fwd(q, k, v, True, scale, out=o4, config=c)),
    "dq": lambda c: (lambda: A.attention_bwd_dq(do4, q, k, v, o4, lse, True, scale, dq=dq, config=c)),
    "dkdv": lambda c: (lambda: A.attention_bwd_dkdv(do4, q, k, v, lse, delta, True, scale, dk=dk, dv=dv, config=c)),
}
tiles = {
    "fwd": [(m, n, w, s) for m in (64, 128) for n in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)],
    "dq": [(m, n, w, s) for m in (32, 64, 128) for n in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)
           if m * n <= 8192],
    "dkdv": [(m, n, w, s) for m in (16, 32, 64, 128) for n in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4, 5)
             if m * n <= 8192],
}
result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
          "autotuned_us": {name: replay_us(make(None)) for name, make in kernels.items()}}
print("autotuned", result["autotuned_us"], flush=True)
start = time.time()
for name, grid in tiles.items():
    rows = []
    for m, n, w, s in grid:
        if time.time() - start > TIME_BUDGET_S:
            break
        us = replay_us(kernels[name](dict(BLOCK_M=m, BLOCK_N=n, num_warps=w, num_stages=s)))
        if us is not None:
            rows.append([us, m, n, w, s])
    result[name] = sorted(rows)
    print(name, "best", result[name][:4], flush=True)
json.dump(result, open(os.environ.get("OUT", "/tmp") + "/attention_tiles.json", "w"), indent=1)
print("| kernel | autotuned us | best us | best (BLOCK_M, BLOCK_N, warps, stages) |\n|---|---|---|---|")
for name in tiles:
    if result[name]:
        best = result[name][0]
        print(f"| {name} | {result['autotuned_us'][name]:.1f} | {best[0]:.1f} | {tuple(best[1:])} |")
