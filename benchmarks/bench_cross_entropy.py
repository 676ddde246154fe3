"""Fused LM head + cross-entropy against eager PyTorch and torch.compile of the same, side by side.

GPT-2 small's head at 16384 tokens (32 x 512), C = 768, V = 50304, bf16 inputs: forward+backward
(the gradients of x and W), in TFLOP/s (the three GEMMs: 6 * N * C * V FLOPs) with peak memory.
    eager    F.linear in bf16, logits upcast to fp32, F.cross_entropy (what fastgpt's torch
             backend and nanoGPT do)
    compile  torch.compile of the same function (fullgraph)
    triton   fastgpt's chunked fused op, at several chunk sizes (256 rows is Liger-Kernel's
             default budget of logits about the size of x; `default` is fastgpt's heuristic)
Also timed: the op's two paths side by side (the exp-logits path, the default for bf16 on Hopper
since session 16, and the loss kernel's), and, to show where the time of the fused op goes: its three GEMMs alone at the same chunk
size, and its loss + gradient kernel alone over (N, V) bf16 logits: the default (on Hopper the
persistent Gluon kernel, kernels/cross_entropy_gluon.py, which streams the next row into shared
memory while it computes this one) against the Triton kernel's single pass (the row in registers,
one program an SM) and its two-pass fallback (reads the logits twice). The single passes read the
logits once and write the gradient once, 2 * N * V * 2 bytes, the floor.

    pytest benchmarks/bench_cross_entropy.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch

import fastgpt
from fastgpt.ops.cross_entropy import fused_linear_cross_entropy, linear_cross_entropy_reference
from timing import measure

N, C, V = 16384, 768, 50304
DTYPE = torch.bfloat16
FLOPS = 6 * N * C * V            # logits, grad of x, grad of W: 2 * N * C * V each
CHUNK_ROWS = ["default", 256, 1024, 2048, 4096, 8192]


def setup():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(N, C, device="cuda", dtype=DTYPE, generator=g).requires_grad_()
    w = (0.02 * torch.randn(V, C, device="cuda", dtype=DTYPE, generator=g)).requires_grad_()
    targets = torch.randint(0, 50257, (N,), device="cuda", generator=g)
    targets[::97] = -1                                   # a few ignored positions
    return x, w, targets


def forward_backward(loss_fn, x, w, targets):
    return lambda: torch.autograd.grad(loss_fn(x, w, targets), (x, w))


def reference(x, w, targets):
    return linear_cross_entropy_reference(x, w, targets, -1)


@pytest.mark.parametrize("impl", ["eager", "compile"])
def test_lm_head_loss_reference(benchmark, impl):
    x, w, targets = setup()
    loss_fn = reference if impl == "eager" else torch.compile(reference, fullgraph=True)
    measure(benchmark, forward_backward(loss_fn, x, w, targets), flops=FLOPS, impl=impl,
            tokens=N, n_embd=C, vocab=V)


@pytest.mark.parametrize("chunk_rows", CHUNK_ROWS)
def test_lm_head_loss_triton(benchmark, chunk_rows):
    x, w, targets = setup()
    rows = None if chunk_rows == "default" else chunk_rows

    def loss_fn(x, w, targets):
        with fastgpt.use_backend("triton"):
            return fused_linear_cross_entropy(x, w, targets, chunk_rows=rows)
    if rows is None:
        from fastgpt.kernels.cross_entropy import chunk_rows as default_chunk_rows
        rows = default_chunk_rows(N, V, DTYPE.itemsize)
    measure(benchmark, forward_backward(loss_fn, x, w, targets), flops=FLOPS, impl="triton",
            chunk_rows=rows, tokens=N, n_embd=C, vocab=V)


@pytest.mark.parametrize("path", ["exp-logits", "loss kernel"])
def test_lm_head_loss_paths(benchmark, path):
    """The op's forward (which computes both gradients) on each path at 4096-row chunks: the
    exp-logits path (the GEMM's epilogue writes exp(logits - the target's logit), no loss pass;
    the default for bf16 on Hopper) against the loss kernel's (cuBLAS logits, then the pass)."""
    from fastgpt.kernels.cross_entropy import exp_logits_applies, linear_cross_entropy_fwd_bwd

    x, w, targets = setup()
    x, w = x.detach(), w.detach()
    if path == "exp-logits" and not exp_logits_applies(x, w):
        pytest.skip("the exp-logits path's GEMM needs a Hopper GPU and triton with Gluon")
    measure(benchmark, lambda: linear_cross_entropy_fwd_bwd(x, w, targets, -1, DTYPE, True, True, 4096,
                                                            exp_logits=path == "exp-logits"),
            flops=FLOPS, impl=f"triton, {path}", chunk_rows=4096, tokens=N, n_embd=C, vocab=V)


@pytest.mark.parametrize("chunk_rows", [256, 2048, 4096, 8192])
def test_lm_head_gemms_alone(benchmark, chunk_rows):
    """The fused op's three GEMMs per chunk without the loss kernel: its floor at that chunk size."""
    x, w, _ = setup()
    x, w = x.detach(), w.detach()
    logits = torch.empty(chunk_rows, V, device="cuda", dtype=DTYPE)
    grad_x = torch.empty_like(x)
    grad_w = torch.zeros(V, C, device="cuda", dtype=torch.float32)

    def gemms():
        for start in range(0, N, chunk_rows):
            xc = x[start:start + chunk_rows]
            torch.mm(xc, w.t(), out=logits)
            torch.mm(logits, w, out=grad_x[start:start + chunk_rows])
            torch.addmm(grad_w, logits.t(), xc, out_dtype=torch.float32, out=grad_w)
    measure(benchmark, gemms, flops=FLOPS, impl="cublas gemms only", chunk_rows=chunk_rows)


KERNEL_PATHS = {   # launcher arguments of each timed variant
    "default": {},
    "gluon": dict(kernel="gluon"),
    "gluon, 16 warps": dict(kernel="gluon", num_warps=16),
    "single pass": dict(single_pass=True),
    "single pass, 16 warps": dict(single_pass=True, num_warps=16),
    "two pass": dict(single_pass=False),
}


@pytest.mark.parametrize("path", list(KERNEL_PATHS))
def test_loss_kernel_alone(benchmark, path):
    """The loss + gradient kernel over (N, V) bf16 logits: the launcher's choice (Gluon on Hopper),
    the Gluon kernel at 8 warps (its default) or 16, Triton's single pass (the row held in
    registers: reads 1x, writes 1x) at 32 warps (its default) or 16, and the two-pass fallback
    (reads 2x, writes 1x). gbps counts the single passes' traffic (2 * N * V * 2 bytes)."""
    from fastgpt.kernels import cross_entropy_gluon
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    if "gluon" in path and not cross_entropy_gluon.available():
        pytest.skip("the Gluon kernel needs a Hopper GPU and triton with Gluon")

    _, _, targets = setup()
    logits = torch.randn(N, V, device="cuda", dtype=DTYPE)
    loss = torch.empty(N, device="cuda", dtype=torch.float32)
    n_valid = (targets != -1).sum()
    measure(benchmark, lambda: cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, -1, True,
                                                      **KERNEL_PATHS[path]),
            bytes_moved=2 * N * V * logits.element_size(), impl=f"loss+grad kernel, {path}",
            tokens=N, vocab=V)
