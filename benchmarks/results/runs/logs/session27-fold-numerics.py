"""CPU check of NOTES Next GPU run 24's folded LayerNorm: h @ W^T + b with h = LN(s) (gamma, beta),
computed (ref) as fastgpt does now: s bf16 -> LN in fp32 -> h bf16 -> GEMM (bf16 operands, fp32
sums) -> out; (fold) without h: W' = bf16(W * gamma), c1 = row sums of W' (fp32, from the rounded
values), c2 = W @ beta + b (fp32), acc = s @ W'^T (bf16 operands, fp32 sums), out = rstd * (acc -
mean * c1) + c2. Both against float64 from the same bf16 s. Rows: random, plus rows with a large
mean and rows with outlier channels (massive activations), scaled as given."""
import torch

torch.manual_seed(0)
M, C, N = 2048, 768, 2304


def rows(kind):
    s = torch.randn(M, C, dtype=torch.float64)
    if kind == "mean":            # |mean| >> std
        s = s + 30.0 * torch.randn(M, 1, dtype=torch.float64).sign()
    if kind == "outliers":        # a few channels 100x the rest
        s[:, [3, 77, 500]] *= 100.0
    if kind == "both":
        s = s + 30.0
        s[:, [3, 77, 500]] *= 100.0
    return s.to(torch.bfloat16)


gamma = (1 + 0.1 * torch.randn(C, dtype=torch.float64))
beta = 0.1 * torch.randn(C, dtype=torch.float64)
W = (0.02 * torch.randn(N, C, dtype=torch.float64)).to(torch.bfloat16)
b = (0.01 * torch.randn(N, dtype=torch.float64))
eps = 1e-5


def rel(a, t):
    e = (a.double() - t)
    return (e.norm() / t.norm()).item(), (e.abs().max() / t.abs().max()).item()


for kind in ("random", "mean", "outliers", "both"):
    s = rows(kind)
    s64 = s.double()
    mean64, var64 = s64.mean(1, keepdim=True), s64.var(1, unbiased=False, keepdim=True)
    h64 = (s64 - mean64) / torch.sqrt(var64 + eps) * gamma + beta
    truth = h64 @ W.double().T + b
    # ref: LN in fp32, h rounded to bf16, GEMM fp32 sums
    s32 = s.float()
    mean32, var32 = s32.mean(1, keepdim=True), s32.var(1, unbiased=False, keepdim=True)
    rstd32 = torch.rsqrt(var32 + eps)
    h = ((s32 - mean32) * rstd32 * gamma.float() + beta.float()).to(torch.bfloat16)
    ref = h.float() @ W.float().T + b.float()
    # fold
    Wp = (W.double() * gamma).to(torch.bfloat16)
    c1 = Wp.float().sum(1)
    c2 = (W.double() @ beta + b).float()
    acc = s32 @ Wp.float().T
    fold = rstd32 * (acc - mean32 * c1) + c2
    print(f"{kind:9s} ref  rms {rel(ref, truth)[0]:.2e} max {rel(ref, truth)[1]:.2e} | "
          f"fold rms {rel(fold, truth)[0]:.2e} max {rel(fold, truth)[1]:.2e}")
