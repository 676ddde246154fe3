"""exp (run 96): one launch each of the Gluon MLP forward, backward and cuBLAS's plain GEMM, for ncu."""
import os
import torch, triton
import fastgpt.kernels.mlp as Mk
import fastgpt.kernels.mlp_gluon as G
triton.set_allocator(Mk._tma_allocator)
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device="cuda", dtype=torch.bfloat16)
w_fc = (torch.randn(H, C, device="cuda") * 0.05).bfloat16()
b_fc = (torch.randn(H, device="cuda") * 0.1).bfloat16()
w_proj = (torch.randn(C, H, device="cuda") * 0.03).bfloat16()
dy = torch.randn(M, C, device="cuda", dtype=torch.bfloat16)
pre = torch.addmm(b_fc, x, w_fc.t())
h = torch.empty_like(pre); p2 = torch.empty_like(pre); dpre = torch.empty_like(pre)
part = torch.empty(G.partial_rows(M, None), H, device="cuda")
for _ in range(2):
    G.launch_linear_gelu(x, w_fc, b_fc, h, p2)
    G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, part)
    torch.mm(x, w_fc.t())
torch.cuda.synchronize()
