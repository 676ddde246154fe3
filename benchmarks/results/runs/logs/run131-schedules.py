"""Session 18: the Gluon kernel's two schedules (ping-pong 128-row tiles, cooperative 256-row tiles) at the
step's shapes, interleaved (kernels/gemm._median_times), twice."""
import torch
from fastgpt.kernels import gemm, mlp_gluon as MG
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
bf = torch.bfloat16
x = torch.randn(M, C, device="cuda", dtype=bf)
w_fc = torch.randn(H, C, device="cuda", dtype=bf) * 0.02
b_fc = torch.randn(H, device="cuda", dtype=bf) * 0.02
w_proj = torch.randn(C, H, device="cuda", dtype=bf) * 0.02
dy = torch.randn(M, C, device="cuda", dtype=bf)
h = torch.empty(M, H, device="cuda", dtype=bf); pre = torch.empty_like(h); dpre = torch.empty_like(h)
xl = torch.randn(4096, C, device="cuda", dtype=bf)
wl = torch.randn(50304, C, device="cuda", dtype=bf) * 0.02
shift = torch.randn(4096, device="cuda", dtype=torch.float32)
E = torch.empty(4096, 50304, device="cuda", dtype=bf)
calls = {}
for sched, stages in (("pingpong", None), ("cooperative", None), ("cooperative", 4)):
    tag = f"{sched}{'' if stages is None else '-' + str(stages)}"
    parts = torch.empty(MG.partial_rows(M, sched), H, device="cuda", dtype=torch.float32)
    sums = torch.empty(4096, (50304 + 127) // 128, device="cuda", dtype=torch.float32)
    calls[f"fwd {tag}"] = (lambda s=sched, st=stages: MG.launch_linear_gelu(x, w_fc, b_fc, h, pre, schedule=s, stages=st))
    calls[f"bwd {tag}"] = (lambda s=sched, st=stages, p=parts: MG.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, p, schedule=s, stages=st))
    calls[f"lm exp {tag}"] = (lambda s=sched, st=stages, rs=sums: MG.launch_linear_exp(xl, wl, shift, E, rs, 70.0, schedule=s, stages=st))
ok = {}
for k, f in calls.items():
    try:
        f(); torch.cuda.synchronize(); ok[k] = f
    except Exception as e:
        print(k, "failed:", type(e).__name__, str(e)[:200])
for r in range(2):
    t = gemm._median_times(ok)
    for k in sorted(t):
        print(f"round {r} {k:28s} {t[k]*1e3:7.1f} us")
