"""exp: the dQ kernel at the step's shape for each DQ config, with and without the qkv bias partials
(explicit configs; CUDA-graph replay medians so the host's launch cost is not timed)."""
import json
import torch, triton
import fastgpt.kernels.attention as A
import sys; sys.path.insert(0, 'benchmarks')
from timing import _capture
from triton.testing import do_bench
torch.manual_seed(0)
B, T, H, D = 32, 512, 12, 64
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = A.qkv_views(qkv)
scale = D ** -0.5
out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
dout = torch.randn_like(out)
ot, dot = out.transpose(1, 2), dout.transpose(1, 2)
dqkv = torch.empty_like(qkv)
dq, dk, dv = A.qkv_views(dqkv)
part = A.bias_grad_partials(q)
ref = None
for c in A.DQ_CONFIGS:
    cfg = dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages)
    row = dict(cfg=cfg)
    for name, p in (("bias", part), ("nobias", None)):
        fn = lambda: A.attention_bwd_dq(dot, q, k, v, ot, lse, True, scale, dq=dq, partials=p, config=cfg)
        fn(); torch.cuda.synchronize()
        if name == "bias":
            got = (dq.clone(), part.sum((0, 1)))
            ref = ref or got
            row["same_as_first"] = bool(torch.allclose(got[0].float(), ref[0].float(), rtol=2e-2, atol=2e-2))
        g = _capture(lambda: [fn() for _ in range(10)])
        row[name] = [round(do_bench(g.replay, warmup=20, rep=200, return_mode="median") * 100, 1) for _ in range(2)]
    print("RESULT", json.dumps(row), flush=True)
