"""exp (run 101): the fused attention backward with the dQ arrivals and sums after the key loop,
tiles at the step's shape (B 32, T 512, H 12, D 64, bf16, packed views, qkv bias partials) against
the dQ + dK/dV kernels; CUDA-graph replays of 10 calls, per-call medians in us. --noop: the sums
left out (dQ wrong; the loop's cost alone)."""
import json, sys
import torch
import triton
import triton.language as tl
from triton.testing import do_bench
import fastgpt.kernels.attention as A
NOOP = "--noop" in sys.argv
if NOOP:
    @triton.jit
    def _no_sum(DQ, stride_dqt, stride_dqd, DO, stride_dot, stride_dod, DQShares, Arrivals, BiasPartials,
                bh, H, lo, T, sm_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, QUERY_BLOCKS: tl.constexpr, CAUSAL: tl.constexpr,
                BIAS_GRAD: tl.constexpr, PARTIAL_ROWS: tl.constexpr, DOT_PRECISION: tl.constexpr):
        pass
    A._attention_bwd_dq_sum = _no_sum
sys.path.insert(0, "benchmarks")
from timing import _capture
torch.manual_seed(0)
B, T, H, D = 32, 512, 12, 64
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = A.qkv_views(qkv)
scale = D ** -0.5
out = qkv.new_empty(B, T, H, D); ot = out.transpose(1, 2)
_, lse = A.attention_fwd(q, k, v, True, scale, out=ot)
dout = torch.randn_like(out); dot = dout.transpose(1, 2)
part = A.bias_grad_partials(q)
ref = torch.empty_like(qkv)
A.attention_bwd(dot, q, k, v, ot, lse, True, scale, grads=A.qkv_views(ref), partials=part, fused=False)
ref_part = part.sum((0, 1)).clone()
def cfg(bm, bn, w, s, mr=None):
    return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s, **({"maxnreg": mr} if mr else {}))
def time(fn):
    fn(); torch.cuda.synchronize()
    g = _capture(lambda: [fn() for _ in range(10)])
    return [round(do_bench(g.replay, warmup=20, rep=200, return_mode="median") * 100, 1) for _ in range(2)]
def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())
dqkv = torch.empty_like(qkv)
if not NOOP:
    def unfused():
        A.attention_bwd(dot, q, k, v, ot, lse, True, scale, grads=A.qkv_views(dqkv), partials=part, fused=False)
    print("RESULT", json.dumps(dict(kernel="unfused dq+dkdv (autotuned)", us=time(unfused))), flush=True)
cfgs = [cfg(16, 64, 4, 3), cfg(16, 64, 4, 4), cfg(32, 64, 4, 3), cfg(32, 64, 4, 4), cfg(32, 64, 8, 3),
        cfg(32, 128, 8, 3), cfg(64, 128, 8, 3), cfg(64, 128, 8, 2), cfg(64, 64, 8, 3), cfg(16, 128, 4, 3),
        cfg(32, 64, 4, 3, 128), cfg(16, 64, 4, 3, 128)]
if NOOP:
    cfgs = [cfg(16, 64, 4, 3), cfg(32, 64, 4, 3), cfg(64, 128, 8, 3), cfg(32, 128, 8, 3)]
best = None
for c in cfgs:
    try:
        got = torch.full_like(qkv, float("nan"))
        part.fill_(float("nan"))
        A.attention_bwd(dot, q, k, v, ot, lse, True, scale, grads=A.qkv_views(got), partials=part, fused=True, fused_config=c)
        errs = [rel(got[:, :, i], ref[:, :, i]) for i in range(3)] + [rel(part.sum((0, 1))[j], ref_part[j]) for j in (0, 2)]
        det = torch.empty_like(qkv)
        A.attention_bwd(dot, q, k, v, ot, lse, True, scale, grads=A.qkv_views(det), partials=part, fused=True, fused_config=c)
        same = bool(torch.equal(det, got))
        us = time(lambda: A.attention_bwd(dot, q, k, v, ot, lse, True, scale, grads=A.qkv_views(dqkv), partials=part, fused=True, fused_config=c))
        res = dict(kernel="fused-noop" if NOOP else "fused", cfg=c, us=us, rel_vs_unfused=[f"{e:.1e}" for e in errs],
                   nan=bool(torch.isnan(got).any() or torch.isnan(part).any()), deterministic=same)
        ok = max(errs) < 1e-3 and same
        if not NOOP and ok and (best is None or min(us) < best[0]):
            best = (min(us), c)
    except Exception as e:
        res = dict(kernel="fused", cfg=c, error=repr(e)[:300])
    print("RESULT", json.dumps(res), flush=True)
if best is not None:
    json.dump(best[1], open(sys.argv[1], "w"))
