"""Session 28, run 219: the single-accumulator exp GEMM (.run219_exp_single.py, 3.6 JIT) against the
tree's (kernels/mlp_gluon.launch_linear_exp) at the LM head's chunk (8192 x 768 -> 50304): outputs
compared, CUDA-graph replays of 3 calls, six alternating rounds, min and median."""
import importlib.util
import os
import statistics

import torch
import triton
import triton.testing

from fastgpt.kernels import mlp_gluon as tree

_spec = importlib.util.spec_from_file_location("single", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     ".run219_exp_single.py"))
single = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(single)


def graphed(fn, n=3):
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


R, C, V = 8192, 768, 50304
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
sms = torch.cuda.get_device_properties(0).multi_processor_count
xl = torch.randn(R, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
shift = torch.randn(R, device=dev) * 0.5
nblk = triton.cdiv(V, 128)
e1, e2 = (torch.full((R, V), float("nan"), device=dev, dtype=bf) for _ in range(2))
s1, s2 = (torch.full((R, nblk), float("nan"), device=dev) for _ in range(2))
calls = {"tree": lambda: tree.launch_linear_exp(xl, wte, shift, e1, s1, 70.0),
         "single accumulator": lambda: single.launch(xl, wte, shift, e2, s2, sm_count=sms),
         "single accumulator, 4 slots": lambda: single.launch(xl, wte, shift, e2, s2, stages=4, sm_count=sms)}
for fn in calls.values():
    fn()
torch.cuda.synchronize()
single.launch(xl, wte, shift, e2, s2, sm_count=sms)
torch.cuda.synchronize()
print(f"CHECK e equal {bool(torch.equal(e1, e2))}, sums max rel diff {((s1 - s2).abs() / s1.abs()).max().item():.3e}, "
      f"unwritten {int(torch.isnan(e2).sum())} {int(torch.isnan(s2).sum())}", flush=True)
timers = {name: graphed(fn) for name, fn in calls.items()}
results = {}
for rnd in range(6):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:28s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} median {statistics.median(ts):.1f} us",
          flush=True)
