"""Session 17: host time of one gemm.matmul call against torch.mm (tiny operands: the host is
what is timed), and the GPU time of nothing else."""
import os, time, torch
from fastgpt.kernels import gemm
os.environ["FASTGPT_AUTOTUNE"] = "1"
a = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
b = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16).t()
out = torch.empty(64, 64, device="cuda", dtype=torch.bfloat16)
gemm.matmul(a, b)
print("choice", gemm.choice(a, b), "candidates", gemm.candidates(a, b))
for name, fn in [("torch.mm", lambda: torch.mm(a, b)), ("gemm.matmul (timed choice)", lambda: gemm.matmul(a, b)),
                 ("gemm.matmul algorithm=0", lambda: gemm.matmul(a, b, algorithm=0)),
                 ("gemm.matmul out=, algorithm=0", lambda: gemm.matmul(a, b, out=out, algorithm=0)),
                 ("torch.mm again", lambda: torch.mm(a, b))]:
    for _ in range(200): fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(3000): fn()
    torch.cuda.synchronize()
    print(f"{name:32s} {(time.perf_counter() - t) / 3000 * 1e6:6.1f} us/call")
