"""Session 18: add+LayerNorm backward at the step's shape (16384 x 768 bf16, ds, bias, x_bias gradient),
the kernel and its column sums, over rows a program / tile / warps / register cap, interleaved."""
import itertools
import torch, triton
from fastgpt.kernels import gemm, layernorm as L
from fastgpt.kernels.common import sum_partials
torch.manual_seed(0)
N, C = 16384, 768
bf = torch.bfloat16
s = torch.randn(N, C, device="cuda", dtype=bf); dy = torch.randn_like(s); ds = torch.randn_like(s)
w = torch.rand(C, device="cuda", dtype=bf) + 0.5
mean = s.float().mean(1); rstd = torch.rsqrt(s.float().var(1, unbiased=False) + 1e-5)
dweight = torch.empty(C, device="cuda", dtype=bf); dbias = torch.empty_like(dweight); dxb = torch.empty_like(dweight)

def variant(rows, tile, warps, maxnreg):
    block_c, block_r, _ = L._tile(C, tile, warps)
    rows = triton.cdiv(rows, block_r) * block_r
    programs = triton.cdiv(N, rows)
    dx = torch.empty_like(s)
    parts = [torch.empty((programs, C), dtype=torch.float32, device="cuda") for _ in range(3)]
    def run():
        L._add_layernorm_bwd_kernel[(programs,)](dy, ds, s, w, mean, rstd, dx, *parts, N, C, rows,
            HAS_DS=True, HAS_BIAS=True, HAS_X_BIAS=True, PREFETCH=True, BLOCK_R=block_r, BLOCK_C=block_c,
            num_warps=warps, **({} if maxnreg is None else {"maxnreg": maxnreg}))
        sum_partials(parts[0], dweight, parts[1], dbias, parts[2], dxb)
    def kernel_only():
        L._add_layernorm_bwd_kernel[(programs,)](dy, ds, s, w, mean, rstd, dx, *parts, N, C, rows,
            HAS_DS=True, HAS_BIAS=True, HAS_X_BIAS=True, PREFETCH=True, BLOCK_R=block_r, BLOCK_C=block_c,
            num_warps=warps, **({} if maxnreg is None else {"maxnreg": maxnreg}))
    return run, kernel_only

calls, kernels = {}, {}
for rows, tile, warps, maxnreg in itertools.product((16, 32, 64, 128), (2048, 4096), (4, 8), (None, 80)):
    key = f"rows {rows:3d} tile {tile} warps {warps} maxnreg {maxnreg}"
    try:
        run, k = variant(rows, tile, warps, maxnreg)
        run(); torch.cuda.synchronize()
        calls[key], kernels[key] = run, k
    except Exception as e:
        print(key, "failed", type(e).__name__, str(e)[:100])
def launcher():
    L.add_layernorm_bwd(dy, ds, s, w, mean, rstd, True, x_bias_grad=dxb)
calls["launcher"] = launcher
for r in range(2):
    t = gemm._median_times(calls)
    tk = gemm._median_times(kernels)
    print(f"round {r}: kernel + sums, kernel alone (us)")
    for k in sorted(t, key=t.get)[:14]:
        print(f"   {k:42s} {t[k]*1e3:6.1f}  {tk.get(k, float('nan'))*1e3:6.1f}")
    print(f"   launcher (the step's rule) {t['launcher'] * 1e3:6.1f}")
