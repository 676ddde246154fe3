"""Session 21 probe: attention's forward with TMA tensor descriptors (host TensorDescriptor over the
packed (B*T, 3*H*D) qkv and the (B*T, H*D) output), optionally with triton's automatic warp
specialisation, against the tree's kernel (autotuned) and SDPA's cuDNN, at GPT-2's step shape
(B 32, T 512, H 12, D 64, bf16, causal). CUDA-graph replays of 10 calls; outputs checked."""
import sys
import torch, triton, triton.language as tl
import triton.testing
from triton.tools.tensor_descriptor import TensorDescriptor
from fastgpt.kernels import attention as prod

@triton.jit
def _inner(acc, l_i, m_i, q, desc_kv, row0, col_k, col_v, rows, lo, hi, qk_scale,
           BLOCK_N: tl.constexpr, MASK: tl.constexpr, WS: tl.constexpr):
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WS):
        k = desc_kv.load([row0 + start_n, col_k])
        qk = tl.dot(q, k.T)
        if MASK:
            cols = start_n + tl.arange(0, BLOCK_N)
            qk = tl.where(rows[:, None] >= cols[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = desc_kv.load([row0 + start_n, col_v])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    return acc, l_i, m_i

@triton.jit
def _fwd_tma(desc_q, desc_kv, desc_o, LSE, H, T, qk_scale,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WS: tl.constexpr):
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    start_m = (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M
    row0 = b * T
    rows = start_m + tl.arange(0, BLOCK_M)
    q = desc_q.load([row0 + start_m, h * HEAD_DIM])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    col_k = (H + h) * HEAD_DIM
    col_v = (2 * H + h) * HEAD_DIM
    full_hi = (start_m // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _inner(acc, l_i, m_i, q, desc_kv, row0, col_k, col_v, rows, 0, full_hi, qk_scale, BLOCK_N, False, WS)
    acc, l_i, m_i = _inner(acc, l_i, m_i, q, desc_kv, row0, col_k, col_v, rows, full_hi, start_m + BLOCK_M, qk_scale,
                           BLOCK_N, True, WS)
    tl.store(LSE + bh.to(tl.int64) * T + rows, m_i + tl.math.log2(l_i))
    desc_o.store([row0 + start_m, h * HEAD_DIM], (acc / l_i[:, None]).to(desc_o.dtype))

def fwd_tma(qkv, bm, bn, warps, stages, ws):
    B, T, _, H, D = qkv.shape
    q2 = qkv.view(B * T, 3 * H * D)
    out = qkv.new_empty(B, T, H, D)
    lse = torch.empty(B * H, T, device=qkv.device, dtype=torch.float32)
    dq = TensorDescriptor.from_tensor(q2, [bm, D])
    dkv = TensorDescriptor.from_tensor(q2, [bn, D])
    do = TensorDescriptor.from_tensor(out.view(B * T, H * D), [bm, D])
    _fwd_tma[(B * H, T // bm)](dq, dkv, do, lse, H, T, D ** -0.5 * 1.4426950408889634,
                               HEAD_DIM=D, BLOCK_M=bm, BLOCK_N=bn, WS=ws, num_warps=warps, num_stages=stages)
    return out, lse

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
ref_out, ref_lse = prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5)
q, k, v = (qkv[:, :, i].transpose(1, 2).contiguous() for i in range(3))
from torch.nn.attention import sdpa_kernel, SDPBackend
def cudnn():
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
results = {}
timers = {"tree (autotuned)": graphed(lambda: prod.attention_qkvpacked_fwd(qkv, True, D ** -0.5)),
          "sdpa cudnn (contiguous)": graphed(cudnn)}
variants = [(128, 64, 8, 3, False), (128, 64, 4, 3, False), (128, 128, 8, 3, False), (128, 32, 4, 3, False),
            (128, 64, 8, 2, False), (64, 64, 4, 3, False), (128, 128, 8, 2, False),
            (128, 64, 4, 3, True), (128, 128, 4, 2, True), (128, 64, 4, 2, True)]
# automatic warp specialisation may abort the process in the compiler (triton 3.9 offline does):
# its variants run in a process of their own ("ws" argument)
variants = [v for v in variants if v[4] == ("ws" in sys.argv[1:])]
for var in variants:
    name = "tma bm%d bn%d w%d s%d%s" % (var[:4] + (" ws" if var[4] else "",))
    try:
        out, lse = fwd_tma(qkv, *var)
        torch.cuda.synchronize()
        err = (out.float() - ref_out.float()).abs().max().item()
        lerr = (lse - ref_lse.view(B * H, T)).abs().max().item()
        timers[name] = graphed(lambda var=var: fwd_tma(qkv, *var))
        print(f"CHECK {name}: max|out diff| {err:.2e}, max|lse diff| {lerr:.2e}", flush=True)
        if not (err < 3e-2 and lerr < 1e-2):
            print(f"WRONG {name}", flush=True); timers.pop(name)
    except Exception as e:
        print(f"FAIL {name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
for rnd in range(3):
    for name, t in timers.items():
        results.setdefault(name, []).append(t())
for name, ts in results.items():
    print(f"RESULT {name:32s} " + " ".join(f"{x:7.1f}" for x in ts) + f"   min {min(ts):.1f} us", flush=True)
