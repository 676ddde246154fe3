"""Session 29, run 228: run 224's per-tile clock stamps on every launch of the tree's Gluon kernel
at the step's shapes (.run228_timed.py: kernels/mlp_gluon.py with four %clock64 stamps a tile):
c_fc's forward with codes, the backward (dpre = dy @ W * gelu'(codes), with the bias partials)
and the LM head's exp chunk. Per tile: turn wait, K loop, epilogue, the gap from a consumer's
epilogue end to its next tile's start, and the period between successive K loop starts on an
SM. Question: does the backward lose a gap per tile between epilogue and K loop, as the forward
does (run 224: 1295 cycles, the bias load) and the exp chunk did (its shift loads, run 226)?"""
import importlib.util
import os
import sys

import numpy as np
import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("timed", os.path.join(HERE, ".run228_timed.py"))
timed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timed)


def stamps(name, fn, tiles, nprog):
    clocks = torch.zeros(tiles * 4, device="cuda", dtype=torch.int64)
    timed.CLOCKS[0] = clocks
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    c = clocks.view(-1, 4).cpu().numpy().astype(np.int64)
    t = np.arange(tiles)
    period = c[t[t + nprog < tiles] + nprog, 1] - c[t[t + nprog < tiles], 1]
    nxt = t[t + 2 * nprog < tiles]
    gap = c[nxt + 2 * nprog, 0] - c[nxt, 3]
    med = lambda v: f"{np.median(v):6.0f}"  # noqa: E731
    print(f"RESULT clocks {name:8s} (cycles, medians): turn wait {med(c[:, 1] - c[:, 0])} K loop {med(c[:, 2] - c[:, 1])} "
          f"epilogue {med(c[:, 3] - c[:, 2])} epilogue end -> next tile start {med(gap)} K-loop start period {med(period)}",
          flush=True)


bf, dev = torch.bfloat16, "cuda"
nsm = torch.cuda.get_device_properties(0).multi_processor_count
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
h = torch.empty(M, H, device=dev, dtype=bf)
code = torch.empty(M, H, device=dev, dtype=torch.uint8)
tiles = triton.cdiv(M, 128) * triton.cdiv(H, 128)
stamps("forward", lambda: timed.launch_linear_gelu(x, w, b, h, code), tiles, min(tiles, nsm))
dy = torch.randn(M, C, device=dev, dtype=bf)
w2 = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf)   # c_proj's weight (C, H): dh = dy @ w2
dpre = torch.empty(M, H, device=dev, dtype=bf)
partials = torch.empty(timed.partial_rows(M), H, device=dev)
stamps("backward", lambda: timed.launch_matmul_gelu_grad(dy, w2, code, dpre, partials), tiles, min(tiles, nsm))
R, V = 8192, 50304
xl = torch.randn(R, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
shift = torch.randn(R, device=dev) * 0.5
e = torch.empty((R, V), device=dev, dtype=bf)
sums = torch.empty((R, triton.cdiv(V, 128)), device=dev)
tiles = triton.cdiv(R, 128) * triton.cdiv(V, 128)
stamps("exp", lambda: timed.launch_linear_exp(xl, wte, shift, e, sums, 70.0), tiles, min(tiles, nsm))
