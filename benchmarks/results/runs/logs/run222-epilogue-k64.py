"""Session 28, run 222: run 221's variants with K = 64 (one K step a tile, so the main loops are ~1/12
of the step's and the epilogues set the time): how long is the epilogue itself, per tile? And at
K = 768 again beside them. Earlier, run 221: which part of the MLP forward's epilogue is not hidden (run 213: the tree 159.4
us, one plain output 127.5, no epilogue 112.7)? EPI 1: the GELU and code arithmetic without stores;
EPI 2: both stores (h = acc, a constant code) without the arithmetic; EPI 3: the GELU and h's store,
no code. Kernel: runs/logs/run221_anatomy_gluon.diff. Four alternating rounds. Earlier, run 213:
what paces the MLP forward's Gluon kernel (c_fc's shape, 16384 x 768 -> 3072,
bias + GELU + codes)? Run 212's multicast of the A tile (half its L2 reads) did not speed it up. The
same kernel with parts removed (kernel: runs/logs/run213_anatomy_gluon.py, the tree's file with
constexpr flags): NO_FILL (each slot loaded once, then reused stale: no operand traffic after the
ring's first lap), NO_STORE (no epilogue stores), PLAIN (one output, no GELU); and cuBLAS's GEMM
of the shape (kernels.gemm, tuned, with the bias). CUDA-graph replays of 10 calls, three
alternating rounds, min."""
import importlib.util
import os
import sys

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402

_spec = importlib.util.spec_from_file_location("anat", os.path.join(os.path.dirname(__file__), ".run221_anatomy_gluon.py"))
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def launch(a, w, out, aux, bias, plain=False, no_fill=0, no_store=False, scratch=None, epi=0):
    M, K = a.shape
    N = out.shape[1]
    tiles = triton.cdiv(M, 128) * triton.cdiv(N, 128)
    d = probe._descriptor
    probe._mlp_gluon_kernel[(min(tiles, torch.cuda.get_device_properties(0).multi_processor_count),)](
        d(a, [128, 64]), d(w, [128, 64]), d(out, [64, 128]), d(aux, [64, 128]), d(aux, [64, 128]),
        bias, out, scratch, out, M, N, K, GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, B_NK=True,
        COOPERATIVE=False, NUM_STAGES=5, CONSUMER_REGS=probe.CONSUMER_REGS, PRODUCER_REGS=probe.PRODUCER_REGS,
        GRAD_CODE=aux.dtype == torch.uint8, PLAIN=plain, NO_FILL=no_fill, NO_STORE=no_store, EPI=epi, num_warps=4,
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


M, C, H = 16384, 768, 3072
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
h = torch.empty(M, H, device=dev, dtype=bf)
code = torch.empty(M, H, device=dev, dtype=torch.uint8)
h2 = torch.empty(M, H, device=dev, dtype=bf)
code2 = torch.empty(M, H, device=dev, dtype=torch.uint8)
scratch = torch.zeros(1024, device=dev)
x64 = torch.randn(M, 64, device=dev, dtype=bf)
w64 = (torch.randn(H, 64, device=dev) * 0.125).to(bf)
calls = {}
for kname, (xa, wa) in (("K=64", (x64, w64)), ("K=768", (x, w))):
    calls[f"{kname} tree epilogue"] = lambda xa=xa, wa=wa: launch(xa, wa, h2, code2, b, scratch=scratch)
    calls[f"{kname} EPI 1 arithmetic only"] = lambda xa=xa, wa=wa: launch(xa, wa, h2, code2, b, epi=1, scratch=scratch)
    calls[f"{kname} EPI 2 both stores only"] = lambda xa=xa, wa=wa: launch(xa, wa, h2, code2, b, epi=2, scratch=scratch)
    calls[f"{kname} NO_STORE"] = lambda xa=xa, wa=wa: launch(xa, wa, h2, code2, b, no_store=True, scratch=scratch)
for name, fn in calls.items():
    fn()
torch.cuda.synchronize()
tree.launch_linear_gelu(x, w, b, h, code)
launch(x, w, h2, code2, b, scratch=scratch)
torch.cuda.synchronize()
print(f"CHECK probe copy equals the tree: h {bool(torch.equal(h, h2))}, codes {bool(torch.equal(code, code2))}", flush=True)
timers = {name: graphed(fn) for name, fn in calls.items()}
results = {}
for rnd in range(4):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:22s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
