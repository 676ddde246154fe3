# Record note: during runs 167-168 the tree had kernels/attention_gluon.py (kept here as
# run167-attention_gluon.py) and kernels/attention.attention_qkvpacked_fwd(..., kernel=) /
# FWD_KERNEL choosing it; neither was kept (the Gluon forward was slower than the Triton one).
"""Session 22, run 168: what bounds kernels/attention_gluon.py's forward (run 167: 70.9-71.4 us a
layer at GPT-2's step shape, against the Triton kernel's 68.2 and cuDNN's 54.8). Diagnostic copies
of the kernel (.run168_attention_gluon.py; DIAG_EXP=0: an FMA instead of each exponential,
DIAG_PV=0: no P V wgmma, DIAG_TURN=0: no ping-pong ordering of the two warpgroups), each timed as
CUDA-graph replays of 10 calls, three rounds; with `ref` the Triton kernel and cuDNN instead."""
import importlib.util
import os
import sys
import torch
import triton.testing


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
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=400, return_mode="median") / n * 1e3


B, T, H, D = 32, 512, 12, 64
torch.manual_seed(0)
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
timers = {}
if sys.argv[1:] == ["ref"]:
    from fastgpt.kernels import attention as prod
    from torch.nn.attention import sdpa_kernel, SDPBackend
    q, k, v = (qkv[:, :, i].transpose(1, 2).contiguous() for i in range(3))

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    timers["triton (tree, autotuned)"] = graphed(lambda: prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5, kernel="triton"))
    timers["sdpa cudnn (contiguous)"] = graphed(cudnn)
else:
    spec = importlib.util.spec_from_file_location("diag_attention_gluon", os.path.join(os.path.dirname(__file__),
                                                                                        ".run168_attention_gluon.py"))
    ag = importlib.util.module_from_spec(spec); sys.modules["diag_attention_gluon"] = ag; spec.loader.exec_module(ag)
    out = qkv.new_empty(B, T, H, D)
    lse = torch.empty(B, H, T, device="cuda")
    flags = " ".join(f"{k}={os.environ.get(k, '1')}" for k in ("DIAG_EXP", "DIAG_PV", "DIAG_TURN"))
    for stages in (3, 4):
        timers[f"gluon {flags} stages {stages}"] = graphed(
            lambda stages=stages: ag.launch_attention_qkvpacked_fwd(qkv, out, lse, True, D ** -0.5, stages=stages))
    if flags == "DIAG_EXP=1 DIAG_PV=1 DIAG_TURN=1":
        from fastgpt.kernels import attention as prod
        ref, ref_lse = prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5, kernel="triton")
        ag.launch_attention_qkvpacked_fwd(qkv, out, lse, True, D ** -0.5)
        print(f"CHECK max|out - triton| {(out.float() - ref.float()).abs().max().item():.2e}, "
              f"max|lse - triton| {(lse - ref_lse).abs().max().item():.2e}", flush=True)
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:44s} " + " ".join(f"{x:7.1f}" for x in ts) + f"   min {min(ts):.1f} us", flush=True)
