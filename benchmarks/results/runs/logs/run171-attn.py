"""Session 22, run 171: run167-attention_gluon.py's ping-pong forward with its persistent tiles in
head-major order (each head's query blocks consecutive, heaviest first; programs take tiles in a
snake, pid on even rounds and nprog - 1 - pid on odd ones, so that with 132 = 33 x 4 programs each
alternates heavy and light), run171-attention_gluon_headmajor.py, against the tree's Triton kernel
(head-major since run 169) and cuDNN; CUDA-graph replays of 10 calls, three rounds. (The DIAG flags
of run 168's copy are all on here.) The call before this one ran the new GPU test
(tests/test_attention.py -k program_order) and failed on this script's `kernel=` argument, which
the tree no longer has; this copy has it removed, as it ran."""
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
    timers["triton (tree, autotuned)"] = graphed(lambda: prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5))
    timers["sdpa cudnn (contiguous)"] = graphed(cudnn)
else:
    spec = importlib.util.spec_from_file_location("diag_attention_gluon", os.path.join(os.path.dirname(__file__),
                                                                                        ".run171_attention_gluon.py"))
    ag = importlib.util.module_from_spec(spec); sys.modules["diag_attention_gluon"] = ag; spec.loader.exec_module(ag)
    out = qkv.new_empty(B, T, H, D)
    lse = torch.empty(B, H, T, device="cuda")
    flags = " ".join(f"{k}={os.environ.get(k, '1')}" for k in ("DIAG_EXP", "DIAG_PV", "DIAG_TURN"))
    for stages in (3, 4):
        timers[f"gluon {flags} stages {stages}"] = graphed(
            lambda stages=stages: ag.launch_attention_qkvpacked_fwd(qkv, out, lse, True, D ** -0.5, stages=stages))
    if True:
        from fastgpt.kernels import attention as prod
        ref, ref_lse = prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5)
        ag.launch_attention_qkvpacked_fwd(qkv, out, lse, True, D ** -0.5)
        print(f"CHECK max|out - triton| {(out.float() - ref.float()).abs().max().item():.2e}, "
              f"max|lse - triton| {(lse - ref_lse).abs().max().item():.2e}", flush=True)
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:44s} " + " ".join(f"{x:7.1f}" for x in ts) + f"   min {min(ts):.1f} us", flush=True)
