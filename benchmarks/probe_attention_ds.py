"""Does storing dS beat recomputing it in the attention backward, at the GPT-2 step's shape?

B = 32, T = 512, H = 12, D = 64, bf16, causal, the strided q/k/v views of a packed qkv as in the
model. Two backwards (kernels/attention.attention_bwd's store_ds):
  recomputed_ds  dQ kernel (3 dots, P and dS recomputed, Delta written) -> dK/dV kernel (4 dots)
  stored_ds      dK/dV kernel (4 dots, Delta from O and dO, dS written) -> dQ = dS k (1 dot, reads dS)
Times each whole backward and each kernel alone (autotuned; CUDA-graph replay medians, twice, in
alternation), checks both backwards against a float32 reference of the same rounded inputs (relative
error of dq, dk, dv) and against each other, then sweeps the new kernels' tiles.

    python benchmarks/probe_attention_ds.py       # writes $OUT/attention_ds.json (or /tmp)
"""
import json
import os
import sys

import torch
import triton
from triton.testing import do_bench_cudagraph

import fastgpt.kernels.attention as A

torch.manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
B, T, H, D = 32, 512, 12, 64
qkv = (torch.randn(B, T, 3, H, D, device="cuda") * 1.5).bfloat16()
dout = torch.randn(B, T, H, D, device="cuda").bfloat16()
scale = D ** -0.5
q, k, v = A.qkv_views(qkv)
out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
o4, do4 = out.transpose(1, 2), dout.transpose(1, 2)
grads = A.qkv_views(torch.empty_like(qkv))
dq, dk, dv = grads
ds = torch.empty(B * H, T, T, device="cuda", dtype=torch.bfloat16)
_, delta = A.attention_bwd_dq(do4, q, k, v, o4, lse, True, scale, dq=dq)


def backward(store_ds: bool):
    return lambda: A.attention_bwd(do4, q, k, v, o4, lse, True, scale, grads=grads, store_ds=store_ds)


def replay_us(fn, rep: int = 300) -> float | None:
    try:
        return do_bench_cudagraph(fn, rep=rep) * 1e3
    except Exception as e:             # a tile over the shared-memory or register limits
        print("  skipped:", type(e).__name__, str(e)[:80], flush=True)
        return None


def rel_err(x, ref):
    return ((x.float() - ref).norm() / ref.norm()).item()


# correctness: both backwards against float32 autograd of the same bf16 inputs, and each other
q32, k32, v32 = (t.float().requires_grad_() for t in (q, k, v))
ref_out = torch.nn.functional.scaled_dot_product_attention(q32, k32, v32, is_causal=True, scale=scale)
ref_out.backward(do4.float())
result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
          "command": " ".join(["python"] + sys.argv), "shape": dict(B=B, T=T, H=H, D=D), "errors": {}}
computed = {}
for store_ds in (False, True):
    backward(store_ds)()
    torch.cuda.synchronize()
    name = "stored_ds" if store_ds else "recomputed_ds"
    computed[name] = [g.clone() for g in grads]
    result["errors"][name] = {n: rel_err(g, r.grad) for n, g, r in zip("qkv", grads, (q32, k32, v32))}
result["errors"]["stored_vs_recomputed"] = {n: rel_err(a, b.float()) for n, a, b in
                                           zip("qkv", computed["stored_ds"], computed["recomputed_ds"])}
print("relative errors", json.dumps(result["errors"]), flush=True)

cases = {
    "bwd_recomputed_ds": backward(False),
    "bwd_stored_ds": backward(True),
    "dq (recomputing)": lambda: A.attention_bwd_dq(do4, q, k, v, o4, lse, True, scale, dq=dq),
    "dkdv": lambda: A.attention_bwd_dkdv(do4, q, k, v, lse, delta, True, scale, dk=dk, dv=dv),
    "dkdv storing dS": lambda: A.attention_bwd_dkdv(do4, q, k, v, lse, None, True, scale, dk=dk, dv=dv, out=o4,
                                                    ds=ds),
    "dq from dS": lambda: A.attention_bwd_dq_from_ds(ds, do4, k, True, scale, dq=dq),
}
result["us"] = {name: [] for name in cases}
for _ in range(2):
    for name, fn in cases.items():
        result["us"][name].append(replay_us(fn))
print(f"{'case':24s} {'us (two medians)':>20s}")
for name, us in result["us"].items():
    print(f"{name:24s} {us[0]:9.1f} {us[1]:9.1f}", flush=True)

# the new kernels' tiles at this shape
sweep = {
    "dkdv storing dS": (lambda c: lambda: A.attention_bwd_dkdv(do4, q, k, v, lse, None, True, scale, dk=dk, dv=dv,
                                                               out=o4, ds=ds, config=c),
                        [(m, n, w, s) for m in (16, 32) for n in (64, 128) for w in (4, 8) for s in (2, 3, 4)]),
    "dq from dS": (lambda c: lambda: A.attention_bwd_dq_from_ds(ds, do4, k, True, scale, dq=dq, config=c),
                   [(m, n, w, s) for m in (64, 128) for n in (32, 64, 128) for w in (4, 8) for s in (3, 4)]),
}
result["tiles"] = {}
for name, (make, grid) in sweep.items():
    rows = []
    for m, n, w, s in grid:
        us = replay_us(make(dict(BLOCK_M=m, BLOCK_N=n, num_warps=w, num_stages=s)), rep=100)
        if us is not None:
            rows.append({"tile": [m, n, w, s], "us": us})
    rows.sort(key=lambda r: r["us"])
    result["tiles"][name] = rows
    print(name, "best tiles:", [(r["tile"], round(r["us"], 1)) for r in rows[:5]], flush=True)
result["autotune_picks"] = {n: {str(key): str(cfg) for key, cfg in kern.cache.items()}
                            for n, kern in (("dkdv", A._attention_bwd_dkdv_kernel),
                                            ("dq_from_ds", A._attention_bwd_dq_from_ds_kernel),
                                            ("dq", A._attention_bwd_dq_kernel))}
path = os.path.join(os.environ.get("OUT", "/tmp"), "attention_ds.json")
with open(path, "w") as f:
    json.dump(result, f, indent=1)
print("wrote", path)
