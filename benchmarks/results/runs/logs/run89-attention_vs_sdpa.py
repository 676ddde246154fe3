"""exp: the attention kernels at the step's shape (B 32, T 512, H 12, D 64, bf16, packed qkv views),
the dQ kernel with and without the qkv bias partials, the autotuner's picks; cuDNN / flash SDPA on
contiguous (B, H, T, D) for scale."""
import json
import torch, triton
from triton.testing import do_bench
import fastgpt.kernels.attention as A
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
med = lambda f: [round(do_bench(f, warmup=50, rep=300, return_mode="median") * 1e3, 1) for _ in range(2)]
row = {}
row["fwd"] = med(lambda: A.attention_qkvpacked_fwd(qkv, True, scale))
row["dq_bias"] = med(lambda: A.attention_bwd_dq(dot, q, k, v, ot, lse, True, scale, dq=dq, partials=part))
row["dq_nobias"] = med(lambda: A.attention_bwd_dq(dot, q, k, v, ot, lse, True, scale, dq=dq))
_, delta = A.attention_bwd_dq(dot, q, k, v, ot, lse, True, scale, dq=dq)
row["dkdv"] = med(lambda: A.attention_bwd_dkdv(dot, q, k, v, lse, delta, True, scale, dk=dk, dv=dv))
row["bwd_packed_bias"] = med(lambda: A.attention_qkvpacked_bwd(dout, qkv, out, lse, True, scale, dqkv=dqkv, bias_grad_dtype=torch.bfloat16))
for name, kern in (("fwd", A._attention_fwd_kernel), ("dq", A._attention_bwd_dq_kernel), ("dkdv", A._attention_bwd_dkdv_kernel)):
    row[f"picks_{name}"] = {str(k): str(c) for k, c in kern.cache.items()}
from torch.nn.attention import sdpa_kernel, SDPBackend
qc, kc, vc = (t.contiguous().requires_grad_() for t in (q, k, v))
for be in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION):
    try:
        with sdpa_kernel(be):
            o = torch.nn.functional.scaled_dot_product_attention(qc, kc, vc, is_causal=True)
            row[f"sdpa_{be.name}_fwd"] = med(lambda: torch.nn.functional.scaled_dot_product_attention(qc, kc, vc, is_causal=True))
            g = torch.randn_like(o)
            row[f"sdpa_{be.name}_fwdbwd"] = med(lambda: torch.autograd.grad(torch.nn.functional.scaled_dot_product_attention(qc, kc, vc, is_causal=True), (qc, kc, vc), g))
    except Exception as e:
        row[f"sdpa_{be.name}"] = repr(e)[:200]
print("RESULT", json.dumps(row), flush=True)
