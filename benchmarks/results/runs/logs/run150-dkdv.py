"""Session 19, run 150: what c_attn's bias in the attention kernels (NOTES "Next GPU run" 8) would
cost the dK/dV kernel: the kernel as it is against a copy with the q bias's two terms, k.b_q
added to each key's scores and dS's row sums accumulated for dK (+ rowsum * b_q at the end),
at GPT-2's step shape (B 32, H 12, T 512, D 64, packed bf16 qkv views), each autotuned over the
same tiles and replayed in a CUDA graph of 10 calls."""
import torch, triton, triton.language as tl, triton.testing
from fastgpt.kernels import attention as A


@triton.jit
def _inner_bias(dk, dv, ds_rows, k, v, kb, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot, stride_dod,
                cols, lo, hi, T, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr):
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        rows = start_m + tl.arange(0, BLOCK_M)
        qT = A._load_tile(Q, rows, stride_qt, stride_qd, T, HEAD_DIM, True, MASK)
        lse, delta = A._load_row_stats(LSE, Delta, rows, T, MASK)
        pT = tl.math.exp2((tl.dot(k, qT) + kb[:, None]) * qk_scale - lse[None, :])
        if MASK:
            pT = tl.where((rows[None, :] < T) & (rows[None, :] >= cols[:, None]), pT, 0.0)
        do = A._load_tile(DO, rows, stride_dot, stride_dod, T, HEAD_DIM, False, MASK)
        dpT = tl.dot(v, tl.trans(do))
        dv += tl.dot(pT.to(do.dtype), do)
        dsT = pT * (dpT - delta[None, :])
        ds_rows += dsT
        dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT))
    return dk, dv, ds_rows


@triton.autotune(configs=A.DKDV_CONFIGS, key=["T"])
@triton.jit
def _dkdv_bias_kernel(Q, K, V, DO, DK, DV, LSE, Delta, BQ, stride_qb, stride_qh, stride_qt, stride_qd,
                      stride_dob, stride_doh, stride_dot, stride_dod, H, T, qk_scale, sm_scale,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    bh = tl.program_id(0)
    start_n = tl.program_id(1) * BLOCK_N
    Q, K, V, DO = A._head(bh, H, Q, K, V, DO, stride_qb, stride_qh, stride_qb, stride_qh, stride_qb, stride_qh,
                          stride_dob, stride_doh)
    DK, DV, _, _ = A._head(bh, H, DK, DV, DK, DV, stride_qb, stride_qh, stride_qb, stride_qh, 0, 0, 0, 0)
    LSE += bh.to(tl.int64) * T
    Delta += bh.to(tl.int64) * T
    cols = start_n + tl.arange(0, BLOCK_N)
    k = A._load_tile(K, cols, stride_qt, stride_qd, T, HEAD_DIM, False, True)
    v = A._load_tile(V, cols, stride_qt, stride_qd, T, HEAD_DIM, False, True)
    bq = tl.load(BQ + (bh % H) * HEAD_DIM + tl.arange(0, HEAD_DIM)).to(tl.float32)
    kb = tl.sum(k.to(tl.float32) * bq[None, :], 1)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    ds_rows = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
    full_hi = (T // BLOCK_M) * BLOCK_M
    lo = (start_n // BLOCK_M) * BLOCK_M
    full_lo = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, full_hi)
    dk, dv, ds_rows = _inner_bias(dk, dv, ds_rows, k, v, kb, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot,
                                  stride_dod, cols, lo, full_lo, T, qk_scale, HEAD_DIM, BLOCK_M, True)
    dk, dv, ds_rows = _inner_bias(dk, dv, ds_rows, k, v, kb, Q, DO, LSE, Delta, stride_qt, stride_qd, stride_dot,
                                  stride_dod, cols, full_lo, full_hi, T, qk_scale, HEAD_DIM, BLOCK_M, False)
    dk += tl.sum(ds_rows, 1)[:, None] * bq[None, :]
    A._store_tile(DK, cols, stride_qt, stride_qd, T, dk * sm_scale, HEAD_DIM)
    A._store_tile(DV, cols, stride_qt, stride_qd, T, dv, HEAD_DIM)


B, T, H, D = 32, 512, 12, 64
torch.manual_seed(0)
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = A.qkv_views(qkv)
scale = D ** -0.5
out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
dout = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
dq, delta = A.attention_bwd_dq(dout.transpose(1, 2), q, k, v, out.transpose(1, 2), lse, True, scale)
dqkv = torch.empty_like(qkv)
_, dk, dv = A.qkv_views(dqkv)
bq = torch.randn(H, D, device="cuda", dtype=torch.bfloat16)
do = dout.transpose(1, 2)


def plain():
    A.attention_bwd_dkdv(do, q, k, v, lse, delta, True, scale, dk=dk, dv=dv)


def with_bias():
    _dkdv_bias_kernel[lambda m: (B * H, triton.cdiv(T, m["BLOCK_N"]))](
        q, k, v, do, dk, dv, lse, delta, bq, *q.stride(), *do.stride(), H, T, scale * A.LOG2E, scale, HEAD_DIM=D)


def graph_us(fn, reps=10):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return [round(triton.testing.do_bench(g.replay, warmup=30, rep=300, return_mode="median") / reps * 1000, 1)
            for _ in range(3)]


for _ in range(2):
    for name, fn in (("dK/dV as it is", plain), ("with the q bias's two terms", with_bias)):
        print(f"{name:30s} us a call: {graph_us(fn)}", flush=True)
print("tiles:", A._attention_bwd_dkdv_kernel.best_config, "|", _dkdv_bias_kernel.best_config)
