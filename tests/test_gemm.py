"""kernels/gemm.py: the plain GEMMs on cuBLASLt with a timed algorithm choice.

On the GPU every candidate (PyTorch's call and each cuBLASLt algorithm the heuristic offers) is
run against a float64 product, for each form the model uses: row-major and transposed operands,
the bias epilogue, an addend (a residual: cuBLAS's C, read, with the result in D), an fp32
output from bf16 operands, accumulation (beta = 1) into fp32, an output with a row stride wider
than its width; outputs NaN-poisoned (beta = 0). The timed choice,
its replay inside a CUDA graph, and the fallbacks (sizes cuBLASLt's alignment refuses, fp32,
FASTGPT_CUBLASLT=0) too. On the CPU: the fallback, and the operand-layout and alignment rules.
"""
import pytest
import torch

from fastgpt.kernels import gemm
from fastgpt.testing import assert_rel_close, poison_

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
BF16_TOL = 1e-2       # bf16 output: one rounding (2^-8 relative) of an fp32-accumulated product
FP32_TOL = 1e-5       # fp32 output: fp32 summation order only


def _operands(form: str, M: int, K: int, N: int, device, dtype=torch.bfloat16):
    """(a, b) of the given layouts: "nn" both row-major, "nt" b a transposed view (x @ W^T),
    "tn" a a transposed view (dy^T @ x)."""
    a = torch.randn(K, M, device=device, dtype=dtype).t() if form[0] == "t" else \
        torch.randn(M, K, device=device, dtype=dtype)
    b = torch.randn(N, K, device=device, dtype=dtype).t() if form[1] == "t" else \
        torch.randn(K, N, device=device, dtype=dtype)
    return a, b


def _reference(a, b, bias=None, out=None, beta=0.0):
    ref = a.double() @ b.double()
    if bias is not None:
        ref = ref + bias.double()
    if beta:
        ref = ref + beta * out.double()
    return ref


# (form, M, K, N): the step's layouts at small sizes, a ragged M, and one of GPT-2's own shapes
CASES = [("nt", 256, 64, 192), ("nn", 200, 128, 64), ("tn", 64, 256, 128), ("nt", 1, 64, 64),
         ("nn", 4096, 768, 768)]


@needs_cuda
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_addend", [False, True], ids=["", "addend"])
def test_every_candidate_matches_float64(case, with_bias, with_addend):
    """a @ b (+ bias) (+ addend: a block's residual stream, left as it was) by every candidate."""
    form, M, K, N = case
    a, b = _operands(form, M, K, N, "cuda")
    bias = torch.randn(N, device="cuda", dtype=torch.bfloat16) if with_bias else None
    addend = torch.randn(M, N, device="cuda", dtype=torch.bfloat16) if with_addend else None
    kept = None if addend is None else addend.clone()
    expected = _reference(a, b, bias) + (0.0 if addend is None else addend.double())
    n = gemm.candidates(a, b, bias, addend=addend)
    assert n >= 1, "cuBLASLt offered no algorithm for a shape it supports"
    for algorithm in range(-1, n):
        out = poison_(torch.empty(M, N, device="cuda", dtype=torch.bfloat16))
        gemm.matmul(a, b, bias, out=out, addend=addend, algorithm=algorithm)
        assert_rel_close(out, expected, BF16_TOL, f"{form} {M}x{K}x{N} algorithm {algorithm}")
    assert_rel_close(gemm.matmul(a, b, bias, addend=addend, algorithm=0), expected, BF16_TOL, "new output")
    if addend is not None:
        assert torch.equal(addend, kept), "the addend was written"


@needs_cuda
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_fp32_output_and_accumulation(beta):
    """The LM head's dW: grad_W (V, C) fp32 (+)= E^T @ x, and its dX: E @ W in fp32."""
    a, b = _operands("tn", 520, 256, 192, "cuda")
    start = torch.randn(520, 192, device="cuda")
    n = gemm.candidates(a, b, out=start.clone(), beta=beta, out_dtype=torch.float32)
    assert n >= 1
    for algorithm in range(-1, n):
        out = start.clone() if beta else poison_(torch.empty_like(start))
        gemm.matmul(a, b, out=out, beta=beta, out_dtype=torch.float32, algorithm=algorithm)
        assert_rel_close(out, _reference(a, b, out=start, beta=beta), FP32_TOL, f"beta {beta} algorithm {algorithm}")
    x, w = _operands("nn", 96, 320, 64, "cuda")
    new = gemm.matmul(x, w, out_dtype=torch.float32, algorithm=0)
    assert new.dtype == torch.float32
    assert_rel_close(new, _reference(x, w), FP32_TOL, "fp32 output, new tensor")


@needs_cuda
def test_output_with_wider_rows():
    """An output view whose row stride is wider than its width (a slice of a bigger buffer)."""
    a, b = _operands("nn", 128, 64, 64, "cuda")
    buffer = poison_(torch.empty(128, 96, device="cuda", dtype=torch.bfloat16))
    out = buffer[:, :64]
    for algorithm in range(-1, gemm.candidates(a, b, out=out)):
        gemm.matmul(a, b, out=out, algorithm=algorithm)
        assert_rel_close(out, _reference(a, b), BF16_TOL, f"algorithm {algorithm}")
    assert torch.isnan(buffer[:, 64:]).all(), "wrote outside the output view"


@needs_cuda
def test_timed_choice_is_kept_and_replays_in_a_cuda_graph(monkeypatch):
    monkeypatch.setenv("FASTGPT_AUTOTUNE", "1")          # conftest pins it to 0: time here
    monkeypatch.setenv("FASTGPT_CUBLASLT", "1")
    a, b = _operands("nt", 1024, 512, 768, "cuda")
    assert gemm.choice(a, b) is None
    assert gemm.matmul(a, b) is not None and gemm.choice(a, b) is None     # untuned: PyTorch's call, untimed
    first = gemm.matmul(a, b, tuned=True)
    chosen = gemm.choice(a, b)
    assert chosen is not None and -1 <= chosen < gemm.candidates(a, b)
    assert_rel_close(first, _reference(a, b), BF16_TOL, "first (timed) call")
    out = poison_(torch.empty(1024, 768, device="cuda", dtype=torch.bfloat16))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        gemm.matmul(a, b, out=out, tuned=True)              # the capture stream's workspace
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gemm.matmul(a, b, out=out, tuned=True)
    poison_(out)
    a.copy_(torch.randn_like(a))                            # new values in the captured operand
    graph.replay()
    torch.cuda.synchronize()
    assert_rel_close(out, _reference(a, b), BF16_TOL, "replayed")
    assert gemm.choice(a, b) == chosen
    timed = [row for row in gemm.tuned_problems() if (row["M"], row["K"], row["N"]) == (1024, 512, 768)]
    assert timed and timed[0]["choice"] == chosen and -1 in timed[0]["times"]


@needs_cuda
def test_accumulating_choice_leaves_out_as_it_was_plus_one_product(monkeypatch):
    """Timing an accumulating call (beta = 1) runs every candidate on `out` itself: its values are
    restored before the real call adds the product once."""
    monkeypatch.setenv("FASTGPT_AUTOTUNE", "1")
    a, b = _operands("tn", 640, 384, 256, "cuda")
    out = torch.randn(640, 256, device="cuda")
    start = out.clone()
    gemm.matmul(a, b, out=out, beta=1.0, out_dtype=torch.float32, tuned=True)
    assert gemm.choice(a, b, out=out, beta=1.0) is not None
    assert_rel_close(out, _reference(a, b, out=start, beta=1.0), FP32_TOL, "timed accumulate")


@needs_cuda
def test_first_met_during_capture_runs_pytorch_untimed(monkeypatch):
    monkeypatch.setenv("FASTGPT_AUTOTUNE", "1")
    a, b = _operands("nn", 384, 128, 320, "cuda")
    out = torch.empty(384, 320, device="cuda", dtype=torch.bfloat16)
    gemm.matmul(a, b, out=out, algorithm=-1)                # warm-up outside, as torch.cuda.graph needs
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gemm.matmul(a, b, out=out, tuned=True)
    assert gemm.choice(a, b, out=out) is None               # nothing was timed inside the capture
    poison_(out)
    graph.replay()
    torch.cuda.synchronize()
    assert_rel_close(out, _reference(a, b), BF16_TOL, "replayed")


@needs_cuda
@pytest.mark.parametrize("reason", ["odd width", "fp32 operands", "switched off", "mixed dtypes"])
def test_fallbacks_are_pytorch_and_correct(reason, monkeypatch):
    monkeypatch.setenv("FASTGPT_AUTOTUNE", "1")
    a, b = _operands("nn", 64, 40, 33, "cuda")              # 33 columns: an 66-byte row, unaligned
    if reason == "fp32 operands":
        a, b = _operands("nn", 64, 64, 64, "cuda", torch.float32)
    if reason == "switched off":
        monkeypatch.setenv("FASTGPT_CUBLASLT", "0")
        a, b = _operands("nn", 64, 64, 64, "cuda")
    if reason == "mixed dtypes":
        a, b = _operands("nn", 64, 64, 64, "cuda")
        b = b.half()
        with pytest.raises(RuntimeError):                   # as torch.mm refuses them
            gemm.matmul(a, b, tuned=True)
        return
    if reason != "switched off":
        assert gemm.candidates(a, b) == 0
    out = gemm.matmul(a, b, tuned=True)
    assert gemm.choice(a, b) is None
    assert_rel_close(out, _reference(a, b), BF16_TOL if a.dtype == torch.bfloat16 else 1e-3, reason)


def test_cpu_falls_back_to_pytorch():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    bias = torch.randn(3)
    assert gemm.candidates(a, b) == 0
    torch.testing.assert_close(gemm.matmul(a, b, bias, tuned=True), torch.addmm(bias, a, b))
    torch.testing.assert_close(gemm.matmul(a, b, bias), torch.addmm(bias, a, b))
    out = torch.randn(5, 3)
    expected = out + a @ b
    gemm.matmul(a, b, out=out, beta=1.0)
    torch.testing.assert_close(out, expected)
    addend = torch.randn(5, 3)
    torch.testing.assert_close(gemm.matmul(a, b, bias, addend=addend, tuned=True), addend + torch.addmm(bias, a, b))
    with pytest.raises(ValueError, match="addend and beta"):
        gemm.matmul(a, b, out=out, beta=1.0, addend=addend)


def test_operand_layouts():
    """Row-major (op N, ld = row stride), a transposed view (op T, ld = column stride), anything
    else refused; the alignment is the largest power of two up to 256 shared by bases and lds."""
    rows = torch.empty(6, 8)
    assert gemm._operand(rows) == (gemm._OP_N, 8)
    assert gemm._operand(torch.empty(8, 6).t()) == (gemm._OP_T, 6)
    assert gemm._operand(torch.empty(6, 16)[:, ::2]) is None                  # no unit stride
    assert gemm._operand(torch.empty(12, 8)[:, :4]) == (gemm._OP_N, 8)         # wider rows
    assert gemm._alignment(torch.empty(64, 64)) >= 64                         # 256-byte rows, fresh block
    assert gemm._alignment(torch.empty(64, 68)[:, 4:]) == 16                  # 16-byte offset, 272-byte rows
    assert gemm._alignment(torch.empty(64, 66)[:, 2:]) == 0                   # 8-byte offset: refused


@needs_cuda
def test_gpt_step_with_timed_choices_matches_pytorch_calls(monkeypatch):
    """A small GPT's loss and gradients on the triton backend (bf16 autocast) with every plain GEMM
    on its timed choice (launches free: replayed_steps(), as GraphedTrainStep's steps), against
    the same step with PyTorch's calls (FASTGPT_CUBLASLT=0): equal to the rounding of bf16 GEMM
    outputs."""
    import fastgpt
    from fastgpt.ops.dispatch import replayed_steps
    config = fastgpt.GPTConfig(block_size=128, vocab_size=512, n_layer=2, n_head=4, n_embd=256)
    model = fastgpt.GPT(config).cuda()
    idx = torch.randint(0, 512, (8, 128), device="cuda")
    targets = torch.randint(0, 512, (8, 128), device="cuda")

    def loss_and_grads(cublaslt: str):
        monkeypatch.setenv("FASTGPT_AUTOTUNE", "1")
        monkeypatch.setenv("FASTGPT_CUBLASLT", cublaslt)
        model.zero_grad(set_to_none=True)
        with fastgpt.use_backend("triton"), torch.autocast("cuda", dtype=torch.bfloat16), replayed_steps():
            _, loss = model(idx, targets)
        loss.backward()
        return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]

    loss_lt, grads_lt = loss_and_grads("1")
    assert any(row["M"] == 8 * 128 and row["choice"] is not None for row in gemm.tuned_problems())
    loss_torch, grads_torch = loss_and_grads("0")
    assert abs(loss_lt.item() - loss_torch.item()) < 1e-3 * abs(loss_torch.item())
    for (name, _), g_lt, g_torch in zip(model.named_parameters(), grads_lt, grads_torch):
        assert_rel_close(g_lt, g_torch, BF16_TOL, name)


def test_library_search_is_the_extension_builds_after_torchs_soname(tmp_path, monkeypatch):
    """gemm loads the soname torch links first, then each library fastgpt._cuda's search finds, a
    wheel without the header included (loading needs no header, the build does)."""
    import sys
    from fastgpt import _cuda
    lib = tmp_path / "site" / "nvidia" / "cublaslib" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublasLt.so.13").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "nvidia", raising=False)
    assert (None, lib / "libcublasLt.so.13") in _cuda.cublaslt_installs(None)
    includes, flags = _cuda.cublaslt_build_flags(None)
    assert not any(str(lib) in flag for flag in includes + flags)   # no header: not for the build
    paths = gemm._library_paths()
    assert str(lib / "libcublasLt.so.13") in paths
    if torch.version.cuda:
        assert paths[0] == f"libcublasLt.so.{torch.version.cuda.split('.')[0]}"
