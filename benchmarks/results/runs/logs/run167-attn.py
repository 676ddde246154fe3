# Record note: during runs 167-168 the tree had kernels/attention_gluon.py (kept here as
# run167-attention_gluon.py) and kernels/attention.attention_qkvpacked_fwd(..., kernel=) /
# FWD_KERNEL choosing it; neither was kept (the Gluon forward was slower than the Triton one).
"""Session 22, run 167: kernels/attention_gluon.py's warp-specialised forward (FA3-style) against the
tree's Triton forward and SDPA's cuDNN. (1) correctness against float64 at several shapes, outputs
poisoned with NaN first; (2) CUDA-graph replays (first, so that the Triton kernel tunes at this shape) of 10 calls at GPT-2's step shape (B 32, T 512,
H 12, D 64, bf16, causal), three rounds."""
import math
import torch, triton
import triton.testing
from fastgpt.kernels import attention as prod
from fastgpt.kernels import attention_gluon as ag


def reference(qkv, causal, scale):
    q, k, v = (qkv[:, :, i].transpose(1, 2).double() for i in range(3))
    s = q @ k.transpose(-1, -2) * scale
    if causal:
        T = s.shape[-1]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    lse = torch.logsumexp(s, -1) / math.log(2)           # log2 units of the scaled scores
    return (torch.softmax(s, -1) @ v).transpose(1, 2), lse


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


# timing first: the Triton kernel autotunes at the step's shape (its key buckets T = 384 with 512)
B, T, H, D = 32, 512, 12, 64
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = (qkv[:, :, i].transpose(1, 2).contiguous() for i in range(3))
from torch.nn.attention import sdpa_kernel, SDPBackend


def cudnn():
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


out = qkv.new_empty(B, T, H, D)
lse = torch.empty(B, H, T, device="cuda")
timers = {"triton (tree, autotuned)": graphed(lambda: prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5, kernel="triton")),
          "sdpa cudnn (contiguous)": graphed(cudnn)}
for stages in (2, 3, 4):
    timers[f"gluon stages {stages}"] = graphed(
        lambda stages=stages: ag.launch_attention_qkvpacked_fwd(qkv, out, lse, True, D ** -0.5, stages=stages))
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:28s} " + " ".join(f"{x:7.1f}" for x in ts) + f"   min {min(ts):.1f} us", flush=True)


ok = True
torch.manual_seed(0)
for (B, T, H) in [(1, 128, 1), (2, 256, 3), (3, 384, 5), (32, 512, 12), (2, 1024, 4), (1, 2048, 2)]:
    for causal in (True, False):
        for dtype in (torch.bfloat16, torch.float16):
            D = 64
            qkv = (torch.randn(B, T, 3, H, D, device="cuda") * 1.5).to(dtype)
            scale = D ** -0.5
            if not ag.applies(qkv, 0.0):
                print(f"CHECK skip {B, T, H}: does not apply"); ok = False; continue
            out = torch.full((B, T, H, D), float("nan"), device="cuda", dtype=dtype)
            lse = torch.full((B, H, T), float("nan"), device="cuda")
            for stages in (2, 3):
                out.fill_(float("nan")); lse.fill_(float("nan"))
                ag.launch_attention_qkvpacked_fwd(qkv, out, lse, causal, scale, stages=stages)
                torch.cuda.synchronize()
                o_ref, l_ref = reference(qkv, causal, scale)
                rel = ((out.double() - o_ref).norm() / o_ref.norm()).item()
                lerr = (lse.double() - l_ref).abs().max().item()
                t_out, t_lse = prod.attention_qkvpacked_fwd(qkv, causal, scale, kernel="triton")
                t_rel = ((t_out.double() - o_ref).norm() / o_ref.norm()).item()
                good = bool(torch.isfinite(out).all() and torch.isfinite(lse).all()) and rel < 1e-2 and lerr < 1e-3
                ok &= good
                print(f"CHECK {'ok' if good else 'WRONG'} B{B} T{T} H{H} causal={causal} {str(dtype)[6:]} stages{stages}: "
                      f"rel {rel:.2e} (triton {t_rel:.2e}), max|lse err| {lerr:.2e}", flush=True)
print("CHECK all", "ok" if ok else "WRONG", flush=True)


