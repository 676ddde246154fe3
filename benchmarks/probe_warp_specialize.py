"""Does triton 3.6's automatic warp specialisation on Hopper make the MLP's fused GEMMs faster?

The MLP's c_fc GEMM with its bias + GELU epilogue (kernels/mlp.py) runs at ~390 TFLOP/s where
cuBLAS's plain GEMM runs at ~650: its epilogue (two (M, 4C) stores) is not overlapped with the
next tile's main loop. tl.range(warp_specialize=True) (the kernel's WARP_SPECIALIZE flag) splits
the persistent loop into a TMA producer and two consumer warpgroups; this times it at the GPT-2
step's shapes (M = 16384 tokens, C = 768, H = 3072, bf16) beside the current kernel and cuBLAS,
for the forward (pre and h stored) and the backward's dpre = (dy @ W_proj) * gelu'(pre), and
checks each variant's output against an fp32 reference (relative error; inf = NaN in the output).
Triton compiles the flag only at num_warps=4 (8 leaves the loop unspecialised) and not with the
bias-gradient column sums in the epilogue (its data partition splits the tile's rows).

    python benchmarks/probe_warp_specialize.py        # writes $OUT/ws_probe.json (or /tmp)
"""
import json
import os

import torch
import triton
import torch.nn.functional as F
from triton.testing import do_bench
import fastgpt.kernels.mlp as Mk
from fastgpt.kernels.linear import column_sum
from fastgpt.testing import rel_error
torch.manual_seed(0)
dev = "cuda"
M, C, H = int(os.environ.get("M", 16384)), 768, 3072
x = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
w_fc = (torch.randn(H, C, device=dev) * 0.03).bfloat16()
b_fc = (torch.randn(H, device=dev) * 0.1).bfloat16()
w_proj = (torch.randn(C, H, device=dev) * 0.02).bfloat16()
dy = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
nsm = torch.cuda.get_device_properties(0).multi_processor_count
triton.set_allocator(Mk._tma_allocator)
rows = []
def bench(name, fn, flops):
    ms = do_bench(fn, warmup=50, rep=300, return_mode="median")
    rows.append((name, ms, flops / ms / 1e9))
    print(f"{name:55s} {ms*1e3:8.1f} us {flops/ms/1e9:6.0f} TFLOP/s", flush=True)

def raw(a, b, c, bias, pre, gelu, partial, epilogue, b_nk, bn, w, s, ws, store_pre=False, store_gelu=False, bias_grad=False, ppsm=1, flatten=None):
    Mm, K = a.shape
    N = c.shape[1]
    tiles = triton.cdiv(Mm, 128) * triton.cdiv(N, bn)
    dummy = c
    Mk._mlp_gemm_kernel[(min(tiles, nsm * ppsm),)](
        a, b, c, bias if bias is not None else dummy, pre if pre is not None else dummy,
        gelu if gelu is not None else dummy, partial if partial is not None else dummy,
        Mm, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        N, 1, N, 1, EPILOGUE=epilogue, HAS_BIAS=bias is not None, STORE_PRE=store_pre, STORE_GELU=store_gelu,
        BIAS_GRAD=bias_grad, PROLOGUE_GELU=False, INPUT_PRECISION=None, INDEX_64=False, EVEN_K=True,
        FLATTEN=(not ws) if flatten is None else flatten, TMA=True, B_NK=b_nk, WARP_SPECIALIZE=ws,
        BLOCK_M=128, BLOCK_N=bn, BLOCK_K=64, GROUP_M=8, PROGRAMS_PER_SM=ppsm, num_warps=w, num_stages=s)

fl = 2 * M * C * H
# ---- forward: pre = x W_fc^T + b, h = gelu(pre) (both stored) ----
pre_ref = (x.float() @ w_fc.float().t() + b_fc.float())
h_ref = F.gelu(pre_ref, approximate="tanh")
bench("cublas mm x@Wfc^T (GEMM only)", lambda: torch.mm(x, w_fc.t()), fl)
bench("cublas addmm + F.gelu tanh (2 outs)", lambda: F.gelu(torch.addmm(b_fc, x, w_fc.t()), approximate="tanh"), fl)
bench("triton linear_gelu store_pre (autotuned, current)", lambda: Mk.linear_gelu(x, w_fc, b_fc, store_pre=True), fl)
print("  best", Mk.best_config(), flush=True)
h_o, p_o = torch.full((M, H), float("nan"), device=dev, dtype=torch.bfloat16), torch.full((M, H), float("nan"), device=dev, dtype=torch.bfloat16)
for bn, w, s, ppsm in [(256, 4, 3, 1), (256, 4, 2, 1), (128, 4, 4, 1), (128, 4, 3, 1), (128, 4, 2, 1), (128, 4, 5, 1)]:
    try:
        f = lambda: raw(x, w_fc.t(), h_o, b_fc, p_o, None, None, "gelu", True, bn, w, s, True, store_pre=True, ppsm=ppsm)
        f(); torch.cuda.synchronize()
        print(f"  WS fwd {bn},{w},{s}: rel err h {rel_error(h_o, h_ref):.2e} pre {rel_error(p_o, pre_ref):.2e}")
        bench(f"WS fc fwd gelu+pre 128x{bn} w{w} s{s} ppsm{ppsm}", f, fl)
    except Exception as e:
        print("WS fwd", bn, w, s, "FAIL", repr(e)[:300], flush=True)
# WS plain GEMM (no epilogue) for the main-loop speed
for bn, s in [(256, 3), (128, 4)]:
    try:
        bench(f"WS plain x@Wfc^T 128x{bn} s{s}", lambda: raw(x, w_fc.t(), h_o, None, None, None, None, "linear", True, bn, 4, s, True), fl)
    except Exception as e:
        print("WS plain FAIL", repr(e)[:300])

# ---- backward: dpre = (dy @ W_proj) * gelu'(pre), db_fc = colsum(dpre) (h saved in fwd) ----
pre = pre_ref.bfloat16()
dh_ref = dy.float() @ w_proj.float()
ga = pre.float()
t = ga.clone().requires_grad_(True)
g = torch.autograd.grad(F.gelu(t, approximate="tanh"), t, dh_ref)[0]
dpre_ref = g
def current_dpre():
    dh = torch.mm(dy, w_proj)
    return Mk.gelu_bwd(dh, pre, store_gelu=False, bias_grad=True, overwrite_dh=True)
bench("current: cublas dh + gelu_bwd pass (dpre, db)", current_dpre, fl)
bench("cublas dh alone", lambda: torch.mm(dy, w_proj), fl)
d_o = torch.full((M, H), float("nan"), device=dev, dtype=torch.bfloat16)
for bn, s in [(256, 3), (256, 2), (128, 4), (128, 3)]:
    try:
        f = lambda: raw(dy, w_proj, d_o, None, pre, None, None, "gelu_grad", False, bn, 4, s, True)
        f(); torch.cuda.synchronize()
        print(f"  WS dpre {bn},{s}: rel err {rel_error(d_o, dpre_ref):.2e}")
        bench(f"WS dpre GEMM 128x{bn} s{s} (no db)", f, fl)
        bench(f"WS dpre GEMM 128x{bn} s{s} + column_sum db", lambda: (f(), column_sum(d_o, torch.float32)), fl)
    except Exception as e:
        print("WS dpre", bn, s, "FAIL", repr(e)[:300], flush=True)
bench("column_sum(dpre) alone", lambda: column_sum(d_o, torch.float32), fl)
print("device", torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__, M=M,
               rows=rows), open(os.path.join(os.environ.get("OUT", "/tmp"), "ws_probe.json"), "w"), indent=1)
