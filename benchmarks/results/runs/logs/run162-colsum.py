"""Session 21 probe: the bias-gradient column sum's pass 1 with its loads pipelined (tl.range
num_stages) and other tiles, against the tree's kernel and torch.compile's dy.sum(0), at GPT-2's
shapes (16384 x 2304 and 16384 x 768 bf16). CUDA-graph replays of 20 calls; sums checked."""
import torch, triton, triton.language as tl, triton.testing
from fastgpt.kernels import linear as tree
from fastgpt.kernels.common import sm_count, sum_partials

@triton.jit
def _pass1(Dy, Partial, M, N, stride_dym, ROWS_PER_PROGRAM,
           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr):
    band = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols_ok = cols < N
    first = band * ROWS_PER_PROGRAM
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in tl.range(0, ROWS_PER_PROGRAM, BLOCK_M, num_stages=NUM_STAGES):
        rows = first + start + tl.arange(0, BLOCK_M)
        mask = (rows < M)[:, None] & cols_ok[None, :]
        acc += tl.load(Dy + rows[:, None] * stride_dym + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(Partial + band.to(tl.int64) * N + cols, tl.sum(acc, axis=0), mask=cols_ok)

def colsum(dy, bm, bn, warps, per_sm, stages):
    M, N = dy.shape
    tiles = triton.cdiv(N, bn)
    bands = max(1, min(triton.cdiv(M, bm), triton.cdiv(per_sm * sm_count(dy.device, interpreter_programs=2), tiles)))
    rows = triton.cdiv(triton.cdiv(M, bands), bm) * bm
    bands = triton.cdiv(M, rows)
    partial = torch.empty(bands, N, device=dy.device, dtype=torch.float32)
    _pass1[(bands, tiles)](dy, partial, M, N, dy.stride(0), rows, BLOCK_M=bm, BLOCK_N=bn, NUM_STAGES=stages,
                          num_warps=warps)
    return sum_partials(partial, torch.empty(N, device=dy.device, dtype=dy.dtype))

def graphed(fn, n=20):
    fn(); torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=300, return_mode="median") / n * 1e3

compiled = torch.compile(lambda dy: dy.sum(0), fullgraph=True)
variants = [(64, 128, 4, 4, 1), (64, 128, 4, 4, 2), (64, 128, 4, 4, 3), (64, 128, 4, 2, 3), (64, 128, 4, 2, 4),
            (32, 256, 4, 4, 3), (128, 64, 4, 4, 3), (64, 128, 8, 2, 3), (32, 128, 4, 4, 4), (64, 256, 8, 2, 3),
            (32, 256, 8, 4, 3), (16, 512, 4, 4, 4)]
for N in (2304, 768):
    torch.manual_seed(0)
    dy = torch.randn(16384, N, device="cuda", dtype=torch.bfloat16)
    ref = dy.double().sum(0)
    timers = {"tree": graphed(lambda: tree.column_sum(dy)), "compile": graphed(lambda: compiled(dy))}
    for v in variants:
        out = colsum(dy, *v)
        err = ((out.double() - ref).abs() / ref.abs().clamp_min(1)).max().item()
        if err > 1e-2:
            print(f"WRONG N={N} {v} {err:.2e}"); continue
        timers["bm%d bn%d w%d sm%d s%d" % v] = graphed(lambda v=v: colsum(dy, *v))
    res = {}
    for _ in range(3):
        for k, t in timers.items():
            res.setdefault(k, []).append(t())
    for k, ts in res.items():
        print(f"RESULT N={N} {k:26s} " + " ".join(f"{x:6.1f}" for x in ts) + f"  min {min(ts):.1f} us", flush=True)
