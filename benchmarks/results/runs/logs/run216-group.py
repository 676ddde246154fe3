"""Session 28, run 216: run 215 found the exp GEMM slower with more row tiles a group (GROUP 16, 32, 64
against the tree's 8): fewer? GROUP 1, 2, 4, 8 at the exp GEMM's shape (plain and exp epilogue) and
at the MLP's forward and backward shapes (the tree's epilogues). Earlier, run 215: run 214 found the LM head's exp-GEMM shape (8192 x 768 -> 50304) 130 us slower
than cuBLAS with one plain output, its operand loads costing ~240 us (NO_FILL). Which operand: A (the
chunk's rows, 12.6 MB) or B (the vocabulary's weight, 77 MB, re-read from DRAM by every group of
GROUP row tiles)? NO_FILL as a mask (1: A stale after the ring's first lap, 2: B), and the tile
order's GROUP (8 in the tree; 16, 32, 64). Kernel: runs/logs/run215_anatomy_gluon.py. CUDA-graph
replays (3 calls), three alternating rounds, min."""
import importlib.util
import os
import sys

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("anat", os.path.join(os.path.dirname(__file__), ".run215_anatomy_gluon.py"))
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def launch(a, w, out, b_nk, vector=None, sums=None, exp=False, plain=False, no_fill=0, no_store=False, scratch=None,
           group=8):
    M, K = a.shape
    N = out.shape[1]
    tiles = triton.cdiv(M, 128) * triton.cdiv(N, 128)
    d = probe._descriptor
    probe._mlp_gluon_kernel[(min(tiles, torch.cuda.get_device_properties(0).multi_processor_count),)](
        d(a, [128, 64]), d(w, [128, 64] if b_nk else [64, 128]), d(out, [64, 128]), d(out, [64, 128]), d(out, [64, 128]),
        vector if vector is not None else out, sums if sums is not None else out, scratch, out, M, N, K,
        GELU_GRAD=False, HAS_BIAS=False, BIAS_GRAD=False, B_NK=b_nk, COOPERATIVE=False, NUM_STAGES=5,
        CONSUMER_REGS=probe.CONSUMER_REGS, PRODUCER_REGS=probe.PRODUCER_REGS, EXP_SHIFT=exp, CAP=70.0 if exp else 0.0,
        GRAD_CODE=False, PLAIN=plain, NO_FILL=no_fill, NO_STORE=no_store, GROUP=group, num_warps=4,
        maxnreg=probe.MAX_REGS)


def graphed(fn, n=10):
    fn(); torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=300, return_mode="median") / n * 1e3


M, C, H, V, R = 16384, 768, 3072, 50304, 8192
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
xl = torch.randn(R, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
shift = torch.randn(R, device=dev) * 0.5
e = torch.empty(R, V, device=dev, dtype=bf)
e2 = torch.empty(R, V, device=dev, dtype=bf)
sums = torch.empty(R, triton.cdiv(V, 128), device=dev)
sums2 = torch.empty_like(sums)
scratch = torch.zeros(1024, device=dev)
dy = torch.randn(M, C, device=dev, dtype=bf)
w_proj = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf)
x = torch.randn(M, C, device=dev, dtype=bf)
w_fc = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device=dev) * 0.5).to(bf)
h = torch.empty(M, H, device=dev, dtype=bf)
code = torch.empty(M, H, device=dev, dtype=torch.uint8)
dpre = torch.empty(M, H, device=dev, dtype=bf)
parts = torch.empty(tree.partial_rows(M), H, device=dev)


def mlp(fwd, group):
    """The MLP's forward (codes) or backward (codes, partials) with the tree's flags, at GROUP."""
    d = probe._descriptor
    grid = (min(triton.cdiv(M, 128) * triton.cdiv(H, 128), torch.cuda.get_device_properties(0).multi_processor_count),)
    if fwd:
        args = (d(x, [128, 64]), d(w_fc, [128, 64]), d(h, [64, 128]), d(code, [64, 128]), d(code, [64, 128]),
                b_fc, h, scratch, h, M, H, C)
    else:
        args = (d(dy, [128, 64]), d(w_proj, [64, 128]), d(dpre, [64, 128]), d(dpre, [64, 128]), d(code, [64, 128]),
                dpre, parts, scratch, dpre, M, H, C)
    probe._mlp_gluon_kernel[grid](*args, GELU_GRAD=not fwd, HAS_BIAS=fwd, BIAS_GRAD=not fwd, B_NK=fwd,
                                  COOPERATIVE=False, NUM_STAGES=5, CONSUMER_REGS=probe.CONSUMER_REGS,
                                  PRODUCER_REGS=probe.PRODUCER_REGS, GRAD_CODE=True, GROUP=group, num_warps=4,
                                  maxnreg=probe.MAX_REGS)


calls = {}
for g in (1, 2, 4, 8):
    calls[f"exp-shape PLAIN GROUP {g}"] = lambda g=g: launch(xl, wte, e2, True, plain=True, group=g, scratch=scratch)
for g in (2, 4, 8):
    calls[f"exp GROUP {g}"] = lambda g=g: launch(xl, wte, e2, True, shift, sums2, exp=True, group=g, scratch=scratch)
for g in (2, 4, 8):
    calls[f"mlp fwd GROUP {g}"] = lambda g=g: mlp(True, g)
    calls[f"mlp bwd GROUP {g}"] = lambda g=g: mlp(False, g)
for fn in calls.values():
    fn()
torch.cuda.synchronize()
tree.launch_linear_exp(xl, wte, shift, e, sums, 70.0)
launch(xl, wte, e2, True, shift, sums2, exp=True, group=4, scratch=scratch)
torch.cuda.synchronize()
print(f"CHECK exp GROUP 4 equals the tree: e {bool(torch.equal(e, e2))}, sums {bool(torch.equal(sums, sums2))}", flush=True)
timers = {name: graphed(fn, n=3 if name.startswith("exp") else 10) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:24s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
