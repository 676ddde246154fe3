"""exp: attention kernels at the step's shape (B 32, T 512, H 12, D 64, bf16, packed views) for explicit
configs, maxnreg caps among them; CUDA-graph replays of 10 calls, per-call medians in us."""
import json, sys
import torch, triton
from triton.testing import do_bench
import fastgpt.kernels.attention as A
sys.path.insert(0, "benchmarks")
from timing import _capture
torch.manual_seed(0)
B, T, H, D = 32, 512, 12, 64
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = A.qkv_views(qkv)
scale = D ** -0.5
out = qkv.new_empty(B, T, H, D); ot = out.transpose(1, 2)
_, lse = A.attention_fwd(q, k, v, True, scale, out=ot, config=dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3))
dout = torch.randn_like(out); dot = dout.transpose(1, 2)
dqkv = torch.empty_like(qkv); dq, dk, dv = A.qkv_views(dqkv)
part = A.bias_grad_partials(q)
_, delta = A.attention_bwd_dq(dot, q, k, v, ot, lse, True, scale, dq=dq, config=dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=3))
def cfg(bm, bn, w, s, mr=None):
    return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s, **({"maxnreg": mr} if mr else {}))
def time(fn):
    fn(); torch.cuda.synchronize()
    g = _capture(lambda: [fn() for _ in range(10)])
    return [round(do_bench(g.replay, warmup=20, rep=200, return_mode="median") * 100, 1) for _ in range(2)]
tc = A.tile_config
cands = [(128, 32, 4, 3, 128), (128, 32, 4, 3), (128, 32, 8, 3), (128, 32, 8, 2), (128, 16, 4, 3), (256, 32, 8, 3),
         (256, 32, 8, 3, 128), (128, 32, 4, 2, 128), (128, 32, 4, 4, 128), (64, 32, 4, 3), (256, 64, 8, 3)]
runs = {"fwd": (lambda c: A.attention_fwd(q, k, v, True, scale, out=ot, config=c), [tc(t) for t in cands])}
for name, (fn, cfgs) in runs.items():
  for rep in range(2):
    for c in cfgs:
        try:
            us = time(lambda: fn(c))
        except Exception as e:
            us = repr(e)[:120]
        print("RESULT", json.dumps(dict(kernel=name, cfg=c, us=us)), flush=True)
