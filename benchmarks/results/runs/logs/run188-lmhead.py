"""Prepared in session 24 for NOTES' "Next GPU run" 15: the LM head with E kept for every row, its
exp GEMM still in 8192-row chunks, then one dX and one dW GEMM over all rows (dW written whole in
fp32: no accumulate pass). Run 181: at 16384 rows the dW GEMM took 56 us less than two 8192-row
ones, dX 8 less, while the exp GEMM at 16384 rows took 25 more.

    python .run188-lmhead.py check        the kept path against the tree's on the step's shapes
    MODE=tree|kept|single python .run188-lmhead.py step   the graphed step (do_bench median)

tree: the tree's 8192-row chunks; kept: this file's path (CHUNK_ROWS 16384 so that the caller
allocates E for every row); single: run 174's 16384-row chunk (the exp GEMM on all rows at once)."""
import os
import sys
import time

import torch
import triton
import triton.testing

from fastgpt.kernels import cross_entropy as ce
from fastgpt.kernels import mlp_gluon

EXP_ROWS = 8192


def exp_logits_kept(xc, wc, targets, ignore_index, n_valid, loss_rows, grad_x, grad_w, logits_buffer,
                    need_grad_x, need_grad_weight, tuned_gemms):
    """ce._exp_logits_chunks with the exp GEMM in EXP_ROWS chunks into a buffer of every row, then one
    dX and one dW GEMM (the caller must allocate logits_buffer for every row)."""
    xc, wc = xc.contiguous(), wc.contiguous()
    n_rows, C = xc.shape
    assert logits_buffer.shape[0] >= n_rows, "the kept path needs E for every row"
    n_tiles = triton.cdiv(wc.shape[0], mlp_gluon.BLOCK_N)
    shift = torch.empty(n_rows, dtype=torch.float32, device=xc.device)
    row_scale = torch.empty(n_rows, dtype=torch.float32, device=xc.device)
    row_sums = torch.empty(EXP_ROWS, n_tiles, dtype=torch.float32, device=xc.device)
    x_scaled = torch.empty(n_rows, C, dtype=xc.dtype, device=xc.device)
    block_c = triton.next_power_of_2(C)
    ce._target_logit_kernel[(n_rows,)](xc, xc.stride(0), wc, wc.stride(0), targets, shift, C, ignore_index,
                                       BLOCK_C=block_c)
    for start in range(0, n_rows, EXP_ROWS):
        end = min(start + EXP_ROWS, n_rows)
        rows = end - start
        e = logits_buffer[start:end]
        mlp_gluon.launch_linear_exp(xc[start:end], wc, shift[start:end], e, row_sums[:rows], ce.EXP_CAP)
        xs = x_scaled[start:end]
        ce._exp_logits_finish_kernel[(rows,)](row_sums, n_tiles, e, e.stride(0), targets[start:end], xc[start:end],
                                              xc.stride(0), xs, xs.stride(0), loss_rows[start:end],
                                              row_scale[start:end], n_valid, C, ignore_index,
                                              BLOCK_T=triton.next_power_of_2(n_tiles), BLOCK_C=block_c)
    e = logits_buffer[:n_rows]
    if need_grad_x:
        product = ce._mm_fp32(e, wc, tuned_gemms)
        ce._scale_rows_kernel[(n_rows,)](product, product.stride(0), row_scale, grad_x, grad_x.stride(0), C,
                                         BLOCK_C=block_c)
    if need_grad_weight:
        ce._accumulate_grad_weight(grad_w, e, x_scaled, first=True, tuned=tuned_gemms)


def use(mode):
    if mode in ("kept", "single"):
        ce.CHUNK_ROWS = 16384
        ce.MAX_CHUNK_LOGITS_BYTES = max(ce.MAX_CHUNK_LOGITS_BYTES, 16384 * 50304 * 2)
    if mode == "kept":
        ce._exp_logits_chunks = exp_logits_kept


def check():
    torch.manual_seed(0)
    N, C, V = 16384, 768, 50304
    x = torch.randn(N, C, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(V, C, device="cuda") * 0.05).to(torch.bfloat16)
    t = torch.randint(0, V, (N,), device="cuda")
    t[::97] = -1
    outs = {}
    tree_chunks = ce._exp_logits_chunks
    for mode, rows in (("tree", 8192), ("kept", 16384)):
        ce._exp_logits_chunks = exp_logits_kept if mode == "kept" else tree_chunks
        outs[mode] = ce.linear_cross_entropy_fwd_bwd(x, w, t, -1, torch.bfloat16, True, True, rows, exp_logits=True,
                                                     tuned_gemms=True)
    ce._exp_logits_chunks = tree_chunks
    rel = lambda a, b: float((a.double() - b.double()).norm() / b.double().norm())
    (la, gxa, gwa), (lb, gxb, gwb) = outs["kept"], outs["tree"]
    print(f"CHECK loss {float(la):.6f} / {float(lb):.6f}; grad_x rel {rel(gxa, gxb):.2e}; grad_w rel {rel(gwa, gwb):.2e} "
          f"({gwa.dtype})", flush=True)


def step():
    from bench_train_step import CONFIGS, build
    mode = os.environ.get("MODE", "tree")
    use(mode)
    t0 = time.perf_counter()
    model, run = build(CONFIGS["triton-adamwcopy-cudagraph"])
    for _ in range(4):
        run()
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(run, warmup=50, rep=500, return_mode="median")
    print(f"MODE {mode}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
          f"build + 4 steps {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    {"check": check, "step": step}[sys.argv[1]]()
