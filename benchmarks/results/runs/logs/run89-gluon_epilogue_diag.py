"""exp: the Gluon MLP kernel's time by epilogue (FASTGPT_GLUON_DIAG: 0 the kernel, 1 pre only / no pre,
2 pre + h without GELU, 3 no stores), and cuBLAS's plain GEMMs, at the step's shapes."""
import json, os, sys
import torch, triton
from triton.testing import do_bench
import fastgpt.kernels.mlp as Mk
import fastgpt.kernels.mlp_gluon as G
triton.set_allocator(Mk._tma_allocator)
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
dev = "cuda"
x = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
w_fc = (torch.randn(H, C, device=dev) * 0.05).bfloat16()
b_fc = (torch.randn(H, device=dev) * 0.1).bfloat16()
w_proj = (torch.randn(C, H, device=dev) * 0.03).bfloat16()
dy = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
pre = (x @ w_fc.t() + b_fc)
h = torch.empty_like(pre); p2 = torch.empty_like(pre); dpre = torch.empty_like(pre)
part = torch.empty(G.partial_rows(M, None), H, device=dev)
d = int(os.environ.get("FASTGPT_GLUON_DIAG", "0"))
med = lambda f: [round(do_bench(f, warmup=50, rep=300, return_mode="median") * 1e3, 1) for _ in range(2)]
row = dict(diag=d, fwd_us=med(lambda: G.launch_linear_gelu(x, w_fc, b_fc, h, p2)),
           bwd_us=med(lambda: G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, part)),
           bwd_nobias_us=med(lambda: G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, None)))
if d == 0:
    row["cublas_fwd_mm_us"] = med(lambda: torch.mm(x, w_fc.t()))
    row["cublas_fwd_addmm_us"] = med(lambda: torch.addmm(b_fc, x, w_fc.t()))
    row["cublas_bwd_mm_us"] = med(lambda: torch.mm(dy, w_proj))
print("RESULT", json.dumps(row), flush=True)
