"""Flash attention (kernels/attention.py via fastgpt.flash_attention) against a float64 reference.

On CPU the Triton kernels run in the interpreter (tests/conftest.py sets TRITON_INTERPRET=1):
float32 and float16, small B and H. With a GPU the same tests add bfloat16 (tl.dot on bf16 is
wrong in the interpreter, so never on CPU) and long sequences. Tolerances are relative errors
||out - ref|| / ||ref|| from fastgpt.testing.REL_TOL, by the dtype the kernel reads; the
reference is F.scaled_dot_product_attention in float64 on the same (rounded) inputs, or, for
dropout, the explicit softmax with the kernel's own keep-mask.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import fastgpt
from fastgpt.backend import BackendError
from fastgpt.ops.attention import (FusedCausalSelfAttention, draw_dropout_seed, flash_attention,
                                   flash_attention_qkvpacked)
from fastgpt.testing import REL_TOL, assert_rel_close, poison_
from nanogpt_reference import CausalSelfAttention

HAS_CUDA = torch.cuda.is_available()
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if HAS_CUDA else [])
SEQ_LENS = [1, 17, 64, 100, 257] + ([1024, 4096] if HAS_CUDA else [])
# Grads go through two more roundings of P and dS to the input dtype than the output does.
GRAD_TOL_FACTOR = 2.0


def _kernels():
    from fastgpt.kernels import attention as kernels   # imports triton: only in tests that run it
    return kernels


@pytest.fixture(autouse=True)
def _triton_backend():
    with fastgpt.use_backend("triton"):
        yield


def _qkv(B, H, T, D, dtype, device, layout="contiguous"):
    """q, k, v leaves of shape (B, H, T, D) in one of the memory layouts users hand us."""
    if layout == "contiguous":
        tensors = [torch.randn(B, H, T, D, device=device) for _ in range(3)]
    elif layout == "fused_qkv":       # FusedCausalSelfAttention: c_attn(x).view(B, T, 3, H, D).permute
        tensors = list(torch.randn(B, T, 3, H, D, device=device).to(dtype).permute(2, 0, 3, 1, 4))
    elif layout == "head_dim_strided":  # last-dim stride T, not 1
        tensors = [torch.randn(B, H, D, T, device=device).to(dtype).transpose(-1, -2) for _ in range(3)]
    else:
        raise ValueError(layout)
    return [t.to(dtype).requires_grad_() for t in tensors]


def _reference(q, k, v, causal, scale, dout, keep=None, dropout_p=0.0):
    """Float64 attention output and (dq, dk, dv); with `keep`, P * keep / (1 - p) as the kernels do."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    if keep is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    else:
        T = q.shape[2]
        scores = (q @ k.transpose(-2, -1)) * scale
        if causal:
            scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), float("-inf"))
        out = (scores.softmax(-1) * keep / (1.0 - dropout_p)) @ v
    out.backward(dout.double())
    return out, q.grad, k.grad, v.grad


def _check(out, grads, ref, dtype, T):
    ref_out, *ref_grads = ref
    tol = REL_TOL[dtype]
    assert_rel_close(out, ref_out, tol, "output")
    for name, grad, ref_grad in zip(("dq", "dk", "dv"), grads, ref_grads):
        if T == 1 and name in ("dq", "dk"):
            # one key: the softmax is constant 1, so dq = dk = 0 exactly (a relative error is meaningless)
            assert grad.abs().max().item() < 1e-3, f"{name} should be 0 for T = 1"
        else:
            assert_rel_close(grad, ref_grad, GRAD_TOL_FACTOR * tol, name)


def _run_and_check(B, H, T, D, dtype, device, causal=True, layout="contiguous", softmax_scale=None):
    q, k, v = _qkv(B, H, T, D, dtype, device, layout)
    out = flash_attention(q, k, v, causal=causal, softmax_scale=softmax_scale)
    assert out.shape == q.shape and out.dtype == dtype
    dout = torch.randn_like(out)
    out.backward(dout)
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(D)
    _check(out, (q.grad, k.grad, v.grad), _reference(q, k, v, causal, scale, dout), dtype, T)


# ---- matches SDPA ----

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("D", [32, 64])
@pytest.mark.parametrize("T", SEQ_LENS)
def test_causal_matches_reference(T, D, dtype, device):
    _run_and_check(1 if T > 1024 else 2, 2, T, D, dtype, device, causal=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T", [1, 17, 100, 257])
def test_non_causal_matches_reference(T, dtype, device):
    _run_and_check(2, 2, T, 32, dtype, device, causal=False)


@pytest.mark.parametrize("D", [16, 128])
def test_small_and_large_head_dims(D, device):
    _run_and_check(1, 2, 100, D, torch.float16, device, causal=True)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("layout", ["fused_qkv", "head_dim_strided"])
def test_strided_inputs(layout, causal, device):
    dtype = torch.bfloat16 if HAS_CUDA else torch.float16
    _run_and_check(2, 3, 70, 32, dtype, device, causal=causal, layout=layout)


def test_softmax_scale(device):
    _run_and_check(2, 2, 50, 32, torch.float32, device, causal=True, softmax_scale=0.3)


def test_output_layout_makes_module_reshape_free(device):
    """(B, H, T, D) with (B, T, H, D) memory, as SDPA's flash backend: transpose(1, 2) is contiguous."""
    q, k, v = _qkv(2, 3, 20, 16, torch.float32, device)
    out = flash_attention(q, k, v)
    assert out.transpose(1, 2).is_contiguous()


@pytest.mark.skipif(not HAS_CUDA, reason="T = 16384 needs a GPU (the interpreter would take hours)")
def test_long_sequence_forward_backward(device):
    """T = 16384 in bf16, checked against SDPA in fp32 (a float64 T x T reference would not fit)."""
    q, k, v = _qkv(1, 2, 16384, 64, torch.bfloat16, device)
    out = flash_attention(q, k, v)
    dout = torch.randn_like(out)
    out.backward(dout)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(q32, k32, v32, is_causal=True)
    ref.backward(dout.float())
    tol = REL_TOL[torch.bfloat16]
    assert_rel_close(out, ref, tol, "output")
    for name, grad, ref_grad in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), (q32.grad, k32.grad, v32.grad)):
        assert_rel_close(grad, ref_grad, GRAD_TOL_FACTOR * tol, name)


# ---- every element written: launchers into NaN-poisoned buffers ----

@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 100])
def test_poisoned_outputs_are_overwritten(T, causal, device):
    kernels = _kernels()
    q, k, v = (t.detach() for t in _qkv(2, 2, T, 32, torch.float32, device))
    out = poison_(torch.empty_like(q))
    out_ret, lse = kernels.attention_fwd(q, k, v, causal, 0.2, out=out)
    assert out_ret is out
    dout = torch.randn_like(q)
    grads = tuple(poison_(torch.empty_like(q)) for _ in range(3))
    kernels.attention_bwd(dout, q, k, v, out, lse, causal, 0.2, grads=grads)
    ref = _reference(q, k, v, causal, 0.2, dout)
    assert torch.isfinite(lse).all()
    _check(out, grads, ref, torch.float32, T)


@pytest.mark.parametrize("tiles", [dict(BLOCK_M=16, BLOCK_N=64), dict(BLOCK_M=32, BLOCK_N=16)])
def test_other_tile_shapes(tiles, device):
    """Tiles wider or narrower than the default, so ragged ends meet each loop split."""
    kernels = _kernels()
    q, k, v = (t.detach() for t in _qkv(1, 2, 77, 32, torch.float32, device))
    config = dict(tiles, num_warps=4, num_stages=2)
    for causal in (True, False):
        out, lse = kernels.attention_fwd(q, k, v, causal, 0.2, config=config)
        dout = torch.randn_like(q)
        grads = kernels.attention_bwd(dout, q, k, v, out, lse, causal, 0.2, dkdv_config=config, dq_config=config)
        _check(out, grads, _reference(q, k, v, causal, 0.2, dout), torch.float32, 77)


# ---- dropout ----

def test_dropout_keep_rate_near_one_minus_p(device):
    kernels = _kernels()
    p = 0.3
    keep = kernels.dropout_keep_mask(_seed(1234, device), 2, 2, 257, p)
    rate = keep.float().mean().item()
    assert abs(rate - (1 - p)) < 0.01, f"keep rate {rate:.4f}, expected {1 - p}"
    assert not torch.equal(keep[0, 0], keep[0, 1]), "heads must draw different masks"
    assert not torch.equal(keep, kernels.dropout_keep_mask(_seed(1235, device), 2, 2, 257, p)), "seed must matter"


def _seed(value, device):
    return torch.tensor([value], dtype=torch.int64, device=device)


def test_dropout_seed_is_a_device_tensor(device):
    """The seed is drawn on the inputs' device and read there by the kernels; an int, a seed on
    another device or a missing one is refused with dropout (and ignored without)."""
    kernels = _kernels()
    seed = draw_dropout_seed(device)
    assert seed.shape == (1,) and seed.dtype == torch.int64 and seed.device.type == torch.device(device).type
    q, k, v = (t.detach() for t in _qkv(1, 1, 8, 16, torch.float32, device))
    for bad in (None, 5, _seed(5, device).int(), torch.tensor([5, 6], device=device)):
        with pytest.raises(ValueError, match="seed as a one-element int64 tensor"):
            kernels.attention_fwd(q, k, v, True, 0.2, 0.1, bad)
    if torch.device(device).type != "cpu":
        with pytest.raises(ValueError, match="seed as a one-element int64 tensor"):
            kernels.attention_fwd(q, k, v, True, 0.2, 0.1, _seed(5, "cpu"))
    out, _ = kernels.attention_fwd(q, k, v, True, 0.2, 0.0, None)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [17, 100])
def test_dropout_forward_and_backward_use_one_mask(T, causal, device):
    """Output and all three gradients equal the explicit softmax with the kernel's own mask."""
    p, D = 0.25, 32
    q, k, v = _qkv(2, 2, T, D, torch.float32, device)
    torch.manual_seed(7)
    out = flash_attention(q, k, v, causal=causal, dropout_p=p)
    dout = torch.randn_like(out)
    out.backward(dout)
    torch.manual_seed(7)
    seed = draw_dropout_seed(device)             # the seed the forward drew
    keep = _kernels().dropout_keep_mask(seed, 2, 2, T, p).double()
    ref = _reference(q, k, v, causal, 1 / math.sqrt(D), dout, keep=keep, dropout_p=p)
    _check(out, (q.grad, k.grad, v.grad), ref, torch.float32, T)


def test_dropout_reproducible_under_manual_seed(device):
    q, k, v = (t.detach() for t in _qkv(1, 2, 40, 32, torch.float32, device))
    torch.manual_seed(3)
    a = flash_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(3)
    b = flash_attention(q, k, v, dropout_p=0.5)
    c = flash_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, flash_attention(q, k, v))


# ---- packed qkv: the same kernels, one gradient buffer ----

@pytest.mark.parametrize("dropout_p", [0.0, 0.25])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 37, 100])
def test_qkvpacked_equals_unpacked(T, causal, dropout_p, device):
    """Output and d(qkv) of the packed entry point equal the unpacked function on qkv's views
    (bit for bit: the same kernels read the same strides, the same seed draws the same mask)."""
    dtype = torch.bfloat16 if HAS_CUDA else torch.float16
    B, H, D = 2, 3, 32
    qkv = torch.randn(B, T, 3, H, D, device=device).to(dtype)
    dout = torch.randn(B, T, H, D, device=device).to(dtype)
    packed = qkv.clone().requires_grad_()
    torch.manual_seed(5)
    out = flash_attention_qkvpacked(packed, causal=causal, dropout_p=dropout_p)
    out.backward(dout)
    assert out.shape == (B, T, H, D) and out.is_contiguous() and out.dtype == dtype
    assert packed.grad.shape == qkv.shape and packed.grad.is_contiguous()
    unpacked = qkv.clone().requires_grad_()
    torch.manual_seed(5)
    ref = flash_attention(*unpacked.permute(2, 0, 3, 1, 4), causal=causal, dropout_p=dropout_p)
    ref.backward(dout.transpose(1, 2))
    assert torch.equal(out, ref.transpose(1, 2)), "packed output differs from unpacked"
    assert torch.equal(packed.grad, unpacked.grad), "packed d(qkv) differs from the stacked dq, dk, dv"
    if dropout_p == 0.0:      # and both against float64 (the unpacked one is checked above)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        ref_out, *ref_grads = _reference(q, k, v, causal, 1 / math.sqrt(D), dout.transpose(1, 2))
        assert_rel_close(out, ref_out.transpose(1, 2), REL_TOL[dtype], "packed output")
        if T > 1:
            assert_rel_close(packed.grad, torch.stack(ref_grads, 0).permute(1, 3, 0, 2, 4),
                             GRAD_TOL_FACTOR * REL_TOL[dtype], "packed d(qkv)")


def test_qkvpacked_every_gradient_element_written(device):
    """The packed backward into a NaN-poisoned (B, T, 3, H, D) buffer leaves no NaN."""
    kernels = _kernels()
    qkv = torch.randn(2, 70, 3, 2, 32, device=device)
    out, lse = kernels.attention_qkvpacked_fwd(qkv, True, 0.2)
    dqkv = poison_(torch.empty_like(qkv))
    returned, dbias = kernels.attention_qkvpacked_bwd(torch.randn_like(out), qkv, out, lse, True, 0.2, dqkv=dqkv)
    assert returned is dqkv and dbias is None
    assert torch.isfinite(dqkv).all() and torch.isfinite(out).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 37, 64, 100, 130])
def test_qkvpacked_bias_gradient_from_the_kernels_tiles(T, causal, device):
    """bias_grad_dtype: the gradient of a bias added to qkv, from the dQ and dO tiles the backward
    holds (d(bq) = dQ's column sums, d(bv) = dO's, d(bk) = 0), against d(qkv) of float64 summed
    over batch and time. T = 1, ragged ends (37, 100, 130) and a multiple of the tiles (64)."""
    kernels = _kernels()
    dtype = torch.bfloat16 if HAS_CUDA else torch.float16
    B, H, D = 2, 3, 32
    qkv = torch.randn(B, T, 3, H, D, device=device).to(dtype)
    dout = torch.randn(B, T, H, D, device=device).to(dtype)
    out, lse = kernels.attention_qkvpacked_fwd(qkv, causal, 1 / math.sqrt(D))
    dqkv, dbias = kernels.attention_qkvpacked_bwd(dout, qkv, out, lse, causal, 1 / math.sqrt(D),
                                                  bias_grad_dtype=torch.float32)
    assert dbias.shape == (3, H, D) and dbias.dtype == torch.float32
    q, k, v = qkv.double().permute(2, 0, 3, 1, 4)
    _, *ref_grads = _reference(q, k, v, causal, 1 / math.sqrt(D), dout.transpose(1, 2))
    ref_q, ref_k, ref_v = (g.sum((0, 2)) for g in ref_grads)        # (B, H, T, D) -> (H, D)
    tol = GRAD_TOL_FACTOR * REL_TOL[dtype]
    if T > 1:      # at T = 1 dQ is zero: a relative error has no scale there
        assert_rel_close(dbias[0], ref_q, tol, "q bias gradient")
    assert torch.equal(dbias[1], torch.zeros_like(dbias[1])), "the k bias gradient is zero"
    assert ref_k.abs().max() <= 1e-9 * max(1.0, ref_v.abs().max().item()), "in float64 too, up to rounding"
    assert_rel_close(dbias[2], ref_v, tol, "v bias gradient")
    assert_rel_close(dbias[0::2].double(), dqkv.double().sum((0, 1))[0::2], 1e-2, "against our own d(qkv)")


@pytest.mark.parametrize("causal", [True, False])
def test_program_order_leaves_results_unchanged(causal, device, monkeypatch):
    """kernels/attention.HEAD_MAJOR only reorders the programs (each head's blocks as consecutive
    programs of a 1-D grid, or every head's first block before any head's second): the same tiles
    compute the same values, so O, LSE, dq, dk, dv and the bias partials are bitwise those of the
    other order. Each kernel runs one explicit tile (the autotuner keys on the order and could pick
    two), into NaN-poisoned outputs; T = 100 leaves a ragged block and several blocks a head, which
    the causal order walks heaviest first; the result is also checked against float64."""
    kernels = _kernels()
    dtype = torch.bfloat16 if HAS_CUDA else torch.float16
    B, H, T, D = 2, 3, 100, 32
    scale = 1 / math.sqrt(D)
    qkv = torch.randn(B, T, 3, H, D, device=device).to(dtype)
    dout = torch.randn(B, H, T, D, device=device).to(dtype)
    q, k, v = kernels.qkv_views(qkv)
    fwd_config, dkdv_config, dq_config = (kernels.tile_config(t) for t in ((64, 32, 4, 3), (32, 64, 4, 3),
                                                                            (64, 32, 4, 3)))
    results = {}
    for head_major in (False, True):
        monkeypatch.setattr(kernels, "HEAD_MAJOR", head_major)
        out = poison_(torch.empty(B, H, T, D, device=device, dtype=dtype))
        out, lse = kernels.attention_fwd(q, k, v, causal, scale, out=out, config=fwd_config)
        grads = tuple(poison_(torch.empty_like(out)) for _ in range(3))
        partials = poison_(kernels.bias_grad_partials(q))
        kernels.attention_bwd(dout, q, k, v, out, lse, causal, scale, grads=grads, partials=partials,
                              dkdv_config=dkdv_config, dq_config=dq_config)
        results[head_major] = (out, lse, *grads, partials)
    names = ("out", "lse", "dq", "dk", "dv", "bias partials")
    for name, before, now in zip(names, results[False], results[True]):
        assert torch.isfinite(now).all(), f"{name}: an element left unwritten"
        assert torch.equal(before, now), f"{name} differs between the two program orders"
    ref_out, *ref_grads = _reference(q, k, v, causal, scale, dout)
    assert_rel_close(results[True][0], ref_out, REL_TOL[dtype], "out")
    for name, got, ref in zip(("dq", "dk", "dv"), results[True][2:5], ref_grads):
        assert_rel_close(got, ref, GRAD_TOL_FACTOR * REL_TOL[dtype], name)


def _autotuned_tiles():
    from fastgpt.kernels import attention as kernels
    return ([("fwd", t) for t in kernels.FWD_TILES] + [("dkdv", t) for t in kernels.DKDV_TILES]
            + [("dq", t) for t in kernels.DQ_TILES])


@pytest.mark.skipif(not HAS_CUDA, reason="the GPU tile lists (the interpreter runs one small tile)")
@pytest.mark.parametrize("kernel, tile", _autotuned_tiles() if HAS_CUDA else [], ids=str)
def test_every_autotuned_tile_matches_reference(kernel, tile, device):
    """Each tile the autotuner may pick (registers capped by maxnreg in some), launched explicitly
    on a packed bf16 qkv with the bias partials, the other two kernels on their pinned tiles, against
    float64: T ragged against every tile (200) and the step's shape of one head (512)."""
    kernels = _kernels()
    config = kernels.tile_config(tile)
    for T in (200, 512):
        qkv = torch.randn(2, T, 3, 3, 64, device=device).to(torch.bfloat16)
        q, k, v = kernels.qkv_views(qkv)
        out = poison_(torch.empty(2, T, 3, 64, device=device, dtype=torch.bfloat16))
        _, lse = kernels.attention_fwd(q, k, v, True, 0.125, out=out.transpose(1, 2),
                                       config=config if kernel == "fwd" else None)
        dout = torch.randn_like(out)
        grads = tuple(poison_(g) for g in kernels.qkv_views(torch.empty_like(qkv)))
        partials = poison_(kernels.bias_grad_partials(q))
        kernels.attention_bwd(dout.transpose(1, 2), q, k, v, out.transpose(1, 2), lse, True, 0.125, grads=grads,
                              partials=partials, dkdv_config=config if kernel == "dkdv" else None,
                              dq_config=config if kernel == "dq" else None)
        ref = _reference(q, k, v, True, 0.125, dout.transpose(1, 2))
        _check(out.transpose(1, 2), grads, ref, torch.bfloat16, T)
        tol = GRAD_TOL_FACTOR * REL_TOL[torch.bfloat16]
        sums = partials.sum((0, 1))
        assert_rel_close(sums[0], ref[1].sum((0, 2)), tol, "q bias gradient")
        assert torch.equal(sums[1], torch.zeros_like(sums[1]))
        assert_rel_close(sums[2], ref[3].sum((0, 2)), tol, "v bias gradient")


def test_qkvpacked_bias_gradient_partials_every_element_written(device):
    """The partial sums are written without a zero fill: into a NaN-poisoned buffer every element is
    overwritten (T ragged against the partial rows and the tiles); with dropout the tiles' sums
    would be wrong (P's rows no longer sum to 1): refused."""
    kernels = _kernels()
    qkv = torch.randn(2, 70, 3, 2, 32, device=device)
    out, lse = kernels.attention_qkvpacked_fwd(qkv, True, 0.2)
    q, k, v = kernels.qkv_views(qkv)
    partials = poison_(kernels.bias_grad_partials(q))
    assert partials.shape == (2, 2, 3, 2, 32)
    dout = torch.randn_like(out).transpose(1, 2)
    kernels.attention_bwd(dout, q, k, v, out.transpose(1, 2), lse, True, 0.2, partials=partials)
    assert torch.isfinite(partials).all()
    with pytest.raises(ValueError, match="needs dropout_p = 0"):
        kernels.attention_bwd(dout, q, k, v, out.transpose(1, 2), lse, True, 0.2, dropout_p=0.1, partials=partials)


def test_qkvpacked_torch_backend_and_bad_shape(device):
    qkv = torch.randn(2, 33, 3, 2, 16, device=device, dtype=torch.float64)
    with fastgpt.use_backend("torch"):
        out = flash_attention_qkvpacked(qkv, causal=True)
    ref = F.scaled_dot_product_attention(*qkv.permute(2, 0, 3, 1, 4), is_causal=True).transpose(1, 2)
    assert_rel_close(out, ref, 1e-12, "torch backend, packed")
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, D\)"):
        flash_attention_qkvpacked(torch.randn(2, 33, 2, 2, 16, device=device))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        flash_attention_qkvpacked(qkv.tolist())


# ---- the module ----

@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_nanogpt_attention(bias, device):
    """Loaded with a nanoGPT CausalSelfAttention's weights: same output and gradients."""
    cfg = fastgpt.GPTConfig(block_size=64, vocab_size=65, n_layer=1, n_head=2, n_embd=64, bias=bias, dropout=0.0)
    ref = CausalSelfAttention(cfg).to(device)
    ours = FusedCausalSelfAttention(cfg).to(device)
    ours.load_state_dict(ref.state_dict())           # same parameter names: loads unchanged
    x = torch.randn(2, 37, 64, device=device)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), ref(x_ref)
    dy = torch.randn_like(y_ref)
    y_ours.backward(dy)
    y_ref.backward(dy)
    assert_rel_close(y_ours, y_ref, 1e-5, "module output")
    assert_rel_close(x_ours.grad, x_ref.grad, 1e-5, "grad of x")
    ref_params = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert_rel_close(param.grad, ref_params[name].grad, 1e-5, f"grad of {name}")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_module_with_the_bias_gradient_from_attention_matches_nanogpt(backend, device):
    """fuse_qkv_bias_grad: c_attn's bias gradient from the attention backward (triton: the kernels'
    tiles; torch: routed through the reference): nanoGPT's output and every gradient (fp32)."""
    cfg = fastgpt.GPTConfig(block_size=64, vocab_size=65, n_layer=1, n_head=2, n_embd=64, bias=True, dropout=0.0)
    ref = CausalSelfAttention(cfg).to(device)
    with torch.no_grad():
        ref.c_attn.bias.normal_()                  # nonzero, so a bias left out would show
    ours = FusedCausalSelfAttention(cfg, fuse_qkv_bias_grad=True).to(device)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 37, 64, device=device)
    with fastgpt.use_backend(backend):
        y_ours = ours(x)
    y_ref = ref(x)
    dy = torch.randn_like(y_ref)
    y_ours.backward(dy)
    y_ref.backward(dy)
    assert_rel_close(y_ours, y_ref, 1e-5, "module output")
    ref_params = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert_rel_close(param.grad, ref_params[name].grad, 1e-5, f"grad of {name}")


def test_module_with_fuse_qkv_bias_and_dropout_takes_the_plain_path(device):
    """In training with dropout (P's rows no longer sum to 1) fuse_qkv_bias_grad changes nothing."""
    plain = FusedCausalSelfAttention(n_embd=64, n_head=2, dropout=0.3).to(device)
    fused = FusedCausalSelfAttention(n_embd=64, n_head=2, dropout=0.3, fuse_qkv_bias_grad=True).to(device)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 17, 64, device=device)
    outs = []
    for module in (plain, fused):
        torch.manual_seed(3)
        y = module(x)
        y.sum().backward()
        outs.append((y, module.c_attn.bias.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_module_from_keywords_and_dropout_in_training_only(device):
    attn = FusedCausalSelfAttention(n_embd=32, n_head=2, bias=False, dropout=0.5).to(device)
    x = torch.randn(1, 9, 32, device=device)
    attn.eval()
    assert torch.equal(attn(x), attn(x))
    attn.train()
    torch.manual_seed(0)
    a = attn(x)
    assert not torch.equal(a, attn(x))


# ---- torch.library ops ----

def test_custom_ops_pass_opcheck(device):
    q, k, v = (t.detach() for t in _qkv(1, 2, 20, 16, torch.float32, device))
    seed = torch.tensor([11], device=device)
    for causal, p, s in ((True, 0.0, None), (False, 0.3, seed)):
        torch.library.opcheck(torch.ops.fastgpt.attention_fwd.default, (q, k, v, causal, 0.25, p, s))
        out, lse = torch.ops.fastgpt.attention_fwd(q, k, v, causal, 0.25, p, s)
        torch.library.opcheck(torch.ops.fastgpt.attention_bwd.default,
                              (torch.randn_like(out), q, k, v, out, lse, causal, 0.25, p, s))
    qkv = torch.randn(1, 20, 3, 2, 16, device=device)
    for causal, p, s in ((True, 0.0, None), (False, 0.3, seed)):
        torch.library.opcheck(torch.ops.fastgpt.attention_qkvpacked_fwd.default, (qkv, causal, 0.25, p, s))
        out, lse = torch.ops.fastgpt.attention_qkvpacked_fwd(qkv, causal, 0.25, p, s)
        for bias_grad_dtype in ((None, torch.float32) if p == 0.0 else (None,)):
            torch.library.opcheck(torch.ops.fastgpt.attention_qkvpacked_bwd.default,
                                  (torch.randn_like(out), qkv, out, lse, causal, 0.25, p, s, bias_grad_dtype))


# ---- bad input: a clear error, never a crash in the kernel ----

def _bad_inputs(device):
    def t(*shape, dtype=torch.float32, dev=device):
        return torch.randn(*shape, device=dev).to(dtype)
    ok = t(1, 2, 8, 32)
    return {
        "not a tensor": ((ok.tolist(), ok, ok), {}, TypeError, "must be a torch.Tensor"),
        "3-D": ((t(2, 8, 32), t(2, 8, 32), t(2, 8, 32)), {}, ValueError, "must be 4-D"),
        "shape mismatch": ((ok, t(1, 2, 9, 32), ok), {}, ValueError, "same shape"),
        "integer dtype": ((ok.long(), ok.long(), ok.long()), {}, TypeError, "float16, bfloat16 or float32"),
        "mixed dtypes": ((ok, ok.half(), ok), {}, TypeError, "share one dtype"),
        "float64 on triton": ((ok.double(), ok.double(), ok.double()), {}, TypeError, "not supported"),
        "head dim 48": ((t(1, 2, 8, 48),) * 3, {}, ValueError, "head dim 48"),
        "different devices": ((ok, ok.to("meta"), ok), {}, ValueError, "different devices"),
        "empty sequence": ((t(1, 2, 0, 32),) * 3, {}, ValueError, "T = 0"),
        "dropout 1": ((ok, ok, ok), {"dropout_p": 1.0}, ValueError, "dropout_p"),
        "dropout < 0": ((ok, ok, ok), {"dropout_p": -0.1}, ValueError, "dropout_p"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs("cpu")))
def test_bad_input_raises_clear_error(case, device):
    args, kwargs, error, message = _bad_inputs(device)[case]
    with pytest.raises(error, match=message):
        flash_attention(*args, **kwargs)


def test_cpu_tensor_on_triton_outside_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q = torch.randn(1, 2, 8, 32)
    with pytest.raises(BackendError, match="TRITON_INTERPRET"):
        flash_attention(q, q, q)


def test_torch_backend_is_sdpa(device):
    q, k, v = (t.detach() for t in _qkv(2, 2, 33, 48, torch.float64, device))
    with fastgpt.use_backend("torch"):
        out = flash_attention(q, k, v, causal=False, softmax_scale=0.5)
    assert_rel_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.5), 1e-12, "torch backend")
