"""Session 24, run 182: one launch of the Gluon MLP forward with codes (the step's shapes) for Nsight
Compute: where do its epilogue warps stall (run 178: ~3 us an instruction an element)?"""
import torch
from fastgpt.kernels import mlp_gluon as tree
M, C, H = 16384, 768, 3072
bf = torch.bfloat16
torch.manual_seed(0)
x = torch.randn(M, C, device="cuda", dtype=bf)
w = (torch.randn(H, C, device="cuda") * C ** -0.5).to(bf)
b = (torch.randn(H, device="cuda") * 0.5).to(bf)
h = torch.empty(M, H, device="cuda", dtype=bf)
code = torch.empty(M, H, device="cuda", dtype=torch.uint8)
pre = torch.empty(M, H, device="cuda", dtype=bf)
for _ in range(3):
    tree.launch_linear_gelu(x, w, b, h, code)
for _ in range(3):
    tree.launch_linear_gelu(x, w, b, h, pre)
torch.cuda.synchronize()
print("done")
