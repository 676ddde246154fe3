"""The linear family (fastgpt.ops.linear, kernels/linear.py): the column-sum kernel of the bias
gradient against a float64 sum, and fused_linear against F.linear in float64: output and the
gradients of x, weight and bias. Odd sizes (1 row, a row count and widths that are not multiples
of the tile, one band and many), NaN-poisoned output and partial buffers, strided rows, bad input,
torch.compile(fullgraph=True) through the custom op, and the attention module using it.

The column sum has no tl.dot, so every dtype runs in the CPU interpreter too.
"""
import contextlib
import threading

import pytest
import torch
import torch.nn.functional as F
import triton

import fastgpt
from fastgpt.kernels import linear as kernels
from fastgpt.ops.dispatch import launch_bound, replayed_steps
from fastgpt.ops.linear import fused_linear, linear_triton
from fastgpt.ops.mlp import fused_mlp
from fastgpt.testing import REL_TOL, assert_rel_close, poison_

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (M, N): a single row, a single column, ragged against the tile (interpreter 8 x 16, GPU 32 x 256)
# and the band height, GPT-2's c_attn and c_proj gradients (on the GPU)
SHAPES = [(1, 5), (7, 1), (33, 40), (300, 17), (1000, 300)]
GPU_SHAPES = [(16384, 2304), (16384, 768), (4097, 1000)]


@pytest.fixture
def poisoned(monkeypatch):
    """Every output and partials buffer of the launcher starts as NaN."""
    monkeypatch.setattr(kernels, "_empty", lambda n, like, dtype: poison_(torch.empty(n, device=like.device, dtype=dtype)))
    monkeypatch.setattr(kernels, "_empty_partials",
                        lambda bands, n, like: poison_(torch.empty(bands, n, device=like.device, dtype=torch.float32)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [pytest.param(s, marks=pytest.mark.skipif(not HAS_CUDA, reason="GPU sizes"))
                                            for s in GPU_SHAPES])
def test_column_sum_matches_float64(dtype, shape, poisoned, device):
    dy = torch.randn(*shape, device=device).to(dtype)
    out = kernels.column_sum(dy)
    assert out.dtype == dtype
    assert_rel_close(out, dy.double().sum(0), REL_TOL[dtype], "column sum")


def test_column_sum_in_other_dtype_and_strided_rows(poisoned, device):
    base = torch.randn(50, 70, device=device, dtype=torch.bfloat16)
    dy = base[:, 3:63]                                      # row stride 70, unit column stride
    out = kernels.column_sum(dy, out_dtype=torch.float32)
    assert out.dtype == torch.float32
    assert_rel_close(out, dy.double().sum(0), 1e-6, "column sum of a strided bf16 view in fp32")


def test_column_sum_of_transposed_and_expanded_gradients(poisoned, device):
    dy = torch.randn(40, 30, device=device).t()                        # strides (1, 30)
    assert_rel_close(kernels.column_sum(dy), dy.double().sum(0), 1e-6, "transposed")
    ones = torch.ones((), device=device).expand(37, 21)               # strides (0, 0): d(y.sum())
    assert kernels.column_sum(ones).tolist() == [37.0] * 21


def test_column_sum_has_several_bands_and_is_deterministic(device):
    M, N = 5000, 40
    assert triton.cdiv(M, kernels.band_rows(M, N, torch.device(device))) > 1, "one band: pass 2 untested"
    dy = torch.randn(M, N, device=device)
    assert torch.equal(kernels.column_sum(dy), kernels.column_sum(dy))


def test_column_sum_edge_sizes(device):
    assert kernels.column_sum(torch.empty(0, 4, device=device)).tolist() == [0.0] * 4
    assert kernels.column_sum(torch.empty(3, 0, device=device)).shape == (0,)


def test_column_sum_bad_input(device):
    with pytest.raises(ValueError, match="2-D"):
        kernels.column_sum(torch.randn(2, 3, 4, device=device))
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        kernels.column_sum(torch.randn(2, 3, device=device, dtype=torch.float64))


def reference(x, weight, bias, dy, residual=None):
    x, weight, bias, residual = (None if t is None else t.detach().double().requires_grad_()
                                 for t in (x, weight, bias, residual))
    y = F.linear(x, weight, bias)
    y = y if residual is None else residual + y
    y.backward(dy.double())
    return [y] + [t.grad for t in (x, weight, bias, residual) if t is not None]


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not HAS_CUDA, reason="bf16 GEMMs on CPU are slow; the column sum's bf16 is tested above"))])
@pytest.mark.parametrize("lead", [(1,), (3, 11)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
@pytest.mark.parametrize("replayed", [True, False], ids=["replayed", "eager"])
def test_fused_linear_matches_float64(dtype, lead, bias, residual, replayed, poisoned, device):
    """The kernel path (replayed steps: cuBLASLt with the bias and the residual in its epilogue on
    the GPU) and the eager one (F.linear, the residual added by PyTorch): output and gradients,
    the residual's included."""
    C, N = 48, 100
    x = torch.randn(*lead, C, device=device).to(dtype).requires_grad_()
    weight = (torch.randn(N, C, device=device) * C ** -0.5).to(dtype).requires_grad_()
    b = torch.randn(N, device=device).to(dtype).requires_grad_() if bias else None
    r = torch.randn(*lead, N, device=device).to(dtype).requires_grad_() if residual else None
    dy = torch.randn(*lead, N, device=device).to(dtype)
    with fastgpt.use_backend("triton"), replayed_steps() if replayed else contextlib.nullcontext():
        y = fused_linear(x, weight, b, r)
    y.backward(dy)
    ref = reference(x, weight, b, dy, r)
    got = [y, x.grad, weight.grad] + ([b.grad] if bias else []) + ([r.grad] if residual else [])
    names = ["y", "dx", "dweight"] + (["dbias"] if bias else []) + (["dresidual"] if residual else [])
    for name, out, expected in zip(names, got, ref, strict=True):
        assert_rel_close(out, expected, REL_TOL[dtype], name)


def _backward_on_another_thread(loss: torch.Tensor) -> None:
    """As autograd runs a CUDA backward: on a thread that does not see the caller's contextvars
    (so not its replayed_steps() either)."""
    thread = threading.Thread(target=loss.backward)
    thread.start()
    thread.join()


@pytest.mark.parametrize("op", ["fused_linear", "fused_mlp"])
def test_bias_kernel_runs_for_forwards_in_replayed_steps_only(monkeypatch, device, op):
    """Eagerly (launch-bound) the bias gradient is PyTorch's sum (fused_linear is F.linear); for
    a forward inside replayed steps the column-sum kernel runs, wherever the backward runs."""
    calls = []
    monkeypatch.setattr(kernels, "column_sum", lambda dy, out_dtype=None: calls.append(tuple(dy.shape)) or
                        dy.float().sum(0).to(out_dtype))
    torch.manual_seed(0)
    x = torch.randn(3, 8, device=device, requires_grad=True)
    if op == "fused_linear":
        lin = torch.nn.Linear(8, 5).to(device)
        forward, bias_width = (lambda: fused_linear(x, lin.weight, lin.bias)), 5
    else:
        fc, proj = torch.nn.Linear(8, 16).to(device), torch.nn.Linear(16, 8).to(device)
        forward, bias_width = (lambda: fused_mlp(x, fc.weight, fc.bias, proj.weight, proj.bias)), 8
    assert launch_bound()
    with fastgpt.use_backend("triton"):
        _backward_on_another_thread(forward().sum())
        assert calls == []
        with replayed_steps():
            assert not launch_bound()
            loss = forward().sum()
        _backward_on_another_thread(loss)
    assert calls == [(3, bias_width)] and launch_bound()


def test_fused_linear_under_autocast_casts_as_f_linear(device):
    x = torch.randn(4, 8, device=device)
    lin = torch.nn.Linear(8, 6).to(device)
    with torch.autocast(device.type if isinstance(device, torch.device) else device, dtype=torch.bfloat16), \
            fastgpt.use_backend("torch"):
        assert fused_linear(x, lin.weight, lin.bias).dtype == lin(x).dtype == torch.bfloat16


def test_fused_linear_bad_input(device):
    x, w = torch.randn(2, 8, device=device), torch.randn(6, 8, device=device)
    with pytest.raises(ValueError, match="fused_linear: inner sizes do not match"):
        fused_linear(x, torch.randn(6, 7, device=device))
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        fused_linear(x, w, torch.randn(5, device=device))
    with pytest.raises(TypeError, match="mixed dtypes"):
        fused_linear(x.half(), w)
    with pytest.raises(TypeError, match="floating-point"):
        fused_linear(x.long(), w)
    with pytest.raises(TypeError, match="must be tensors"):
        fused_linear(x, [[1.0]])
    with pytest.raises(ValueError, match=r"residual has shape \(2, 5\), the output's is \(2, 6\)"):
        fused_linear(x, w, residual=torch.randn(2, 5, device=device))
    with pytest.raises(TypeError, match="residual is torch.float16"):
        fused_linear(x, w, residual=torch.randn(2, 6, device=device).half())
    with pytest.raises(TypeError, match="residual must be a tensor"):
        fused_linear(x, w, residual=1.0)


def test_bias_grad_op_passes_opcheck(device):
    from fastgpt.ops.linear import _bias_grad
    torch.library.opcheck(_bias_grad, (torch.randn(9, 5, device=device), torch.float32))


def test_torch_compile_fullgraph(device):
    """The triton implementation (Function + custom op + fake) traces as one graph (called
    directly: the backend switch reads a ContextVar, which dynamo does not trace)."""
    x = torch.randn(5, 16, device=device, requires_grad=True)
    lin = torch.nn.Linear(16, 24).to(device)
    backend = "inductor" if HAS_CUDA else "aot_eager"   # no C++ toolchain needed on CPU
    torch._dynamo.reset()
    compiled = torch.compile(linear_triton, fullgraph=True, backend=backend)
    compiled(x, lin.weight, lin.bias).square().sum().backward()
    got = [x.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone()]
    x.grad = None
    lin.zero_grad()
    lin(x).square().sum().backward()
    for name, out, ref in zip(["dx", "dweight", "dbias"], got, [x.grad, lin.weight.grad, lin.bias.grad]):
        assert_rel_close(out, ref, 1e-5, name)


def test_attention_module_runs_its_projections_through_fused_linear(monkeypatch, device):
    calls = []
    monkeypatch.setitem(fastgpt.ops.linear.linear.impls, "triton",
                        lambda *a: calls.append(a[1].shape) or linear_triton(*a))
    attn = fastgpt.FusedCausalSelfAttention(n_embd=32, n_head=2).to(device)
    with fastgpt.use_backend("triton"), replayed_steps():
        attn(torch.randn(2, 5, 32, device=device)).sum().backward()
    assert calls == [(96, 32), (32, 32)]
    assert attn.c_attn.bias.grad is not None and attn.c_proj.bias.grad is not None
