"""exp (run 106): one 4096-row chunk of the LM head's logits GEMM, cuBLAS mm then the Gluon EXP_SHIFT
kernel, one launch each after a warm-up (for Nsight Compute's L2 / DRAM byte counts)."""
import torch
from fastgpt.kernels import mlp_gluon
torch.manual_seed(0)
rows, C, V = 4096, 768, 50304
x = torch.randn(rows, C, device="cuda").to(torch.bfloat16)
w = (torch.randn(V, C, device="cuda") * 0.02).to(torch.bfloat16)
e = torch.empty(rows, V, device="cuda", dtype=torch.bfloat16)
sums = torch.empty(rows, V // 128 + 1, device="cuda")
shift = torch.zeros(rows, device="cuda")
for _ in range(2):
    torch.mm(x, w.t(), out=e)
    mlp_gluon.launch_linear_exp(x, w, shift, e, sums, 70.0)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
torch.mm(x, w.t(), out=e)
mlp_gluon.launch_linear_exp(x, w, shift, e, sums, 70.0)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
