"""The embedding family (fastgpt.ops.embedding, kernels/embedding.py): the backward kernel against a
float64 index_add (writing a table, or adding into a given one), the forward kernel with and
without a position table, and fused_embedding / fused_tied_embedding / FusedEmbedding against
F.embedding (+ the positions, + a tied LM head). Odd sizes (one token, widths and table sizes that
are not multiples of the tile, table rows nobody looks up, one token repeated over several
BLOCK_T loads), NaN-poisoned output, int32 and int64 indices, bitwise repeatability, bad input,
and the GPT using it.

The kernel has no tl.dot, so every dtype runs in the CPU interpreter too.
"""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgpt
from fastgpt.backend import interpreter_mode
from fastgpt.kernels import embedding as kernels
from fastgpt.ops.embedding import FusedEmbedding, fused_embedding, fused_tied_embedding
from fastgpt.testing import REL_TOL, assert_rel_close, poison_

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (tokens, table rows, width): one token; ragged against the tile (interpreter 4 positions, runs
# of 2 short, 4 tokens a long-run load, 16 columns; GPU 32, 4, 32, 256); more table rows than
# tokens (most rows never looked up)
SHAPES = [(1, 5, 3), (37, 11, 50), (300, 7, 33), (20, 500, 17)]
GPU_SHAPES = [(16384, 50304, 768), (512, 512, 768), (4097, 1000, 300)]


@pytest.fixture
def poisoned(monkeypatch):
    """The launchers' outputs start as NaN: every element must be written (zero-filled or summed)."""
    monkeypatch.setattr(kernels, "_empty", lambda v, c, like: poison_(like.new_empty(v, c)))


def _reference(dy: torch.Tensor, idx: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.zeros(rows, dy.shape[1], dtype=torch.float64, device=dy.device).index_add_(0, idx, dy.double())


def _indices(tokens: int, rows: int, device, skew: bool = True) -> torch.Tensor:
    idx = torch.randint(0, rows, (tokens,), device=device)
    if skew and tokens > 8:
        idx[::2] = rows // 2          # one row looked up by half the tokens: a run of many loads
    return idx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [pytest.param(s, marks=pytest.mark.skipif(not HAS_CUDA, reason="GPU sizes"))
                                            for s in GPU_SHAPES])
def test_backward_kernel_matches_float64(dtype, shape, poisoned, device):
    tokens, rows, width = shape
    idx = _indices(tokens, rows, device)
    dy = torch.randn(tokens, width, device=device).to(dtype)
    dw = kernels.embedding_bwd(dy, idx, rows)
    assert dw.dtype == dtype and dw.shape == (rows, width)
    ref = _reference(dy, idx, rows)
    assert_rel_close(dw, ref, REL_TOL[dtype], "embedding gradient")
    untouched = torch.ones(rows, dtype=torch.bool, device=device)
    untouched[idx] = False
    assert torch.count_nonzero(dw[untouched]) == 0       # rows nobody looked up: zeros, written


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [pytest.param(s, marks=pytest.mark.skipif(not HAS_CUDA, reason="GPU sizes"))
                                            for s in GPU_SHAPES[:1]])
def test_backward_kernel_accumulates_into_a_given_table(dtype, shape, device):
    """out=: the looked-up rows get base + their sums (rounded once), every other row keeps its bits."""
    tokens, rows, width = shape
    idx = _indices(tokens, rows, device)
    dy = torch.randn(tokens, width, device=device).to(dtype)
    base = torch.randn(rows, width, device=device).to(dtype)
    dw = base.clone()
    assert kernels.embedding_bwd(dy, idx, rows, out=dw) is dw
    ref = _reference(dy, idx, rows) + base.double()
    assert_rel_close(dw, ref, REL_TOL[dtype], "accumulated embedding gradient")
    untouched = torch.ones(rows, dtype=torch.bool, device=device)
    untouched[idx] = False
    assert torch.equal(dw[untouched], base[untouched])
    with pytest.raises(ValueError, match="out must be"):
        kernels.embedding_bwd(dy, idx, rows, out=dw[:, :-1] if width > 1 else dw[:-1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_positions", [False, True], ids=["lookup", "positions"])
@pytest.mark.parametrize("shape", [(1, 5, 3), (3 * 37, 11, 50), (2 * 300, 7, 33)] + [
    pytest.param((32 * 512, 50304, 768), marks=pytest.mark.skipif(not HAS_CUDA, reason="GPU sizes"))])
def test_forward_kernel_matches_float64(dtype, with_positions, shape, poisoned, device):
    """embedding_fwd against a float64 gather (+ positions[r % T]), the output poisoned first."""
    tokens, rows, width = shape
    T = tokens if tokens < 8 else tokens // (3 if tokens % 3 == 0 else 2 if tokens % 2 == 0 else 1)
    idx = _indices(tokens, rows, device)
    weight = torch.randn(rows, width + 3, device=device).to(dtype)[:, 1:1 + width]   # strided rows
    positions = torch.randn(T, width, device=device).to(dtype) if with_positions else None
    out = kernels.embedding_fwd(idx, weight, positions)
    ref = weight.double()[idx]
    if with_positions:
        ref = ref + positions.double().repeat(tokens // T, 1)
        assert_rel_close(out, ref, REL_TOL[dtype], "lookup + positions")
    else:
        assert torch.equal(out, weight[idx])
    assert out.dtype == dtype and out.shape == (tokens, width)
    with pytest.raises(ValueError, match="positions must be"):
        kernels.embedding_fwd(idx, weight, torch.randn(tokens + 1, width, device=device).to(dtype))


def test_backward_kernel_int32_indices_strided_rows_and_repeatability(poisoned, device):
    tokens, rows, width = 300, 9, 40
    idx = _indices(tokens, rows, device)
    base = torch.randn(tokens, width + 24, device=device)
    dy = base[:, 5:5 + width]                              # rows 64 apart, unit column stride
    dw = kernels.embedding_bwd(dy, idx.to(torch.int32), rows)
    assert_rel_close(dw, _reference(dy, idx, rows), REL_TOL[torch.float32], "int32 indices, strided dy")
    assert torch.equal(dw, kernels.embedding_bwd(dy.contiguous(), idx, rows))   # same order, same bits


def test_backward_kernel_edges(poisoned, device):
    dy = torch.randn(0, 8, device=device)
    assert torch.count_nonzero(kernels.embedding_bwd(dy, torch.zeros(0, dtype=torch.long, device=device), 4)) == 0
    assert kernels.embedding_bwd(dy, torch.zeros(0, dtype=torch.long, device=device), 0).shape == (0, 8)
    with pytest.raises(ValueError, match="dy must be"):
        kernels.embedding_bwd(torch.randn(3, 4, device=device), torch.zeros(2, dtype=torch.long, device=device), 4)
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        kernels.embedding_bwd(torch.randn(3, 4, device=device, dtype=torch.float64),
                              torch.zeros(3, dtype=torch.long, device=device), 4)


def test_runs_give_each_row_its_sorted_tokens(device):
    idx = torch.tensor([3, 0, 3, 1, 3, 0], device=device)
    sorted_idx, order, starts = kernels.runs(idx, 5)
    assert sorted_idx.tolist() == [0, 0, 1, 3, 3, 3]
    assert order.tolist() == [1, 5, 3, 0, 2, 4]            # stable: equal indices keep token order
    assert starts.tolist() == [0, 2, 3, 3, 6, 6]


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_embedding_matches_f_embedding(backend, dtype, device):
    weight = torch.randn(13, 24, device=device).to(dtype).requires_grad_()
    idx = torch.randint(0, 13, (3, 7), device=device)
    idx[0] = 4
    with fastgpt.use_backend(backend):
        out = fused_embedding(idx, weight)
    assert torch.equal(out, F.embedding(idx, weight))
    dy = torch.randn(out.shape, device=device).to(dtype)
    (dw,) = torch.autograd.grad(out, weight, dy)
    assert dw.dtype == dtype
    assert_rel_close(dw, _reference(dy.reshape(-1, 24), idx.reshape(-1), 13), REL_TOL[dtype], "table gradient")


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_embedding_with_positions_and_a_tied_head(backend, dtype, device):
    """x = weight[idx] + positions, logits = x @ weight^T: the tied op's gradients (the head's summed
    with the lookup's) against float64 autograd of the same two uses of one table."""
    V, C, B, T = 13, 24, 3, 7
    weight = torch.randn(V, C, device=device).to(dtype).requires_grad_()
    positions = torch.randn(T, C, device=device).to(dtype).requires_grad_()
    idx = torch.randint(0, V, (B, T), device=device)
    idx[0] = 4
    dlogits = torch.randn(B, T, V, device=device).to(dtype)
    with fastgpt.use_backend(backend):
        x, head_weight = fused_tied_embedding(idx, weight, positions)
        plain = fused_embedding(idx, weight, positions)
    assert torch.equal(head_weight, weight) and torch.equal(x, plain)
    logits = x @ head_weight.t()
    dw, dpos = torch.autograd.grad(logits, (weight, positions), dlogits)
    w64, p64 = (t.detach().double().requires_grad_() for t in (weight, positions))
    x64 = F.embedding(idx, w64) + p64
    assert_rel_close(x, x64, REL_TOL[dtype], "lookup + positions")
    dw64, dpos64 = torch.autograd.grad(x64 @ w64.t(), (w64, p64), dlogits.double())
    assert dw.dtype == dpos.dtype == dtype
    tol = max(REL_TOL[dtype], 4 * torch.finfo(dtype).eps)      # dlogits @ x rounded to dtype first
    assert_rel_close(dw, dw64, tol, "tied table gradient")
    assert_rel_close(dpos, dpos64, REL_TOL[dtype], "position table gradient")


@pytest.mark.parametrize("used", ["x", "head"])
def test_fused_tied_embedding_with_one_output_unused(used, device):
    """Only the lookup, or only the head, reaches the loss: the table's gradient is that use's."""
    weight = torch.randn(9, 8, device=device, requires_grad=True)
    idx = torch.tensor([[1, 4, 4, 0]], device=device)
    with fastgpt.use_backend("triton"):
        x, head_weight = fused_tied_embedding(idx, weight)
    out = (x * 2).sum() if used == "x" else (head_weight ** 2).sum()
    (dw,) = torch.autograd.grad(out, weight)
    if used == "x":
        expect = _reference(torch.full((4, 8), 2.0, device=device), idx.reshape(-1), 9)
    else:
        expect = 2 * weight.double()
    assert_rel_close(dw, expect, REL_TOL[torch.float32], f"table gradient, {used} only")


def test_fused_embedding_rejects_bad_input(device):
    weight = torch.randn(5, 4, device=device)
    with pytest.raises(TypeError, match="int32 or int64"):
        fused_embedding(torch.zeros(3, device=device), weight)
    with pytest.raises(ValueError, match="2-D"):
        fused_embedding(torch.zeros(3, dtype=torch.long, device=device), weight[0])
    with pytest.raises(TypeError, match="floating-point"):
        fused_embedding(torch.zeros(3, dtype=torch.long, device=device), torch.ones(5, 4, dtype=torch.long, device=device))
    with pytest.raises(TypeError, match="float64"), fastgpt.use_backend("triton"):
        fused_embedding(torch.zeros(3, dtype=torch.long, device=device), weight.double())
    with pytest.raises(ValueError, match=r"positions must be \(T, embedding_dim\) = \(3, 4\)"):
        fused_embedding(torch.zeros(2, 3, dtype=torch.long, device=device), weight, torch.randn(2, 4, device=device))
    with pytest.raises(TypeError, match="same dtype"):
        fused_tied_embedding(torch.zeros(2, 3, dtype=torch.long, device=device), weight,
                             torch.randn(3, 4, device=device).half())
    if HAS_CUDA:
        with pytest.raises(ValueError, match="cpu"):
            fused_embedding(torch.zeros(3, dtype=torch.long), weight)


@pytest.mark.skipif(not interpreter_mode(), reason="the triton backend takes CPU tensors in the interpreter only")
def test_out_of_range_index_is_an_error_on_cpu():
    weight = torch.randn(5, 4)
    for bad in (5, -1):
        with pytest.raises(IndexError, match=r"\[0, 5\)"), fastgpt.use_backend("triton"):
            fused_embedding(torch.tensor([[0, bad, 2]]), weight, torch.randn(3, 4))
    with pytest.raises(IndexError):           # the torch backend: F.embedding's own error
        fused_embedding(torch.tensor([0, 5]), weight)


@pytest.mark.skipif(not HAS_CUDA, reason="a device-side assert needs a GPU")
def test_out_of_range_index_is_a_device_assert_on_the_gpu():
    """In a child process: a device-side assert ends the CUDA context that raised it."""
    code = ("import torch, fastgpt\n"
            "w = torch.randn(5, 4, device='cuda')\n"
            "with fastgpt.use_backend('triton'):\n"
            "    fastgpt.fused_embedding(torch.tensor([[0, 7]], device='cuda'), w)\n"
            "torch.cuda.synchronize()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "index is out of range" in done.stdout + done.stderr


@pytest.mark.skipif(not HAS_CUDA, reason="'auto' picks triton on CUDA tensors only")
def test_auto_runs_float64_tables_on_torch_with_a_warning():
    weight = torch.randn(5, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    with fastgpt.use_backend("auto"), pytest.warns(RuntimeWarning, match="embedding runs on the torch backend"):
        out = fused_embedding(torch.tensor([1, 1, 3], device="cuda"), weight)
    out.sum().backward()
    assert weight.grad[1].eq(2).all() and weight.grad[0].eq(0).all()


def test_module_is_an_nn_embedding_with_its_state_dict(device):
    torch.manual_seed(0)
    ours = FusedEmbedding(10, 6, device=device)
    torch.manual_seed(0)
    theirs = nn.Embedding(10, 6, device=device)
    assert isinstance(ours, nn.Embedding)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert torch.equal(ours.weight, theirs.weight)
    idx = torch.randint(0, 10, (2, 5), device=device)
    with fastgpt.use_backend("triton"):
        assert torch.equal(ours(idx), theirs(idx))


def test_gpt_token_table_gradient_through_the_kernel(monkeypatch, device):
    """The GPT's token table takes the lookup's gradient from the kernel on the triton backend, added
    into the tied LM head's in place (one launch, accumulating), and the position table the sum
    over the batch; both equal the torch backend's."""
    from fastgpt.kernels import cross_entropy as ce_kernels
    calls, head_grads = [], []
    launch, scale = kernels.embedding_bwd, ce_kernels.scale_gradient
    monkeypatch.setattr(kernels, "embedding_bwd", lambda dy, idx, rows, out=None: calls.append(
        (rows, None if out is None else out.data_ptr())) or launch(dy, idx, rows, out))
    monkeypatch.setattr(ce_kernels, "scale_gradient", lambda *args, **kw: head_grads.append(scale(*args, **kw))
                        or head_grads[-1])
    cfg = fastgpt.GPTConfig(block_size=16, vocab_size=40, n_layer=1, n_head=2, n_embd=32, bias=True)
    model = fastgpt.GPT(cfg).to(device)
    idx = torch.randint(0, 40, (2, 16), device=device)
    grads = {}
    for backend in ("torch", "triton"):
        model.zero_grad(set_to_none=True)
        with fastgpt.use_backend(backend):
            _, loss = model(idx, idx)
        loss.backward()
        grads[backend] = (model.transformer.wte.weight.grad.clone(), model.transformer.wpe.weight.grad.clone())
    # one launch, adding into the LM head's own gradient (no copy): GPT passes add_in_place
    assert calls == [(40, head_grads[-1].data_ptr())] and head_grads[-1].shape == (40, 32)
    for ours, ref, name in zip(grads["triton"], grads["torch"], ("wte", "wpe")):
        assert_rel_close(ours, ref, 1e-4, f"{name} gradient")


def test_fused_tied_embedding_leaves_the_incoming_gradient_alone(device):
    """The head's gradient may be the caller's tensor: the backward adds into a copy, never into it."""
    weight = torch.randn(9, 8, device=device, requires_grad=True)
    idx = torch.tensor([[1, 4, 4, 0]], device=device)
    with fastgpt.use_backend("triton"):
        x, head_weight = fused_tied_embedding(idx, weight)
    dx, dhead = torch.randn(1, 4, 8, device=device), torch.randn(9, 8, device=device)
    kept = dhead.clone()
    (dw,) = torch.autograd.grad((x, head_weight), weight, (dx, dhead))
    assert torch.equal(dhead, kept)
    assert_rel_close(dw, _reference(dx.reshape(4, 8), idx.reshape(-1), 9) + dhead.double(), REL_TOL[torch.float32],
                     "tied gradient")



class _FreshGradient(torch.autograd.Function):
    """y = w.sum(1), a stand-in head whose backward makes a fresh gradient and records where it lives."""
    pointers = []

    @staticmethod
    def forward(ctx, w):
        return w.sum(1)

    @staticmethod
    def backward(ctx, g):
        grad = g[:, None] * torch.ones(1, 8, device=g.device, dtype=g.dtype)
        _FreshGradient.pointers.append(grad.data_ptr())
        return grad


@pytest.mark.parametrize("add_in_place", [False, True])
def test_fused_tied_embedding_add_in_place(add_in_place, device):
    """add_in_place: the lookup's rows go into the head's own gradient (its memory is the result);
    without it into a copy. The sum is the same either way."""
    weight = torch.randn(9, 8, device=device, requires_grad=True)
    idx = torch.tensor([[1, 4, 4, 0]], device=device)
    with fastgpt.use_backend("triton"):
        x, head_weight = fused_tied_embedding(idx, weight, add_in_place=add_in_place)
    _FreshGradient.pointers.clear()
    dx, dlogit = torch.randn(1, 4, 8, device=device), torch.randn(9, device=device)
    (dw,) = torch.autograd.grad((x, _FreshGradient.apply(head_weight)), weight, (dx, dlogit))
    assert (_FreshGradient.pointers == [dw.data_ptr()]) == add_in_place
    expect = _reference(dx.reshape(4, 8), idx.reshape(-1), 9) + dlogit.double()[:, None].expand(9, 8)
    assert_rel_close(dw, expect, REL_TOL[torch.float32], "tied gradient")
