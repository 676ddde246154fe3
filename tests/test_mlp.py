"""Fused bias + GELU MLP (fastgpt.ops.mlp, kernels/mlp.py) against a float64 PyTorch reference:
output and the gradients of x, both weights and both biases; odd sizes (1 and 33 tokens, C = 40
and 100, not multiples of the tile); no bias; every kernel option; NaN-poisoned output buffers;
bad input; nanoGPT state dicts; torch.compile(fullgraph=True) through the custom ops.

On CPU the Triton kernels run in the interpreter (fp32, fp16); bf16 and the large sizes run
only on a GPU (tl.dot on bf16 is wrong in the interpreter).
"""
import contextlib

import pytest
import torch

import fastgpt
from fastgpt.backend import cuda_extension_available
from fastgpt.kernels import mlp_gluon
from fastgpt.ops.mlp import (FusedMLP, MLPOptions, fused_linear_gelu, fused_mlp, mlp_reference,
                            linear_gelu_triton, mlp_triton)
from fastgpt.ops.dispatch import replayed_steps
from fastgpt.testing import REL_TOL, assert_rel_close, poison_
from nanogpt_reference import MLP as NanoMLP

HAS_CUDA = torch.cuda.is_available()
gpu_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
BACKENDS = ["triton", pytest.param("cuda", marks=pytest.mark.skipif(
    not (HAS_CUDA and cuda_extension_available()), reason="CUDA extension not built / no GPU"))]
DTYPES = [torch.float32, torch.float16,
          pytest.param(torch.bfloat16, marks=gpu_only)]


def make_params(C, H, dtype, device, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale):
        return (torch.randn(*shape, generator=g) * scale).to(device, dtype).requires_grad_()

    return dict(fc_weight=rand(H, C, scale=C ** -0.5), fc_bias=rand(H, scale=0.5) if bias else None,
                proj_weight=rand(C, H, scale=H ** -0.5), proj_bias=rand(C, scale=0.5) if bias else None)


def run(fn, x, params, dy):
    """Output and gradients of (x, *params) for the cotangent dy; None for absent params."""
    leaves = [x] + [p for p in params.values() if p is not None]
    y = fn(x, *params.values())
    grads = iter(torch.autograd.grad(y, leaves, dy))
    return [y, next(grads)] + [next(grads) if p is not None else None for p in params.values()]


class _CodedGelu(torch.autograd.Function):
    """float64 gelu_tanh whose backward multiplies by the decoded codes of gelu'(pre): the
    oracle of the MLP keeping codes (MLPOptions.gelu_grad_code; the same arithmetic, exact
    elsewhere)."""

    @staticmethod
    def forward(ctx, pre):
        ctx.save_for_backward(pre)
        return torch.nn.functional.gelu(pre, approximate="tanh")

    @staticmethod
    def backward(ctx, dh):
        pre, = ctx.saved_tensors
        return dh * mlp_gluon.gelu_grad_decode(mlp_gluon.gelu_grad_encode(pre)).double()


def mlp64(x, fc_weight, fc_bias, proj_weight, proj_bias, residual=None, coded=False):
    """The float64 oracle: mlp_reference, or with the GELU's derivative taken from its codes."""
    if not coded:
        return mlp_reference(x, fc_weight, fc_bias, proj_weight, proj_bias, residual=residual)
    y = torch.nn.functional.linear(_CodedGelu.apply(torch.nn.functional.linear(x, fc_weight, fc_bias)),
                                   proj_weight, proj_bias)
    return y if residual is None else y + residual


def keeps_codes(backend: str, dtype: torch.dtype, options: MLPOptions = MLPOptions()) -> bool:
    """Whether the MLP keeps gelu'(pre)'s codes for its backward (the triton backend's choice)."""
    return backend == "triton" and options.keeps_codes(dtype)


def reference(x, params, dy, coded=False):
    x64 = x.detach().double().requires_grad_()
    p64 = {k: None if p is None else p.detach().double().requires_grad_() for k, p in params.items()}
    return run(lambda *a: mlp64(*a, coded=coded), x64, p64, dy.double())


NAMES = ["y", "dx", "dfc_weight", "dfc_bias", "dproj_weight", "dproj_bias"]


def check(outs, refs, dtype):
    for name, out, ref in zip(NAMES, outs, refs):
        if ref is None:
            assert out is None, name
            continue
        assert out.dtype == dtype, name
        assert_rel_close(out, ref, REL_TOL[dtype], name)


def inputs(shape, C, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, C, generator=g).to(device, dtype).requires_grad_()
    dy = torch.randn(*shape, C, generator=g).to(device, dtype)
    return x, dy


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, C", [((1,), 40), ((33,), 40), ((2, 17), 100), ((3, 1, 5), 64)])
def test_mlp_matches_float64(backend, dtype, shape, C, device):
    x, dy = inputs(shape, C, dtype, device)
    params = make_params(C, 4 * C, dtype, device)
    with fastgpt.use_backend(backend):
        outs = run(fused_mlp, x, params, dy)
    assert outs[0].shape == (*shape, C)
    check(outs, reference(x, params, dy, coded=keeps_codes(backend, dtype)), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_without_bias(backend, dtype, device):
    x, dy = inputs((33,), 40, dtype, device)
    params = make_params(40, 160, dtype, device, bias=False)
    with fastgpt.use_backend(backend):
        outs = run(fused_mlp, x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes(backend, dtype)), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [MLPOptions(), MLPOptions(proj="triton"), MLPOptions(cuda_gemm="cublas")],
                         ids=repr)
@pytest.mark.parametrize("replayed", [True, False], ids=["replayed", "eager"])
def test_mlp_with_residual_matches_float64(backend, dtype, options, replayed, device):
    """fused_mlp(..., residual): the residual added to c_proj's output (in its GEMM's epilogue:
    cuBLASLt's where launches are free, PyTorch's addmm eagerly; after the Triton GEMM with
    proj="triton"), its gradient the output's; the c_proj bias detached as GPT's blocks pass it
    (its gradient left to the next LayerNorm), so none is computed for it."""
    x, dy = inputs((2, 17), 40, dtype, device)
    params = make_params(40, 160, dtype, device)
    residual = inputs((2, 17), 40, dtype, device, seed=2)[0]
    detached = dict(params, proj_bias=params["proj_bias"].detach())
    with fastgpt.use_backend(backend), replayed_steps() if replayed else contextlib.nullcontext():
        y = fused_mlp(x, *detached.values(), options=options, residual=residual)
    leaves = [x, residual, params["fc_weight"], params["fc_bias"], params["proj_weight"]]
    grads = torch.autograd.grad(y, leaves, dy)
    x64, r64 = (t.detach().double().requires_grad_() for t in (x, residual))
    p64 = {k: p.detach().double().requires_grad_() for k, p in params.items()}
    y64 = mlp64(x64, *p64.values(), residual=r64, coded=keeps_codes(backend, dtype, options))
    refs = torch.autograd.grad(y64, [x64, r64, p64["fc_weight"], p64["fc_bias"], p64["proj_weight"]], dy.double())
    for name, out, ref in zip(["y", "dx", "dresidual", "dfc_weight", "dfc_bias", "dproj_weight"],
                              (y, *grads), (y64, *refs), strict=True):
        assert out.dtype == dtype, name
        assert_rel_close(out, ref, REL_TOL[dtype], name)


ALL_TRITON = dict(proj="triton", dgrad="triton", wgrad="triton")
EPILOGUE = dict(gelu_grad="gemm_epilogue")
OPTIONS = [MLPOptions(), MLPOptions(**EPILOGUE), MLPOptions(**ALL_TRITON, **EPILOGUE),
           MLPOptions(wgrad="recompute"), MLPOptions(wgrad="recompute", **EPILOGUE), MLPOptions(dgrad="triton"),
           MLPOptions(proj="triton", bias_grad="torch"), MLPOptions(bias_grad="torch", **EPILOGUE),
           MLPOptions(save_gelu=True), MLPOptions(save_gelu=True, **EPILOGUE),
           MLPOptions(save_gelu=True, wgrad="recompute"),
           MLPOptions(schedule="tiled", **ALL_TRITON, **EPILOGUE),
           MLPOptions(schedule="persistent", **ALL_TRITON, **EPILOGUE)]


@pytest.mark.parametrize("options", OPTIONS, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_kernel_option_agrees(options, dtype, device):
    x, dy = inputs((2, 17), 40, dtype, device)
    params = make_params(40, 100, dtype, device)   # H = 100: the hidden size need not be 4C
    with fastgpt.use_backend("triton"):
        outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes("triton", dtype, options)), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("wgrad", ["torch", "triton"])
def test_linear_gelu_matches_float64(backend, dtype, bias, wgrad, device):
    x, _ = inputs((3, 11), 40, dtype, device)
    params = make_params(40, 72, dtype, device, bias=bias)
    weight, b = params["fc_weight"], params["fc_bias"]
    dh = torch.randn(3, 11, 72).to(device, dtype)
    leaves = [t for t in (x, weight, b) if t is not None]
    with fastgpt.use_backend(backend):
        h = fused_linear_gelu(x, weight, b, options=MLPOptions(wgrad=wgrad))
    grads = torch.autograd.grad(h, leaves, dh)
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    h64 = torch.nn.functional.gelu(torch.nn.functional.linear(*leaves64, *([] if bias else [None])),
                                   approximate="tanh")
    grads64 = torch.autograd.grad(h64, leaves64, dh.double())
    assert_rel_close(h, h64, REL_TOL[dtype], "h")
    for name, g, g64 in zip(["dx", "dweight", "dbias"], grads, grads64):
        assert_rel_close(g, g64, REL_TOL[dtype], name)


def test_poisoned_buffers_are_all_written(monkeypatch, device):
    """Every buffer the launchers allocate starts as NaN: an element a kernel skips fails the check."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    partials = kernels._empty_partials
    monkeypatch.setattr(kernels, "_empty_partials", lambda like, m, n: poison_(partials(like, m, n)))
    dtype = torch.float32
    for options in (MLPOptions(save_gelu=False), MLPOptions(save_gelu=True), MLPOptions(wgrad="recompute"),
                    MLPOptions(**ALL_TRITON, **EPILOGUE), MLPOptions(save_gelu=True, **EPILOGUE),
                    MLPOptions(schedule="tiled", **EPILOGUE), MLPOptions(schedule="persistent", **EPILOGUE)):
        x, dy = inputs((33,), 40, dtype, device)
        params = make_params(40, 160, dtype, device)
        with fastgpt.use_backend("triton"):
            outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
        check(outs, reference(x, params, dy, coded=keeps_codes("triton", dtype, options)), dtype)
    with fastgpt.use_backend("triton"):
        h = fused_linear_gelu(x, params["fc_weight"], params["fc_bias"])
        grads = torch.autograd.grad(h, [x, params["fc_weight"], params["fc_bias"]], torch.randn_like(h))
    assert all(torch.isfinite(t).all() for t in (h, *grads))


@pytest.mark.parametrize("schedule", ["tiled", "persistent", "persistent_tma"])
@pytest.mark.parametrize("dtype, C, tma", [(torch.float32, 40, True), (torch.float16, 100, False)])
def test_fused_gemms_on_every_schedule(schedule, dtype, C, tma, device):
    """The two fused GEMMs alone on each schedule, with TMA where rows are 16-byte aligned
    (C = 100 in fp16 is 200 bytes a row: the persistent schedule without TMA)."""
    from fastgpt.kernels import mlp as kernels
    M, H = 67, 4 * C
    g = torch.Generator().manual_seed(3)
    x, w_fc, b_fc = (torch.randn(*s, generator=g).to(device, dtype) for s in ((M, C), (H, C), (H,)))
    w_proj, dy = (torch.randn(*s, generator=g).to(device, dtype) * 0.1 for s in ((C, H), (M, C)))
    assert kernels._use_tma(x, w_fc.t(), x.new_empty(M, H))[0] == tma
    h, pre = kernels.linear_gelu(x, w_fc, b_fc, store_pre=True, schedule=schedule)
    pre64 = x.double() @ w_fc.double().t() + b_fc.double()
    p = pre.double().requires_grad_()
    gelu64 = torch.nn.functional.gelu(p, approximate="tanh")
    dpre64 = torch.autograd.grad(gelu64, p, dy.double() @ w_proj.double())[0]
    dpre, h2, dbias = kernels.matmul_gelu_grad(dy, w_proj, pre, store_gelu=True, bias_grad=True,
                                               schedule=schedule)
    for name, out, ref in [("pre", pre, pre64), ("h", h, torch.nn.functional.gelu(pre64, approximate="tanh")),
                           ("dpre", dpre, dpre64), ("h from dpre", h2, gelu64), ("db_fc", dbias, dpre64.sum(0))]:
        assert_rel_close(out, ref, REL_TOL[dtype], name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
@pytest.mark.parametrize("M, N", [(1, 40), (67, 100), (64, 128), (130, 257)])
@pytest.mark.parametrize("store_gelu, bias_grad", [(True, True), (False, True), (True, False), (False, False)])
def test_gelu_bwd_pass_matches_float64(dtype, M, N, store_gelu, bias_grad, monkeypatch, device):
    """The elementwise GELU backward alone (the gelu_grad="cublas" path): dpre, h and the db_fc
    partials against float64, on sizes that are not multiples of the tile, into NaN-poisoned
    buffers; with overwrite_dh, dpre lands in dh's buffer (and a separate dh is left intact)."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    partials = kernels._empty_partials
    monkeypatch.setattr(kernels, "_empty_partials", lambda like, m, n: poison_(partials(like, m, n)))
    g = torch.Generator().manual_seed(5)
    dh = torch.randn(M, N, generator=g).to(device, dtype)
    pre = (torch.randn(M, N, generator=g) * 2).to(device, dtype)
    p = pre.double().requires_grad_()
    gelu64 = torch.nn.functional.gelu(p, approximate="tanh")
    dpre64 = torch.autograd.grad(gelu64, p, dh.double())[0]
    for overwrite_dh in (False, True):
        dh_in = dh.clone()
        dpre, h, dbias = kernels.gelu_bwd(dh_in, pre, store_gelu=store_gelu, bias_grad=bias_grad,
                                          overwrite_dh=overwrite_dh)
        assert (dpre.data_ptr() == dh_in.data_ptr()) == overwrite_dh
        if not overwrite_dh:
            assert torch.equal(dh_in, dh)
        assert dpre.dtype == dtype and dpre.shape == (M, N)
        assert_rel_close(dpre, dpre64, REL_TOL[dtype], "dpre")
        assert (h is None) != store_gelu and (dbias is None) != bias_grad
        if store_gelu:
            assert_rel_close(h, gelu64, REL_TOL[dtype], "h")
        if bias_grad:
            assert dbias.dtype == torch.float32
            assert_rel_close(dbias, dpre64.sum(0), REL_TOL[dtype], "db_fc")
    if bias_grad:   # summed straight into the bias's dtype (no cast kernel after)
        dbias = kernels.gelu_bwd(dh.clone(), pre, bias_grad=True, bias_dtype=dtype)[2]
        assert dbias.dtype == dtype
        assert_rel_close(dbias, dpre64.sum(0), REL_TOL[dtype], "db_fc in the bias's dtype")


def test_gelu_bwd_bias_grad_is_deterministic(device):
    from fastgpt.kernels import mlp as kernels
    g = torch.Generator().manual_seed(6)
    dh, pre = (torch.randn(200, 72, generator=g).to(device) for _ in range(2))
    first = kernels.gelu_bwd(dh, pre, bias_grad=True)[2]
    for _ in range(3):
        assert torch.equal(kernels.gelu_bwd(dh, pre, bias_grad=True)[2], first)


def test_gelu_is_stable_for_large_inputs(device):
    """tanh through sigmoid: no inf/NaN from exp overflow at |pre| in the hundreds."""
    from fastgpt.kernels import mlp as kernels
    pre = torch.tensor([[-300.0, -30.0, -3.0, 0.0, 3.0, 30.0, 300.0] * 5], device=device)
    dh = torch.ones_like(pre)
    dpre, h, dbias = kernels.gelu_bwd(dh, pre, store_gelu=True, bias_grad=True)
    p = pre.double().requires_grad_()
    gelu64 = torch.nn.functional.gelu(p, approximate="tanh")
    ref = torch.autograd.grad(gelu64.sum(), p)[0]
    assert_rel_close(dpre, ref, 1e-6, "gelu'")
    assert_rel_close(h, gelu64, 1e-6, "gelu")
    assert_rel_close(dbias, ref.sum(0), 1e-6, "dbias")


def test_fused_mlp_module_loads_nanogpt_state_dict(device):
    cfg = fastgpt.GPTConfig(n_embd=40, n_head=2, bias=True)
    nano = NanoMLP(cfg).to(device)
    fused = FusedMLP(cfg).to(device)
    fused.load_state_dict(nano.state_dict())
    assert set(fused.state_dict()) == set(nano.state_dict())
    x = torch.randn(2, 9, 40, device=device)
    with fastgpt.use_backend("triton"):
        y = fused(x)
    assert_rel_close(y, nano(x), REL_TOL[torch.float32], "FusedMLP vs nanoGPT MLP")
    y.sum().backward()
    nano(x).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), nano.parameters()):
        assert_rel_close(p.grad, q.grad, REL_TOL[torch.float32], name)


def test_dropout_as_nanogpt():
    mlp = FusedMLP(n_embd=16, dropout=0.5)
    x = torch.randn(4, 16)
    with fastgpt.use_backend("torch"):
        assert not torch.equal(mlp(x), mlp(x))          # training: dropout active
        mlp.eval()
        assert torch.equal(mlp(x), mlp(x))


def test_bad_input_is_a_clear_error():
    p = make_params(40, 160, torch.float32, "cpu")
    x = torch.randn(5, 40)
    with pytest.raises(ValueError, match="inner sizes do not match"):
        fused_mlp(torch.randn(5, 41), *p.values())
    with pytest.raises(ValueError, match="inner sizes do not match"):
        fused_mlp(x, p["fc_weight"], p["fc_bias"], torch.randn(40, 150), None)
    with pytest.raises(ValueError, match="bias must have shape"):
        fused_linear_gelu(x, p["fc_weight"], torch.randn(7))
    with pytest.raises(TypeError, match="mixed dtypes"):
        fused_linear_gelu(x.half(), p["fc_weight"], p["fc_bias"])
    with pytest.raises(TypeError, match="mixed dtypes"):
        fused_mlp(x, p["fc_weight"], p["fc_bias"], p["proj_weight"].half(), None)
    with pytest.raises(TypeError, match="floating-point"):
        fused_linear_gelu(torch.ones(5, 40, dtype=torch.int64), p["fc_weight"].long(), None)
    with pytest.raises(ValueError, match="different devices"):
        fused_linear_gelu(x, p["fc_weight"].detach().to("meta"), None)
    with pytest.raises(ValueError, match="2-D"):
        fused_linear_gelu(x, torch.randn(40), None)
    with pytest.raises(ValueError, match="MLPOptions.wgrad"):
        MLPOptions(wgrad="cublas")
    with pytest.raises(ValueError, match="MLPOptions.schedule"):
        MLPOptions(schedule="stream-k")
    with pytest.raises(ValueError, match="MLPOptions.gelu_grad"):
        MLPOptions(gelu_grad="triton")
    with pytest.raises(ValueError, match="MLPOptions.cuda_gemm"):
        MLPOptions(cuda_gemm="cutlass")


@pytest.mark.parametrize("built_with_cublaslt", [True, False])
def test_cuda_gemm_auto_takes_cublaslt_only_where_it_applies(monkeypatch, built_with_cublaslt):
    """MLPOptions(cuda_gemm="auto"), the default: cuBLASLt's forward epilogue for 16-bit operands
    with sizes multiples of 8 and contiguous weights, on an extension that has it; else cuBLAS."""
    from types import SimpleNamespace
    from fastgpt.ops import mlp as mlp_ops
    assert MLPOptions().cuda_gemm == "auto"
    monkeypatch.setattr(mlp_ops, "_extension", lambda: SimpleNamespace(gemm_epilogues=built_with_cublaslt))

    def applies(dtype=torch.bfloat16, C=64, H=256, C_out=64, transposed=False):
        fc = torch.empty(C, H, dtype=dtype).t() if transposed else torch.empty(H, C, dtype=dtype)
        return mlp_ops._cublaslt_applies(torch.empty(3, C, dtype=dtype), fc, torch.empty(C_out, H, dtype=dtype))

    assert applies() is built_with_cublaslt and applies(torch.float16) is built_with_cublaslt
    assert not applies(torch.float32)
    assert not applies(C=60) and not applies(H=252) and not applies(C_out=60)
    assert not applies(transposed=True)


def test_autocast_casts_operands_as_linear_does():
    mlp = FusedMLP(n_embd=32)
    x = torch.randn(3, 32)
    with fastgpt.use_backend("torch"), torch.autocast("cpu", dtype=torch.bfloat16):
        y = mlp(x)
    assert y.dtype == torch.bfloat16


def test_custom_ops_pass_opcheck(device):
    x, dy = inputs((9,), 40, torch.float32, device)
    p = {k: v.detach() for k, v in make_params(40, 72, torch.float32, device).items()}
    x, dy = x.detach(), dy.detach()
    fwd_args = (x, p["fc_weight"], p["fc_bias"], p["proj_weight"], p["proj_bias"], True, False, "triton",
                "persistent_tma")
    torch.library.opcheck(torch.ops.fastgpt.mlp_fwd.default, fwd_args)
    _, pre, _ = torch.ops.fastgpt.mlp_fwd(*fwd_args)
    torch.library.opcheck(torch.ops.fastgpt.mlp_bwd.default,
                          (dy, x, p["fc_weight"], p["proj_weight"], pre, x.new_empty(0), True, True,
                           "cublas", "triton", "torch", "fused", "persistent_tma", True))
    torch.library.opcheck(torch.ops.fastgpt.mlp_bwd.default,
                          (dy, x, p["fc_weight"], p["proj_weight"], pre, x.new_empty(0), True, True,
                           "gemm_epilogue", "triton", "torch", "fused", "persistent_tma", False))
    torch.library.opcheck(torch.ops.fastgpt.linear_gelu_fwd.default, (x, p["fc_weight"], None, True, "tiled"))


@pytest.mark.parametrize("options", [MLPOptions(save_gelu=False), MLPOptions(save_gelu=True), MLPOptions(**EPILOGUE),
                                     MLPOptions(gelu_grad_code="always")], ids=repr)
def test_torch_compile_fullgraph(options, device):
    """The triton implementation (Function + custom ops + fakes) traces as one graph.

    (The backend switch itself reads a ContextVar, which dynamo does not trace.)"""
    x, dy = inputs((2, 5), 40, torch.float32, device)
    params = make_params(40, 160, torch.float32, device)
    backend = "inductor" if HAS_CUDA else "aot_eager"   # no C++ toolchain needed on CPU
    compiled = torch.compile(mlp_triton, fullgraph=True, backend=backend)
    outs = run(lambda *a: compiled(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes("triton", torch.float32, options)), torch.float32)
    first_layer = torch.compile(linear_gelu_triton, fullgraph=True, backend=backend)
    w, b = params["fc_weight"], params["fc_bias"]
    h = first_layer(x, w, b)
    grads = torch.autograd.grad(h, [x, w, b], torch.ones_like(h))
    with fastgpt.use_backend("torch"):
        h_ref = fused_linear_gelu(x, w, b)
    for out, ref in zip([h, *grads], [h_ref, *torch.autograd.grad(h_ref, [x, w, b], torch.ones_like(h))]):
        assert_rel_close(out, ref, REL_TOL[torch.float32])


def test_model_uses_fused_mlp_on_triton(monkeypatch, device):
    from fastgpt.ops import attention, cross_entropy, layernorm
    for op in (attention.attention, cross_entropy.linear_cross_entropy, layernorm.add_layernorm):
        if "triton" not in op.impls:   # an op whose kernels are not written yet runs its reference
            monkeypatch.setitem(op.impls, "triton", op.impls["torch"])
    model = fastgpt.GPT(fastgpt.GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=32)).to(device)
    assert isinstance(model.transformer.h[0].mlp, FusedMLP)
    idx = torch.randint(0, 50, (2, 16), device=device)
    targets = torch.randint(0, 50, (2, 16), device=device)
    results = {}
    for backend in ("torch", "triton"):
        model.zero_grad()
        with fastgpt.use_backend(backend):
            logits = model.all_logits(idx)
            _, loss = model(idx, targets)
        loss.backward()
        results[backend] = (logits, model.transformer.h[0].mlp.c_fc.weight.grad.clone())
    assert_rel_close(results["triton"][0], results["torch"][0], REL_TOL[torch.float32], "logits")
    assert_rel_close(results["triton"][1], results["torch"][1], REL_TOL[torch.float32], "dW_fc")


@gpu_only
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("options", [MLPOptions(save_gelu=False), MLPOptions(save_gelu=True), MLPOptions(**EPILOGUE),
                                     MLPOptions(proj="triton", dgrad="triton", wgrad="triton", **EPILOGUE),
                                     MLPOptions(schedule="tiled", wgrad="recompute", **EPILOGUE),
                                     MLPOptions(schedule="persistent", save_gelu=True, **EPILOGUE)],
                         ids=repr)
def test_gpu_large(backend, dtype, options):
    """GPT-2 small's MLP at 4 x 512 tokens + 7 (a ragged tail), the tiles the autotuner picks."""
    x, dy = inputs((4 * 512 + 7,), 768, dtype, "cuda")
    params = make_params(768, 3072, dtype, "cuda")
    with fastgpt.use_backend(backend):
        outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes(backend, dtype, options)), dtype)


def _cublaslt_available() -> bool:
    from fastgpt import _cuda
    ext = _cuda.load() if HAS_CUDA and cuda_extension_available() else None
    return ext is not None and ext.gemm_epilogues


@pytest.mark.skipif(not _cublaslt_available(), reason="needs a GPU and the extension built with cuBLASLt")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tokens, C", [(1, 64), (37, 64), (4 * 512 + 7, 768)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cuda_gemm", ["cublaslt", "cublaslt_dgelu", "cublaslt_forward"])
def test_cuda_cublaslt_mlp(dtype, tokens, C, bias, cuda_gemm):
    """MLPOptions(cuda_gemm="cublaslt"): cuBLASLt's bias, GELU and bias-gradient epilogues (and
    its GELU: the tanh form) against the float64 reference; "cublaslt_dgelu": DGELU without the
    bias gradient, db_fc by the column-sum kernel; "cublaslt_forward": the forward's epilogue,
    the backward on cuBLAS and the extension's pass; outputs over poisoned memory."""
    x, dy = inputs((tokens,), C, dtype, "cuda")
    params = make_params(C, 4 * C, dtype, "cuda", bias=bias)
    poison_(torch.empty(8 * tokens * 4 * C, device="cuda", dtype=dtype))   # freed: later outputs start as NaN
    with fastgpt.use_backend("cuda"):
        outs = run(lambda *a: fused_mlp(*a, options=MLPOptions(cuda_gemm=cuda_gemm)), x, params, dy)
    check(outs, reference(x, params, dy), dtype)


@pytest.mark.skipif(not _cublaslt_available(), reason="needs a GPU and the extension built with cuBLASLt")
def test_cuda_cublaslt_mlp_refuses_what_cublaslt_cannot_take():
    from fastgpt import _cuda
    x, _ = inputs((4,), 60, torch.bfloat16, "cuda")                # 60 columns: not a multiple of 8
    params = make_params(60, 240, torch.bfloat16, "cuda")
    with fastgpt.use_backend("cuda"), pytest.raises(_cuda.InputError, match="multiple of 8"):
        fused_mlp(x, *params.values(), options=MLPOptions(cuda_gemm="cublaslt"))
    x32, _ = inputs((4,), 64, torch.float32, "cuda")
    params32 = make_params(64, 256, torch.float32, "cuda")
    with fastgpt.use_backend("cuda"), pytest.raises(_cuda.InputError, match="float16 or bfloat16"):
        fused_mlp(x32, *params32.values(), options=MLPOptions(cuda_gemm="cublaslt"))


gluon_only = pytest.mark.skipif(not (HAS_CUDA and mlp_gluon.available()), reason="needs Gluon and a Hopper GPU")


def gluon_cases(test):
    """The Gluon kernel's test grid: each schedule, both 16-bit dtypes, sizes that are not
    multiples of its tiles (M = 1 included)."""
    for mark in (pytest.mark.parametrize("M, K, N", [(1, 64, 136), (129, 200, 264), (1000, 768, 3072)]),
                 pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16]),
                 pytest.mark.parametrize("schedule", list(mlp_gluon.BLOCK_M)), gluon_only):
        test = mark(test)
    return test


@gluon_cases
@pytest.mark.parametrize("bias", [True, False])
def test_gluon_linear_gelu_matches_float64(schedule, dtype, M, K, N, bias, monkeypatch):
    """kernels/mlp_gluon.py's kernel (linear_gelu kernel="gluon"): h and pre against float64,
    into NaN-poisoned buffers, so an element it does not write fails."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(mlp_gluon, "SCHEDULE", schedule)
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    g = torch.Generator().manual_seed(M)
    x = torch.randn(M, K, generator=g).to("cuda", dtype)
    w = (torch.randn(N, K, generator=g) * K ** -0.5).to("cuda", dtype)
    b = (torch.randn(N, generator=g) * 0.5).to("cuda", dtype) if bias else None
    assert kernels.mlp_gluon.applies(x, w, b)
    h, pre = kernels.linear_gelu(x, w, b, store_pre=True, kernel="gluon")
    pre64 = torch.nn.functional.linear(x.double(), w.double(), None if b is None else b.double())
    assert_rel_close(pre, pre64, REL_TOL[dtype], "pre")
    assert_rel_close(h, torch.nn.functional.gelu(pre64, approximate="tanh"), REL_TOL[dtype], "h")


@gluon_cases
@pytest.mark.parametrize("bias_grad", [True, False])
def test_gluon_gelu_grad_matches_float64(schedule, dtype, M, K, N, bias_grad, monkeypatch):
    """The Gluon kernel's backward epilogue (matmul_gelu_grad kernel="gluon"): dpre =
    (dy @ W) * gelu'(pre) and the bias gradient from its column-sum partials, against float64,
    into NaN-poisoned dpre and partials."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(mlp_gluon, "SCHEDULE", schedule)
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    monkeypatch.setattr(kernels, "_empty_partials",
                        lambda like, m, n: poison_(torch.empty(m, n, device=like.device)))
    g = torch.Generator().manual_seed(M + K)
    dy = torch.randn(M, K, generator=g).to("cuda", dtype)
    w = (torch.randn(K, N, generator=g) * K ** -0.5).to("cuda", dtype)
    pre = (torch.randn(M, N, generator=g) * 2).to("cuda", dtype)
    assert kernels.mlp_gluon.applies_gelu_grad(dy, w, pre)
    dpre, h, db = kernels.matmul_gelu_grad(dy, w, pre, bias_grad=bias_grad, kernel="gluon", bias_dtype=dtype)
    pre64 = pre.double().requires_grad_()
    gelu64 = torch.nn.functional.gelu(pre64, approximate="tanh")
    dpre64, = torch.autograd.grad(gelu64, pre64, dy.double() @ w.double())
    assert h is None
    assert_rel_close(dpre, dpre64, REL_TOL[dtype], "dpre")
    if bias_grad:
        assert db.dtype == dtype      # the partials summed straight into the bias's dtype
        assert_rel_close(db, dpre64.sum(0), REL_TOL[dtype], "db")
    else:
        assert db is None


@gluon_only
@pytest.mark.parametrize("options", [MLPOptions(), MLPOptions(gelu_grad="cublas"), MLPOptions(fc="triton")],
                         ids=str)
def test_gluon_options_agree_with_float64(options, device):
    """The whole MLP (forward and backward) with the Gluon kernels against float64: both (the
    default), the forward's alone, the backward's alone."""
    x, dy = inputs((4, 33), 64, torch.bfloat16, device)
    params = make_params(64, 256, torch.bfloat16, device)
    with fastgpt.use_backend("triton"):
        outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes("triton", torch.bfloat16, options)), torch.bfloat16)


def test_gluon_gelu_grad_falls_back_where_it_does_not_apply(device):
    """Where the Gluon kernel does not apply (float32 operands; any GPU but Hopper, the CPU)
    gelu_grad="gluon" is cuBLAS's dh + the elementwise pass."""
    x, dy = inputs((2, 5), 32, torch.float32, device)
    params = make_params(32, 64, torch.float32, device)
    with fastgpt.use_backend("triton"):
        outs = run(lambda *a: fused_mlp(*a, options=MLPOptions(gelu_grad="gluon")), x, params, dy)
    check(outs, reference(x, params, dy, coded=keeps_codes("triton", torch.float32)), torch.float32)


def test_fc_option_is_checked():
    with pytest.raises(ValueError, match="fc"):
        MLPOptions(fc="cutlass")


# ---- gelu'(pre) kept as 8-bit codes (MLPOptions.gelu_grad_code; PRE_CODE / GRAD_CODE) ----

def poison_codes_(t: torch.Tensor) -> torch.Tensor:
    """Fill a code buffer with the one code no kernel writes (mlp_gluon.GELU_GRAD_TOP + 1)."""
    return t.fill_(mlp_gluon.GELU_GRAD_TOP + 1)


def gelu_grad64(pre: torch.Tensor) -> torch.Tensor:
    """gelu_tanh'(pre) in float64, by autograd through torch's own GELU."""
    p = pre.detach().double().requires_grad_()
    return torch.autograd.grad(torch.nn.functional.gelu(p, approximate="tanh").sum(), p)[0]


def test_gelu_grad_codes_stay_within_half_a_step():
    """The format itself: every decoded derivative within half a step (0.00248) of float64's, over
    the whole range of pre (both extremes of gelu' included), code 255 never used."""
    pre = torch.cat([torch.linspace(-12, 12, 200001, dtype=torch.float64),
                     torch.tensor([-1.4185, 1.4185, 0.0, -0.0, -1e4, 1e4], dtype=torch.float64)])
    codes = mlp_gluon.gelu_grad_encode(pre)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= mlp_gluon.GELU_GRAD_TOP
    err = (mlp_gluon.gelu_grad_decode(codes).double() - gelu_grad64(pre)).abs()
    assert err.max().item() <= 0.5 * mlp_gluon.GELU_GRAD_STEP * 1.001
    assert mlp_gluon.GELU_GRAD_STEP < 0.005


@pytest.mark.skipif(not mlp_gluon.HAVE_GLUON, reason="needs Gluon (triton >= 3.5)")
def test_gluon_forward_code_arithmetic():
    """The Gluon forward's code, emulated in fp32 on the CPU with its folded constants: the level
    K0 + K1 t + (h - h t)(D0 + D1 x^2) stays inside (0, 254) for every x (the kernel has no clamps),
    and the low byte of level + _ROUND_BIAS's encoding is gelu_grad_encode's code, one level off at
    most (fp32 rounding near a half; the GPU tests hold the kernel itself to the same)."""
    x = torch.cat([torch.linspace(-12, 12, 400001), torch.tensor([-1.4185, 1.4185, 0.0, -1e4, 1e4])])
    k = {name: float(getattr(mlp_gluon, f"_CODE_{name}").value) for name in ("K0", "K1", "D0", "D1")}
    x2 = x * x
    t = torch.tanh(x * (0.7978845608028654 + 0.035677408136300125 * x2))
    half_x = 0.5 * x
    h = half_x + half_x * t
    level = (k["K0"] + k["K1"] * t) + (h - h * t) * (k["D0"] + k["D1"] * x2)
    assert level.min().item() > 0.0 and level.max().item() < mlp_gluon.GELU_GRAD_TOP
    rounded = (level + float(mlp_gluon._ROUND_BIAS.value)).view(torch.int32) & 0xFF
    assert torch.equal(rounded, level.round().int())
    diff = (rounded - mlp_gluon.gelu_grad_encode(x).int()).abs()
    assert diff.max().item() <= 1 and diff.float().mean().item() < 1e-3
    nan = (torch.tensor([float("nan")]) + float(mlp_gluon._ROUND_BIAS.value)).view(torch.int32) & 0xFF
    assert nan.item() == 0


CODED_OPTIONS = [MLPOptions(gelu_grad_code="always"), MLPOptions(gelu_grad_code="always", gelu_grad="cublas"),
                 MLPOptions(gelu_grad_code="always", **EPILOGUE), MLPOptions(gelu_grad_code="always", fc="triton"),
                 MLPOptions(gelu_grad_code="always", schedule="tiled", **ALL_TRITON, **EPILOGUE)]


@pytest.mark.parametrize("options", CODED_OPTIONS, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, C", [((1,), 64), ((2, 17), 64)])
def test_gelu_grad_code_mlp_matches_float64(options, dtype, shape, C, monkeypatch, device):
    """The whole MLP keeping gelu'(pre)'s codes, on every kernel that stores or reads them (the
    Gluon kernel on Hopper, the Triton GEMM's epilogues and the elementwise pass elsewhere), into
    poisoned buffers, against float64 with the same codes; and against the exact float64 MLP
    within the format's bound: only the backward's dpre-derived gradients may move, and by
    under 1% (the derivative is within 0.0025, typical |gelu'| ~0.5)."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    codes = kernels._empty_codes
    monkeypatch.setattr(kernels, "_empty_codes", lambda like, m, n: poison_codes_(codes(like, m, n)))
    x, dy = inputs(shape, C, dtype, device)
    params = make_params(C, 4 * C, dtype, device)
    with fastgpt.use_backend("triton"):
        outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy, coded=True), dtype)
    exact = reference(x, params, dy)
    for name, out, ref in zip(NAMES, outs, exact):
        assert_rel_close(out, ref, max(REL_TOL[dtype], 1e-2), name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("M, N", [(1, 48), (67, 112), (130, 256)])
def test_gelu_grad_codes_from_the_triton_kernels(dtype, M, N, monkeypatch, device):
    """The Triton GEMM's PRE_CODE store equals the reference encoding of its own pre (up to one
    code where fp32 rounding sits on a level's boundary), into poisoned buffers; the elementwise
    pass reads codes as the reference decodes them."""
    from fastgpt.kernels import mlp as kernels
    codes = kernels._empty_codes
    monkeypatch.setattr(kernels, "_empty_codes", lambda like, m, n: poison_codes_(codes(like, m, n)))
    g = torch.Generator().manual_seed(M)
    x = torch.randn(M, 64, generator=g).to(device, dtype)
    w = (torch.randn(N, 64, generator=g) * 0.25).to(device, dtype)   # pre ~ N(0, 4): both tails
    b = torch.randn(N, generator=g).to(device, dtype)
    h, code = kernels.linear_gelu(x, w, b, store_pre=True, pre_code=True)
    _, pre = kernels.linear_gelu(x, w, b, store_pre=True)
    assert code.dtype == torch.uint8 and code.shape == (M, N)
    assert (code.int() - mlp_gluon.gelu_grad_encode(pre).int()).abs().max().item() <= 1
    dh = torch.randn(M, N, generator=g).to(device, dtype)
    dpre, _, dbias = kernels.gelu_bwd(dh, code, bias_grad=True)
    dpre64 = dh.double() * mlp_gluon.gelu_grad_decode(code).double()
    assert_rel_close(dpre, dpre64, REL_TOL[dtype], "dpre")
    assert_rel_close(dbias, dpre64.sum(0), REL_TOL[dtype], "db_fc")
    with pytest.raises(ValueError, match="codes"):
        kernels.gelu_bwd(dh, code, store_gelu=True)


def test_codes_are_kept_for_bf16_activations_by_default(monkeypatch, device):
    """The default keeps codes where the activations are bf16 and pre for fp16 / fp32; "always"
    and "never" override; save_gelu=False always keeps pre. And a bf16 MLP does store codes (a
    code buffer is allocated, on the Gluon kernel or, off Hopper, the Triton GEMM's epilogue)."""
    from fastgpt.kernels import mlp as kernels
    default = MLPOptions()
    assert default.keeps_codes(torch.bfloat16)
    assert not default.keeps_codes(torch.float16) and not default.keeps_codes(torch.float32)
    assert MLPOptions(gelu_grad_code="always").keeps_codes(torch.float32)
    assert not MLPOptions(gelu_grad_code="never").keeps_codes(torch.bfloat16)
    assert not MLPOptions(save_gelu=False, gelu_grad_code="always").keeps_codes(torch.bfloat16)
    with pytest.raises(ValueError, match="gelu_grad_code"):
        MLPOptions(gelu_grad_code=True)
    allocated = []
    codes = kernels._empty_codes
    monkeypatch.setattr(kernels, "_empty_codes", lambda like, m, n: allocated.append((m, n)) or codes(like, m, n))
    for dtype, expected in ((torch.bfloat16, [(9, 256)]), (torch.float32, [])):
        allocated.clear()
        x, _ = inputs((9,), 64, dtype, device)
        params = make_params(64, 256, dtype, device)
        with fastgpt.use_backend("triton"):
            fused_mlp(x, *params.values())
        assert allocated == expected, dtype


def test_gelu_grad_code_keeps_pre_without_the_kept_gelu(device):
    """Codes need h kept from the forward: with save_gelu=False the MLP keeps pre (and matches the
    exact reference), and the backward's kernels refuse to rebuild h from codes."""
    from fastgpt.kernels import mlp as kernels
    x, dy = inputs((2, 17), 64, torch.float32, device)
    params = make_params(64, 256, torch.float32, device)
    with fastgpt.use_backend("triton"):
        options = MLPOptions(save_gelu=False, gelu_grad_code="always")
        outs = run(lambda *a: fused_mlp(*a, options=options), x, params, dy)
    check(outs, reference(x, params, dy), torch.float32)
    _, code = kernels.linear_gelu(x.detach().reshape(-1, 64), params["fc_weight"].detach(), None, store_pre=True,
                                  pre_code=True)
    with pytest.raises(ValueError, match="codes"):
        kernels.matmul_gelu_grad(dy.reshape(-1, 64), params["proj_weight"].detach(), code, store_gelu=True,
                                 kernel="triton")


@gluon_cases
@pytest.mark.parametrize("bias_grad", [True, False])
def test_gluon_gelu_grad_codes_match_float64(schedule, dtype, M, K, N, bias_grad, monkeypatch):
    """The Gluon kernel's GRAD_CODE epilogues: the forward's codes equal the reference encoding of
    its pre (one code off at most: tanh.approx) and h is as without codes; the backward's dpre and
    bias partials against float64 with the decoded codes; every buffer poisoned."""
    from fastgpt.kernels import mlp as kernels
    monkeypatch.setattr(mlp_gluon, "SCHEDULE", schedule)
    monkeypatch.setattr(kernels, "_empty", lambda like, m, n: poison_(like.new_empty(m, n)))
    codes = kernels._empty_codes
    monkeypatch.setattr(kernels, "_empty_codes", lambda like, m, n: poison_codes_(codes(like, m, n)))
    monkeypatch.setattr(kernels, "_empty_partials",
                        lambda like, m, n: poison_(torch.empty(m, n, device=like.device)))
    N = -(-N // 16) * 16    # uint8 rows TMA can address: 16-byte strides (still not a tile multiple)
    g = torch.Generator().manual_seed(M + N)
    x = torch.randn(M, K, generator=g).to("cuda", dtype)
    w = (torch.randn(N, K, generator=g) * 2 * K ** -0.5).to("cuda", dtype)
    b = (torch.randn(N, generator=g) * 0.5).to("cuda", dtype)
    assert mlp_gluon.applies(x, w, b, codes=True)
    assert not mlp_gluon.applies(x, w[8:], b[8:], codes=True) and mlp_gluon.applies(x, w[8:], b[8:])   # N % 16 == 8
    h, code = kernels.linear_gelu(x, w, b, store_pre=True, pre_code=True, kernel="gluon")
    h_pre, pre = kernels.linear_gelu(x, w, b, store_pre=True, kernel="gluon")
    assert code.dtype == torch.uint8
    assert (code.int() - mlp_gluon.gelu_grad_encode(pre).int()).abs().max().item() <= 1
    assert torch.equal(h, h_pre)
    dy = torch.randn(M, K, generator=g).to("cuda", dtype)
    w_proj = (torch.randn(K, N, generator=g) * K ** -0.5).to("cuda", dtype)
    assert mlp_gluon.applies_gelu_grad(dy, w_proj, code)
    dpre, none, db = kernels.matmul_gelu_grad(dy, w_proj, code, bias_grad=bias_grad, kernel="gluon", bias_dtype=dtype)
    dpre64 = (dy.double() @ w_proj.double()) * mlp_gluon.gelu_grad_decode(code).double()
    assert none is None and dpre.dtype == dtype
    assert_rel_close(dpre, dpre64, REL_TOL[dtype], "dpre")
    if bias_grad:
        assert_rel_close(db, dpre64.sum(0), REL_TOL[dtype], "db")
    else:
        assert db is None
