"""exp: DIAG 4's outputs against float64 (relative errors), three shapes."""
import json
import torch, triton
import torch.nn.functional as F
import fastgpt.kernels.mlp as Mk
import fastgpt.kernels.mlp_gluon as G
from fastgpt.testing import rel_error
triton.set_allocator(Mk._tma_allocator)
torch.manual_seed(0)
for M, C, H in ((16384, 768, 3072), (1000, 768, 3072), (333, 256, 520)):
    x = torch.randn(M, C, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(H, C, device="cuda") * 0.05).bfloat16()
    b = (torch.randn(H, device="cuda") * 0.1).bfloat16()
    wp = (torch.randn(C, H, device="cuda") * 0.03).bfloat16()
    dy = torch.randn(M, C, device="cuda", dtype=torch.bfloat16)
    pre64 = x.double() @ w.double().t() + b.double()
    h = torch.full((M, H), float("nan"), device="cuda", dtype=torch.bfloat16); pre = torch.full_like(h, float("nan"))
    G.launch_linear_gelu(x, w, b, h, pre)
    preb = pre64.to(torch.bfloat16)
    dpre = torch.full_like(h, float("nan"))
    part = torch.full((G.partial_rows(M), H), float("nan"), device="cuda")
    G.launch_matmul_gelu_grad(dy, wp, preb, dpre, part)
    torch.cuda.synchronize()
    p = preb.double()
    t = torch.tanh(0.7978845608028654 * (p + 0.044715 * p ** 3))
    grad = 0.5 * (1 + t) + p * 0.5 * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * p * p)
    dpre64 = (dy.double() @ wp.double()) * grad
    print("RESULT", json.dumps(dict(M=M, h=rel_error(h, F.gelu(pre64, approximate="tanh")), pre=rel_error(pre, pre64),
          dpre=rel_error(dpre, dpre64), db=rel_error(part.sum(0), dpre64.sum(0)),
          nan=bool(h.isnan().any() or pre.isnan().any() or dpre.isnan().any()))), flush=True)
