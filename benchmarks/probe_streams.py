"""Do the backward's weight-gradient GEMMs gain from a second stream inside a CUDA graph?
A chain of 12 MLP-backward-like layers (M=16384, C=768, H=3072, bf16): main stream dh GEMM ->
GELU-grad pass -> dgrad GEMM -> a memory-bound pass standing in for add+LayerNorm's backward;
wgrad GEMMs (dW_proj = dy^T h, dW_fc = dpre^T x) either inline on the main stream (serial) or on
a side stream that waits only for their inputs (forked), joined at the end. Prints each graph's
replay time and whether its outputs are bitwise those of the first capture.

    python benchmarks/probe_streams.py          # writes $OUT/streams_probe.json (or /tmp)
"""
import json
import os

import torch
import triton
from triton.testing import do_bench
import fastgpt.kernels.mlp as Mk
torch.manual_seed(0)
dev = "cuda"
M, C, H, L = 16384, 768, 3072, 12
bf = torch.bfloat16
x = [torch.randn(M, C, device=dev, dtype=bf) for _ in range(L)]
h = [torch.randn(M, H, device=dev, dtype=bf) for _ in range(L)]
pre = [torch.randn(M, H, device=dev, dtype=bf) for _ in range(L)]
w_fc = torch.randn(H, C, device=dev, dtype=bf) * 0.02
w_proj = torch.randn(C, H, device=dev, dtype=bf) * 0.02
dy0 = torch.randn(M, C, device=dev, dtype=bf)
ln_a = torch.randn(M, 2 * C, device=dev, dtype=bf)
ln_b = torch.randn(M, 2 * C, device=dev, dtype=bf)
side = torch.cuda.Stream()
out = {}
def wgrad(a, b, forked):
    """a^T @ b: on the side stream after the main stream's work so far when forked, else inline."""
    if not forked:
        return torch.mm(a.t(), b)
    ready = torch.cuda.Event()
    ready.record(torch.cuda.current_stream())
    side.wait_event(ready)
    with torch.cuda.stream(side):
        return torch.mm(a.t(), b)


def chain(forked):
    dy = dy0
    grads = []
    for l in range(L):
        grads.append(wgrad(dy, h[l], forked))               # dW_proj
        dh = torch.mm(dy, w_proj)
        dpre, _, db = Mk.gelu_bwd(dh, pre[l], bias_grad=True, overwrite_dh=True)
        grads.append(wgrad(dpre, x[l], forked))             # dW_fc
        dx = torch.mm(dpre, w_fc)
        ln_out, _, _ = Mk.gelu_bwd(ln_a, ln_b)          # stand-in for add+LayerNorm backward
        dy = dx + ln_out[:, :C]
    if forked:
        torch.cuda.current_stream().wait_stream(side)
    return dy, grads


def capture(forked):
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        chain(forked)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        res = chain(forked)
    return g, res
for name in ("serial", "forked", "serial", "forked"):
    g, (dy, grads) = capture(name == "forked")
    g.replay(); torch.cuda.synchronize()
    ms = do_bench(g.replay, warmup=20, rep=400, return_mode="median")
    ref = out.setdefault("ref", (dy.clone(), [t.clone() for t in grads]))
    same = torch.equal(ref[0], dy) and all(torch.equal(a, b) for a, b in zip(ref[1], grads))
    print(f"{name:8s} {ms:.3f} ms for {L} layers  identical to the first: {same}", flush=True)
    out.setdefault(name, []).append(ms)
out.pop("ref")
print("device", torch.cuda.get_device_name(), torch.__version__, triton.__version__)
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__, ms=out),
          open(os.path.join(os.environ.get("OUT", "/tmp"), "streams_probe.json"), "w"))
