"""Fused residual-add + LayerNorm (fastgpt.ops.layernorm, kernels/layernorm.py).

Every output (y, s) and every gradient (x, residual, weight, bias) against the float64 PyTorch
reference, as relative errors (fastgpt.testing); hidden sizes 1..4096 incl. non powers of two,
rows not a multiple of the block, residual/bias absent, leading shapes, outputs poisoned with NaN
so an unwritten element fails, bit-identical weight/bias gradients over two runs, the custom ops
(opcheck, torch.compile), the module's nn.LayerNorm state dict, and clear errors for bad input.
On CPU the Triton kernels run in the interpreter (fp32, fp16); with a GPU, bf16 and larger sizes.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgpt
from fastgpt import _cuda
from fastgpt.ops.layernorm import (AddLayerNormFunction, FusedAddLayerNorm, add_layernorm,
                                   add_layernorm_reference, fused_add_layernorm)
from fastgpt.testing import REL_TOL, assert_rel_close, poison_

HAS_CUDA = torch.cuda.is_available()
gpu_only = pytest.mark.skipif(not HAS_CUDA, reason="bf16 and large sizes run on a CUDA GPU only "
                              "(the CPU interpreter is slow, and its bf16 is not trustworthy)")


def _cuda_has_layernorm() -> bool:
    ext = _cuda.load()
    return ext is not None and hasattr(ext, "add_layernorm_fwd")


BACKENDS = ["triton", pytest.param("cuda", marks=pytest.mark.skipif(
    not _cuda_has_layernorm(), reason="the CUDA extension fastgpt._C is not built here "
    "(or has no add_layernorm_fwd): fastgpt._cuda.load() gave nothing to test"))]
CPU_DTYPES = [torch.float32, torch.float16]
DTYPES = CPU_DTYPES + [pytest.param(torch.bfloat16, marks=gpu_only)]


@pytest.fixture
def poisoned_allocations(monkeypatch):
    """Every float tensor the kernels' launchers allocate (outputs, partial sums) starts as NaN."""
    for name in ("empty", "empty_like"):
        original = getattr(torch, name)

        def poisoned(*args, _original=original, **kwargs):
            t = _original(*args, **kwargs)
            return poison_(t) if t.is_floating_point() else t

        monkeypatch.setattr(torch, name, poisoned)


def make_inputs(shape, dtype, device, residual=True, bias=True, weight_dtype=None):
    C = shape[-1]
    weight_dtype = weight_dtype or dtype
    x = torch.randn(shape, dtype=dtype, device=device)
    r = torch.randn(shape, dtype=dtype, device=device) if residual else None
    w = (1 + 0.5 * torch.randn(C, device=device)).to(weight_dtype)
    b = (0.5 * torch.randn(C, device=device)).to(weight_dtype) if bias else None
    return x, r, w, b


def outputs_and_grads(fn, x, r, w, b, gy, gs, eps=1e-5):
    """Run fn, backpropagate (y * gy).sum() + (s * gs).sum(); return y, s and the grads."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, r, w, b)]
    y, s = fn(*leaves, eps)
    ((y.double() * gy.double()).sum() + (s.double() * gs.double()).sum()).backward()
    return [y, s] + [t.grad if t is not None else None for t in leaves]


NAMES = ("y", "s", "dx", "dresidual", "dweight", "dbias")


def check_against_float64(backend, x, r, w, b, tol):
    gy, gs = torch.randn_like(x), torch.randn_like(x)
    ref = outputs_and_grads(add_layernorm_reference, *(None if t is None else t.double()
                                                       for t in (x, r, w, b)), gy, gs)
    with fastgpt.use_backend(backend):
        out = outputs_and_grads(fused_add_layernorm, x, r, w, b, gy, gs)
    for name, o, e in zip(NAMES, out, ref):
        if e is None:
            assert o is None, name
            continue
        assert o.dtype == (w.dtype if name in ("dweight", "dbias") else x.dtype), name
        if e.norm() < 1e-9:    # C == 1: y == bias whatever the weight, so dweight is exactly 0
            assert o.double().abs().max() < 1e-6, name
        else:
            assert_rel_close(o, e, tol, name)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("C", [1, 7, 768, 1000, 4096])
def test_matches_float64_reference(backend, dtype, C, device, poisoned_allocations):
    rows = 37 if C < 4096 else 9          # never a multiple of the row block or program chunk
    check_against_float64(backend, *make_inputs((rows, C), dtype, device), REL_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows, C", [(1000, 7), (3001, 33)])
def test_many_rows_of_a_small_hidden_size(backend, rows, C, device, poisoned_allocations):
    # several rows a program and several programs, the last one's rows cut short
    check_against_float64(backend, *make_inputs((rows, C), torch.float32, device),
                          REL_TOL[torch.float32])


@pytest.mark.parametrize("knobs", [
    {"ROW_TILE": 1024, "FWD_NUM_WARPS": 8}, {"ROW_TILE": 4096},
    {"BWD_ROW_TILE": 4096, "BWD_ROWS_PER_PROGRAM": 32, "BWD_PREFETCH": False},
    {"BWD_ROW_TILE": 1024, "BWD_NUM_WARPS": 4, "BWD_ROWS_PER_PROGRAM": 256},
    {"BWD_MAXNREG": 80}], ids=str)
def test_tuning_knobs_the_benchmark_times_stay_correct(knobs, device, monkeypatch):
    from fastgpt.kernels import layernorm as launchers
    for knob, value in knobs.items():
        monkeypatch.setattr(launchers, knob, value)
    for shape in ((333, 100), (9, 768)):
        check_against_float64("triton", *make_inputs(shape, torch.float16, device),
                              REL_TOL[torch.float16])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "no_residual"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("C", [7, 1000])
def test_variants_with_leading_shape(backend, residual, bias, C, device, poisoned_allocations):
    x, r, w, b = make_inputs((3, 5, C), torch.float16, device, residual, bias)
    check_against_float64(backend, x, r, w, b, REL_TOL[torch.float16])


def check_x_bias_against_float64(backend, x, r, w, b, xb, tol, keyword="x_bias"):
    """With x_bias (or bias_grad_for, by `keyword`): y, s and every gradient, that bias's
    included, against float64."""
    gy, gs = torch.randn_like(x), torch.randn_like(x)

    def run(fn, tensors):
        leaves = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
        x_, r_, w_, b_, xb_ = leaves
        y, s = fn(x_, r_, w_, b_, 1e-5, **{keyword: xb_})
        ((y.double() * gy.double()).sum() + (s.double() * gs.double()).sum()).backward()
        return [y, s] + [None if t is None else t.grad for t in leaves]

    ref = run(add_layernorm_reference, [None if t is None else t.double() for t in (x, r, w, b, xb)])
    with fastgpt.use_backend(backend):
        out = run(fused_add_layernorm, (x, r, w, b, xb))
    for name, o, e in zip(NAMES + ("dx_bias",), out, ref):
        if e is None:
            assert o is None, name
            continue
        assert o.dtype == (w.dtype if name in ("dweight", "dbias") else x.dtype), name
        assert_rel_close(o, e, tol, name)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "no_residual"])
@pytest.mark.parametrize("shape", [(1, 7), (37, 1000), (3, 5, 768), (1000, 33)], ids=str)
def test_x_bias_matches_float64_reference(backend, residual, shape, device, poisoned_allocations):
    """s = x + x_bias + residual (the cuda backend runs it on the Triton pair): one row, rows not
    a multiple of a program's, several programs (1000 x 33), and without a residual, where s is
    stored (it is not x) and x gets the whole gradient."""
    x, r, w, b = make_inputs(shape, torch.float16, device, residual=residual)
    xb = torch.randn(shape[-1], dtype=torch.float16, device=device)
    check_x_bias_against_float64(backend, x, r, w, b, xb, REL_TOL[torch.float16])


@gpu_only
def test_x_bias_bf16_on_gpu(device):
    x, r, w, b = make_inputs((4096, 768), torch.bfloat16, device, weight_dtype=torch.float32)
    xb = torch.randn(768, dtype=torch.bfloat16, device=device)
    check_x_bias_against_float64("triton", x, r, w, b, xb, REL_TOL[torch.bfloat16])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
@pytest.mark.parametrize("shape", [(1, 7), (37, 1000), (3, 5, 768), (1000, 33)], ids=str)
def test_bias_grad_for_matches_float64_reference(backend, residual, shape, device, poisoned_allocations):
    """bias_grad_for: a bias x already holds (GPT's blocks: c_proj added it in its GEMM) is not
    added again; its gradient, s's summed over rows, comes back from the backward. Without a
    residual (the blocks' case) s is x itself and x gets the whole gradient."""
    x, r, w, b = make_inputs(shape, torch.float16, device, residual=residual)
    bias = torch.randn(shape[-1], dtype=torch.float16, device=device)
    out = check_x_bias_against_float64(backend, x, r, w, b, bias, REL_TOL[torch.float16], keyword="bias_grad_for")
    if not residual:
        assert_rel_close(out[1], x, 0.0, "s is x: the bias is not added")


@gpu_only
def test_bias_grad_for_bf16_on_gpu(device):
    x, _, w, b = make_inputs((4096, 768), torch.bfloat16, device, residual=False, weight_dtype=torch.float32)
    bias = torch.randn(768, dtype=torch.bfloat16, device=device)
    check_x_bias_against_float64("triton", x, None, w, b, bias, REL_TOL[torch.bfloat16], keyword="bias_grad_for")


def test_x_bias_errors(device):
    x, r, w, b = make_inputs((4, 8), torch.float32, device)
    with pytest.raises(ValueError, match="x_bias has shape"):
        fused_add_layernorm(x, r, w, b, x_bias=torch.zeros(7, device=device))
    with pytest.raises(TypeError, match="x_bias is torch.float16"):
        fused_add_layernorm(x, r, w, b, x_bias=torch.zeros(8, device=device, dtype=torch.float16))
    with pytest.raises(ValueError, match="bias_grad_for has shape"):
        fused_add_layernorm(x, r, w, b, bias_grad_for=torch.zeros(7, device=device))
    with pytest.raises(TypeError, match="bias_grad_for is torch.float16"):
        fused_add_layernorm(x, r, w, b, bias_grad_for=torch.zeros(8, device=device, dtype=torch.float16))
    with pytest.raises(ValueError, match="pass one of them"):
        fused_add_layernorm(x, r, w, b, x_bias=torch.zeros(8, device=device), bias_grad_for=torch.zeros(8, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_weight_with_half_activations(backend, device):
    x, r, w, b = make_inputs((2, 11, 96), torch.float16, device, weight_dtype=torch.float32)
    check_against_float64(backend, x, r, w, b, REL_TOL[torch.float16])


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_residual_s_is_x_and_its_gradient_adds(backend, device):
    x, _, w, b = make_inputs((4, 33), torch.float32, device)
    x.requires_grad_()
    with fastgpt.use_backend(backend):
        y, s = fused_add_layernorm(x, None, w, b)
        # x as an output of the op's node (a view of x): s's gradient reaches the op's backward
        assert s._base is x and s.grad_fn is y.grad_fn
        (y.sum() + 3 * s.sum()).backward()
    xr = x.detach().clone().requires_grad_()
    yr, sr = add_layernorm_reference(xr, None, w, b, 1e-5)
    (yr.sum() + 3 * sr.sum()).backward()
    assert_rel_close(x.grad, xr.grad, REL_TOL[torch.float32], "dx")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("used", ["y", "s"])
def test_one_output_unused(backend, used, device):
    # the other output's gradient is None (not materialised): the backward must still be right
    x, r, w, b = make_inputs((5, 40), torch.float32, device)
    grads = []
    for fn, name in ((fused_add_layernorm, backend), (fused_add_layernorm, "torch")):
        leaves = [t.detach().clone().requires_grad_() for t in (x, r, w, b)]
        with fastgpt.use_backend(name):
            y, s = fn(*leaves)
        (y if used == "y" else s).pow(2).sum().backward()
        grads.append([t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves])
    for name, o, e in zip(NAMES[2:], *grads):
        if e.norm() == 0:
            assert o.abs().max() == 0, name
        else:
            assert_rel_close(o, e, REL_TOL[torch.float32], name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_and_bias_gradients_are_bit_identical_across_runs(backend, device):
    rows, C = (4099, 768) if HAS_CUDA else (75, 48)
    x, r, w, b = make_inputs((rows, C), torch.float32, device)
    gy, gs = torch.randn_like(x), torch.randn_like(x)
    with fastgpt.use_backend(backend):
        first = outputs_and_grads(fused_add_layernorm, x, r, w, b, gy, gs)
        second = outputs_and_grads(fused_add_layernorm, x, r, w, b, gy, gs)
    for name, a, c in zip(NAMES, first, second):
        assert torch.equal(a, c), f"{name} differs between two identical runs"


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_non_contiguous_inputs(backend, device):
    x, r, w, b = make_inputs((0, 16), torch.float32, device)
    with fastgpt.use_backend(backend):
        y, s = fused_add_layernorm(x, r, w, b)
    assert y.shape == s.shape == (0, 16)
    x, r, w, b = make_inputs((16, 6), torch.float32, device)       # x.t(): (6, 16), strided
    check_against_float64(backend, x.t(), r.t(), w.repeat(16 // 6 + 1)[:16],
                          b.repeat(3)[:16], REL_TOL[torch.float32])


def test_launcher_can_skip_storing_the_sum(device):
    from fastgpt.kernels.layernorm import add_layernorm_fwd
    x, r, w, b = make_inputs((9, 24), torch.float32, device)
    y, s, _, _ = add_layernorm_fwd(x, r, w, b, 1e-5, store_sum=False)
    assert s is None
    assert_rel_close(y, add_layernorm_reference(x, r, w, b, 1e-5)[0], REL_TOL[torch.float32], "y")
    with pytest.raises(TypeError, match="supports"):
        add_layernorm_fwd(x.double(), None, w, b, 1e-5)


def test_custom_ops_pass_opcheck(device):
    x, r, w, b = make_inputs((6, 20), torch.float32, device)
    y, s, mean, rstd = torch.ops.fastgpt.add_layernorm_fwd(x, r, w, b, 1e-5, "triton")
    torch.library.opcheck(torch.ops.fastgpt.add_layernorm_fwd.default, (x, r, w, b, 1e-5, "triton"))
    torch.library.opcheck(torch.ops.fastgpt.add_layernorm_fwd.default, (x, None, w, None, 1e-5, "triton"))
    for ds, has_bias in ((torch.randn_like(x), True), (None, False)):
        torch.library.opcheck(torch.ops.fastgpt.add_layernorm_bwd.default,
                              (torch.randn_like(x), ds, s, w, mean, rstd, has_bias, "triton"))
    # with the branch's bias: s stored even without a residual, its gradient a fourth output
    xb = torch.randn(20, device=device)
    for residual in (r, None):
        torch.library.opcheck(torch.ops.fastgpt.add_layernorm_fwd.default, (x, residual, w, b, 1e-5, "triton", xb))
    y, s, mean, rstd = torch.ops.fastgpt.add_layernorm_fwd(x, None, w, b, 1e-5, "triton", xb)
    torch.library.opcheck(torch.ops.fastgpt.add_layernorm_bwd.default,
                          (torch.randn_like(x), None, s, w, mean, rstd, True, "triton", xb))


@pytest.mark.parametrize("residual", [True, False], ids=["residual", "no_residual"])
def test_torch_compile_fullgraph(residual, device):
    # the triton implementation: Function + custom ops trace without graph breaks
    x, r, w, b = make_inputs((2, 3, 32), torch.float32, device, residual)
    gy, gs = torch.randn_like(x), torch.randn_like(x)
    eager = outputs_and_grads(add_layernorm.implementation("triton"), x, r, w, b, gy, gs)
    compiled_fn = torch.compile(add_layernorm.implementation("triton"), fullgraph=True,
                                backend="inductor" if HAS_CUDA else "aot_eager")
    compiled = outputs_and_grads(compiled_fn, x, r, w, b, gy, gs)
    for name, a, c in zip(NAMES, eager, compiled):
        assert (a is None) == (c is None), name
        if a is not None:
            assert_rel_close(c, a, 1e-6, name)


@pytest.mark.parametrize("bias", [True, False])
def test_module_state_dict_is_that_of_nn_layernorm(bias, device):
    ln = nn.LayerNorm(24, bias=bias, device=device)
    with torch.no_grad():
        ln.weight.normal_()
        if bias:
            ln.bias.normal_()
    fused = FusedAddLayerNorm(24, bias=bias).to(device)
    fused.load_state_dict(ln.state_dict())
    assert fused.state_dict().keys() == ln.state_dict().keys()
    x, r = torch.randn(2, 5, 24, device=device), torch.randn(2, 5, 24, device=device)
    with fastgpt.use_backend("triton"):
        y, s = fused(x, r)
    assert_rel_close(s, x + r, 1e-6, "s")
    assert_rel_close(y, ln(x + r), REL_TOL[torch.float32], "y")


def test_function_returns_x_as_s_without_residual(device):
    x, _, w, _ = make_inputs((3, 8), torch.float32, device)
    y, s = AddLayerNormFunction.apply(x, None, w, None, 1e-5, "triton")
    assert torch.equal(s, x) and s.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("make_bad, error, match", [
    (lambda x, r, w, b: (x, r[:, :-1], w, b), ValueError, "residual has shape"),
    (lambda x, r, w, b: (x, r, w[:-1], b), ValueError, r"weight has shape \(15,\)"),
    (lambda x, r, w, b: (x, r, w, b[:-1]), ValueError, "bias has shape"),
    (lambda x, r, w, b: (x.long(), r.long(), w, b), TypeError, "floating-point"),
    (lambda x, r, w, b: (x, r.int(), w, b), TypeError, "residual must be a floating-point"),
    (lambda x, r, w, b: (x, r.half(), w, b), TypeError, "x is torch.float32 but residual is"),
    (lambda x, r, w, b: (x, r, w, b.half()), TypeError, "weight is torch.float32 but bias"),
    (lambda x, r, w, b: (x, r, w.to("meta"), b), ValueError, "weight is on meta"),
    (lambda x, r, w, b: (x[0, 0], r, w, b), ValueError, "scalar"),
    (lambda x, r, w, b: (x, r, w.numpy(), b), TypeError, "weight must be a torch.Tensor"),
    (lambda x, r, w, b: (x.tolist(), r, w, b), TypeError, "x must be a torch.Tensor"),
    (lambda x, r, w, b: (x, r, w, b, -1.0), ValueError, "eps must be >= 0"),
])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_inputs_are_clear_errors(make_bad, error, match, backend):
    args = make_bad(*make_inputs((4, 16), torch.float32, "cpu"))
    with fastgpt.use_backend(backend), pytest.raises(error, match=match):
        fused_add_layernorm(*args)


# ---- GPU only: bf16, the model's sizes and wide rows


@gpu_only
@pytest.mark.parametrize("C", [768, 1600, 2304, 16384, 65536])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gpu_large_bf16(backend, C, poisoned_allocations):
    rows = 8191 if C <= 2304 else 67
    if backend == "cuda" and C > _cuda.MAX_CHANNELS:     # the extension's documented limit
        with pytest.raises(_cuda.InputError, match="normalised dimension"), fastgpt.use_backend("cuda"):
            fused_add_layernorm(*make_inputs((rows, C), torch.bfloat16, "cuda"))
        return
    check_against_float64(backend, *make_inputs((rows, C), torch.bfloat16, "cuda"),
                          REL_TOL[torch.bfloat16])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_autocast_casts_a_mixed_residual_stream(backend, device):
    # under autocast an fp32 residual stream meets half-precision sublayer outputs
    x, r, w, b = make_inputs((4, 64), torch.float16, device, weight_dtype=torch.float32)
    r = r.float().requires_grad_()
    w.requires_grad_()
    with fastgpt.use_backend(backend), torch.autocast(device.type, dtype=torch.float16):
        y, s = fused_add_layernorm(x, r, w, b)
        # the torch backend is plain PyTorch: F.layer_norm's output dtype is autocast's policy for
        # it (float32 on CUDA); the kernels compute in the one autocast dtype
        expected = F.layer_norm(x, (64,), w, b).dtype if backend == "torch" else torch.float16
    assert y.dtype == expected and s.dtype == torch.float16
    y.float().sum().backward()
    assert r.grad.dtype == w.grad.dtype == torch.float32
    ref = add_layernorm_reference(x.double(), r.half().double(), w.half().double(),
                                  b.half().double(), 1e-5)[0]
    assert_rel_close(y, ref, REL_TOL[torch.float16], "y")
