"""Session 22, run 169: the attention kernels' program order. kernels/attention.HEAD_MAJOR=True
launches each head's blocks as consecutive programs (a 1-D grid), so the programs streaming one
head's K / V (forward, dQ) or Q / dO (dK/dV) run together and read them from L2; False is the 2-D
grid (B*H, blocks) of before (every head's first block, then every head's second: at GPT-2's step
shape the 50 MB of K and V pass through L2 between two blocks of one head). GPT-2's step shape
(B 32, T 512, H 12, D 64, bf16, causal, packed qkv, the qkv bias gradient as the model takes it),
CUDA-graph replays of 10 calls, three rounds, both orders autotuned (HEAD_MAJOR is in the key)."""
import torch
import triton.testing
from fastgpt.kernels import attention as A


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
dout = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
scale = D ** -0.5
timers, outs = {}, {}
for head_major in (False, True):
    A.HEAD_MAJOR = head_major
    out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
    dqkv, dbias = A.attention_qkvpacked_bwd(dout, qkv, out, lse, True, scale, bias_grad_dtype=torch.bfloat16)
    torch.cuda.synchronize()
    outs[head_major] = (out, lse, dqkv, dbias)
    name = "head-major" if head_major else "block-major (before)"

    def fwd(hm=head_major):
        A.HEAD_MAJOR = hm
        return A.attention_qkvpacked_fwd(qkv, True, scale)

    def bwd(hm=head_major, out=out, lse=lse):
        A.HEAD_MAJOR = hm
        return A.attention_qkvpacked_bwd(dout, qkv, out, lse, True, scale, bias_grad_dtype=torch.bfloat16)
    timers[f"fwd {name}"] = graphed(fwd)
    timers[f"bwd {name}"] = graphed(bwd)
for i, what in enumerate(("out", "lse", "dqkv", "dbias")):
    a, b = outs[False][i].float(), outs[True][i].float()
    print(f"CHECK {what}: max|head-major - before| {(a - b).abs().max().item():.3e} "
          f"(bitwise {bool(torch.equal(outs[False][i], outs[True][i]))})", flush=True)
results = {}
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:28s} " + " ".join(f"{x:7.1f}" for x in ts) + f"   min {min(ts):.1f} us", flush=True)
