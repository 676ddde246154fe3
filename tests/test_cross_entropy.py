"""Fused LM head + cross-entropy against a float64 PyTorch reference: loss and the gradients of x
and W, odd vocabularies and token counts, ignored targets, several chunks, grad_output scaling,
autocast, no-grad, the torch.library op, and clear errors for bad input.

Tolerances are relative errors ||out - ref|| / ||ref|| (fastgpt.testing.REL_TOL by the dtype the
GEMMs run in; the loss itself is accumulated in fp32)."""
import math

import pytest
import torch
import torch.nn.functional as F

import fastgpt
from fastgpt.ops.cross_entropy import (_check_target_range, _linear_cross_entropy_fwd, _scale_gradient,
                                       fused_linear_cross_entropy, linear_cross_entropy_reference)
from fastgpt.kernels import cross_entropy_gluon
from fastgpt.testing import REL_TOL, assert_rel_close, poison_

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
# the GPU where there is one, else the CPU with Triton's interpreter (tests/conftest.py)
DEVICE = "cuda" if HAS_CUDA else "cpu"


def make_inputs(N, C, V, dtype, device=DEVICE, ignore_every=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, generator=g).to(device, dtype).requires_grad_()
    # scale so logits spread over a few units: a peaked, non-uniform softmax
    w = (torch.randn(V, C, generator=g) * (2.0 / math.sqrt(C))).to(device, dtype).requires_grad_()
    targets = torch.randint(0, V, (N,), generator=g)
    if ignore_every:
        targets[::ignore_every] = -1
    return x, w, targets.to(device)


def reference_float64(x, w, targets, ignore_index=-1, grad_scale=1.0):
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    loss = linear_cross_entropy_reference(x64, w64, targets, ignore_index)
    (loss * grad_scale).backward()
    return loss, x64.grad, w64.grad


def run_triton(x, w, targets, ignore_index=-1, grad_scale=1.0, **kwargs):
    with fastgpt.use_backend("triton"):
        loss = fused_linear_cross_entropy(x, w, targets, ignore_index, **kwargs)
    (loss * grad_scale).backward()
    return loss


def check_against_reference(x, w, targets, tol, ignore_index=-1, grad_scale=1.0, **kwargs):
    loss = run_triton(x, w, targets, ignore_index, grad_scale, **kwargs)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w, targets, ignore_index, grad_scale)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert_rel_close(loss, ref_loss, tol, "loss")
    assert x.grad.dtype == x.dtype
    assert_rel_close(x.grad, ref_gx, tol, "grad of x")
    if w.requires_grad:
        assert w.grad.dtype == w.dtype
        assert_rel_close(w.grad, ref_gw, tol, "grad of W")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("V", [65, 1000, 1031])
@pytest.mark.parametrize("N", [1, 33, 257])
def test_matches_float64_reference(N, V, dtype):
    x, w, targets = make_inputs(N, 24, V, dtype, ignore_every=4 if N > 1 else 0)
    check_against_reference(x, w, targets, REL_TOL[dtype])


def test_several_chunks_with_a_partial_last_one_and_gpt2_vocab():
    # 50257 is GPT-2's unpadded vocabulary: two vocab blocks of 32768, the second partial
    x, w, targets = make_inputs(37, 16, 50257, torch.float32, ignore_every=3)
    check_against_reference(x, w, targets, REL_TOL[torch.float32], chunk_rows=8)


@pytest.mark.parametrize("chunk_rows", [1, 16, 1000])
def test_chunk_size_does_not_change_the_result(chunk_rows):
    x, w, targets = make_inputs(50, 16, 130, torch.float32, ignore_every=5)
    check_against_reference(x, w, targets, REL_TOL[torch.float32], chunk_rows=chunk_rows)


def test_grad_output_scales_both_gradients_and_leading_dims_are_kept():
    x, w, targets = make_inputs(2 * 9, 16, 77, torch.float32, ignore_every=4)
    x3 = x.detach().view(2, 9, 16).requires_grad_()
    loss = run_triton(x3, w, targets.view(2, 9), grad_scale=-3.5)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w, targets, grad_scale=-3.5)
    assert_rel_close(loss, ref_loss, 1e-5, "loss")
    assert x3.grad.shape == (2, 9, 16)
    assert_rel_close(x3.grad.view(18, 16), ref_gx, 1e-5, "grad of x")
    assert_rel_close(w.grad, ref_gw, 1e-5, "grad of W")


def test_other_ignore_index_and_all_ignored():
    x, w, targets = make_inputs(20, 16, 50, torch.float32)
    targets[::2] = -100
    check_against_reference(x, w, targets, 1e-5, ignore_index=-100)
    # every target ignored: the mean is 0/0 = NaN, as F.cross_entropy, and nothing flows back
    x, w, targets = make_inputs(5, 16, 50, torch.float32)
    loss = run_triton(x, w, torch.full_like(targets, -1))
    assert torch.isnan(loss)
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(w.grad) == 0


def test_autocast_casts_like_f_linear():
    x, w, targets = make_inputs(40, 32, 300, torch.float32, ignore_every=6)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss = run_triton(x, w, targets)
        ref = linear_cross_entropy_reference(x.detach(), w.detach(), targets, -1)
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    assert_rel_close(loss, ref, REL_TOL[torch.bfloat16], "loss under autocast")
    _, ref_gx, ref_gw = reference_float64(x, w, targets)
    assert_rel_close(x.grad, ref_gx, REL_TOL[torch.bfloat16], "grad of x under autocast")
    assert_rel_close(w.grad, ref_gw, REL_TOL[torch.bfloat16], "grad of W under autocast")


def test_frozen_head_and_no_grad():
    x, w, targets = make_inputs(30, 16, 100, torch.float32)
    w.requires_grad_(False)
    check_against_reference(x, w, targets, 1e-5)
    assert w.grad is None
    with torch.no_grad(), fastgpt.use_backend("triton"):
        loss = fused_linear_cross_entropy(x, w, targets)
    assert not loss.requires_grad
    assert_rel_close(loss, reference_float64(x, w, targets)[0], 1e-5, "loss without grad")


KERNEL_PATHS = [dict(block_v=128, single_pass=False),   # 8 blocks, last partial
                dict(single_pass=True),                   # whole row in one block
                dict(single_pass=True, num_warps=4),      # the warps knob the benchmark times
                dict()]                                   # the launcher's choice


@pytest.mark.parametrize("path", KERNEL_PATHS)
def test_kernel_writes_every_loss_and_every_gradient_element(path):
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    rows, V = 19, 1000
    logits = torch.randn(rows, V, device=DEVICE) * 3
    targets = torch.randint(0, V, (rows,), device=DEVICE)
    targets[[0, 7, 18]] = -1
    targets[1], targets[2] = 0, V - 1                    # the edges of the row
    n_valid = (targets != -1).sum()
    loss = poison_(torch.empty(rows, device=DEVICE))
    dlogits = logits.clone()
    cross_entropy_fwd_bwd_(dlogits, targets, loss, n_valid, -1, True, **path)
    ref_logits = logits.double().requires_grad_()
    ref_loss = F.cross_entropy(ref_logits, targets, ignore_index=-1, reduction="none")
    (ref_loss.sum() / n_valid).backward()
    assert_rel_close(loss, ref_loss, 1e-6, "per-row loss")
    assert_rel_close(dlogits, ref_logits.grad, 1e-6, "gradient of the logits")
    assert torch.count_nonzero(dlogits[[0, 7, 18]]) == 0
    # loss only: the logits are left as they were
    logits_copy, loss = logits.clone(), poison_(torch.empty(rows, device=DEVICE))
    cross_entropy_fwd_bwd_(logits_copy, targets, loss, n_valid, -1, False, **path)
    assert_rel_close(loss, ref_loss, 1e-6, "per-row loss without the gradient")
    assert torch.equal(logits_copy, logits)


def check_kernel_in_half_precision(rows, V, dtype, ignored, path, device=DEVICE, seed=1):
    """cross_entropy_fwd_bwd_ on (rows, V) half-precision logits (rows `ignored` ignored) against
    float64 over the same stored logits: the per-row loss within 1e-6, the gradient within its
    storage dtype's rounding (2^-10 fp16, 2^-8 bf16 relative: ~3x what rounding the exact
    gradient to them gives), ignored rows all zero, nothing left unwritten."""
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, V, generator=g) * 4).to(device, dtype)
    targets = torch.randint(0, V, (rows,), generator=g).to(device)
    targets[ignored] = -1
    n_valid = (targets != -1).sum()
    loss = poison_(torch.empty(rows, device=device))
    dlogits = poison_(logits.clone()).copy_(logits)
    cross_entropy_fwd_bwd_(dlogits, targets, loss, n_valid, -1, True, **path)
    ref_logits = logits.double().requires_grad_()
    ref_loss = F.cross_entropy(ref_logits, targets, ignore_index=-1, reduction="none")
    (ref_loss.sum() / n_valid).backward()
    assert_rel_close(loss, ref_loss, 1e-6, "per-row loss")
    assert_rel_close(dlogits, ref_logits.grad, 2 ** -10 if dtype == torch.float16 else 2 ** -8,
                     "gradient of the logits")
    assert torch.count_nonzero(dlogits[ignored]) == 0


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernel_in_half_precision(path, dtype):
    """Half-precision logits (the model's path), rows of a ragged, not power-of-two vocab."""
    check_kernel_in_half_precision(13, 2053, dtype, [3, 12], path)


@pytest.mark.parametrize("n", [1, 1000, 4097])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_scale_gradient_writes_every_element(n, dtype):
    """The backward's scaling pass (fp32 accumulator -> dtype, times grad_output) against float64,
    into a NaN-poisoned output; sizes around its block."""
    from fastgpt.kernels.cross_entropy import scale_gradient
    g = torch.Generator().manual_seed(n)
    grad = torch.randn(n, 3, generator=g).to(DEVICE)
    grad_output = torch.tensor(0.37, device=DEVICE)
    out = poison_(torch.empty(n, 3, dtype=dtype, device=DEVICE))
    assert scale_gradient(grad, grad_output, dtype, out=out) is out
    assert_rel_close(out, grad.double() * 0.37, REL_TOL[dtype], "scaled")


def test_launcher_picks_the_single_pass_by_row_bytes():
    from fastgpt.kernels import cross_entropy as ce

    def picks_single(n_cols, dtype):
        seen = {}
        launch = ce._cross_entropy_fwd_bwd_kernel
        class Spy:
            def __getitem__(self, grid):
                return lambda *args, **kw: seen.update(kw)
        ce._cross_entropy_fwd_bwd_kernel = Spy()
        try:
            logits = torch.empty(1, n_cols, dtype=dtype)
            ce.cross_entropy_fwd_bwd_(logits, torch.zeros(1, dtype=torch.long), torch.empty(1),
                                      torch.ones(()), -1, True)
        finally:
            ce._cross_entropy_fwd_bwd_kernel = launch
        return seen["SINGLE_PASS"], seen["BLOCK_V"]

    assert picks_single(50304, torch.bfloat16) == (True, 65536)      # GPT-2's padded vocab
    assert picks_single(65537, torch.bfloat16) == (False, ce.MAX_BLOCK_V)
    assert picks_single(32768, torch.float32) == (True, 32768)
    assert picks_single(50304, torch.float32) == (False, ce.MAX_BLOCK_V)


def test_default_chunk_rows():
    from fastgpt.kernels.cross_entropy import CHUNK_ROWS, chunk_rows

    assert chunk_rows(16384, 50304, 2) == CHUNK_ROWS == 8192         # GPT-2 head: 824 MB of logits
    assert chunk_rows(100, 50304, 2) == 100                           # never more than the tokens
    assert chunk_rows(16384, 128256, 2) == 4096                       # capped at 1 GiB of logits
    assert chunk_rows(16384, 50304, 4) == 4096
    assert chunk_rows(16384, 2**40, 4) == 1


def test_custom_op_passes_opcheck():
    x, w, targets = make_inputs(12, 8, 40, torch.float32, ignore_every=3)
    torch.library.opcheck(_linear_cross_entropy_fwd,
                          (x.detach(), w.detach(), targets, -1, torch.float32, True, True, 5))
    torch.library.opcheck(_scale_gradient, (torch.randn(8, 40, device=DEVICE), torch.tensor(0.5, device=DEVICE),
                                            torch.float16))


@pytest.mark.parametrize("make_bad, error, match", [
    (lambda x, w, t: (x, w[0], t), ValueError, "weight must be"),
    (lambda x, w, t: (x[:, :-1], w, t), ValueError, "x must be"),
    (lambda x, w, t: (x, w, t[:-1]), ValueError, "targets must have shape"),
    (lambda x, w, t: (x, w, t.float()), TypeError, "integer class ids"),
    (lambda x, w, t: (x.double(), w.double(), t), TypeError, "float16, bfloat16 or float32"),
    (lambda x, w, t: (x.long(), w, t), TypeError, "x must be float16"),
    (lambda x, w, t: (x.half(), w, t), TypeError, "same dtype"),
    (lambda x, w, t: (x, w.to("meta"), t), ValueError, "one device"),
    (lambda x, w, t: (x.tolist(), w, t), TypeError, "x must be a torch.Tensor"),
])
def test_bad_inputs_are_clear_errors(make_bad, error, match):
    x, w, targets = make_inputs(6, 8, 40, torch.float32)
    targets[0] = 39
    with fastgpt.use_backend("triton"), pytest.raises(error, match=match):
        fused_linear_cross_entropy(*make_bad(x.detach(), w.detach(), targets))


def test_out_of_range_targets_are_a_clear_error():
    # checked on CPU tensors: on CUDA the same check is a device-side assert (no host sync),
    # which would end the test session's CUDA context
    x, w, targets = make_inputs(6, 8, 40, torch.float32, device="cpu")
    for bad in (targets.clamp(min=0) + 40, targets - 100):
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 40\) or equal ignore_index=-1"):
            _check_target_range(bad, 40, -1)
    _check_target_range(torch.tensor([0, 39, -1]), 40, -1)       # the edges are fine
    _check_target_range(torch.tensor([0, 39, 40]), 40, 40)       # an ignore_index past the vocab too
    with pytest.raises(ValueError, match="targets must lie in"):
        _check_target_range(torch.tensor([0, 41, 40]), 40, 40)
    if not HAS_CUDA:   # and through the public function, which runs the check in its op
        with fastgpt.use_backend("triton"), pytest.raises(ValueError, match="targets must lie in"):
            fused_linear_cross_entropy(x, w, targets + 40)


@pytest.mark.parametrize("n", [1, 7, 300, 5000, 16384])
@pytest.mark.parametrize("ignore_index", [-1, -100, 0])
def test_target_stats_count_and_range_as_pytorch(n, ignore_index, monkeypatch):
    """kernels/cross_entropy.target_stats: the count of non-ignored targets and the range flag,
    against PyTorch's comparisons; one target, several blocks of the kernel's loop (256 in the
    interpreter, 4096 on the GPU), targets at both edges, every one ignored, and each kind of
    out-of-range target; outputs start as the wrong answer, so an unwritten one fails."""
    from fastgpt.kernels import cross_entropy as kernels
    original_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: (
        lambda t: t.fill_(-7) if t.dtype == torch.int64 else t.fill_(True) if t.dtype == torch.bool else t)(
        original_empty(*a, **k)))
    g = torch.Generator().manual_seed(n)
    V = 40
    base = torch.randint(0, V, (n,), generator=g)
    base[torch.rand(n, generator=g) < 0.3] = ignore_index
    base[0] = V - 1
    cases = [base, torch.full((n,), ignore_index)]
    for bad_value in (V, -2 if ignore_index != -2 else -3):
        bad = base.clone()
        bad[n // 2] = bad_value
        cases.append(bad)
    for targets in cases:
        targets = targets.to(DEVICE)
        n_valid, in_range = kernels.target_stats(targets, V, ignore_index)
        valid = targets != ignore_index
        assert n_valid.item() == int(valid.sum())
        assert in_range.item() == bool(((targets >= 0) & (targets < V) | ~valid).all())
        assert in_range.dtype == torch.bool and n_valid.dtype == torch.int64


def test_bad_ignore_index_and_chunk_rows():
    x, w, targets = make_inputs(6, 8, 40, torch.float32)
    with pytest.raises(TypeError, match="ignore_index"):
        fused_linear_cross_entropy(x, w, targets, ignore_index=-1.0)
    with pytest.raises(ValueError, match="chunk_rows"):
        fused_linear_cross_entropy(x, w, targets, chunk_rows=0)


# ---- on the GPU: bf16 (the interpreter's bf16 is not the GPU's), the GPT-2 shape ----

@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("N, V", [(1, 65), (257, 50257), (1000, 50304)])
def test_gpu_matches_float64_reference(N, V, dtype):
    x, w, targets = make_inputs(N, 128, V, dtype, device="cuda", ignore_every=4 if N > 1 else 0)
    check_against_reference(x, w, targets.cuda(), REL_TOL[dtype], chunk_rows=256)


@requires_cuda
def test_gpu_autocast_gpt2_head():
    x, w, targets = make_inputs(4096, 768, 50304, torch.float32, device="cuda", ignore_every=9)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = run_triton(x, w, targets)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w, targets)
    assert_rel_close(loss, ref_loss, REL_TOL[torch.bfloat16], "loss")
    assert_rel_close(x.grad, ref_gx, REL_TOL[torch.bfloat16], "grad of x")
    assert_rel_close(w.grad, ref_gw, REL_TOL[torch.bfloat16], "grad of W")


gluon_only = pytest.mark.skipif(not (HAS_CUDA and cross_entropy_gluon.available()),
                                reason="needs Gluon and a Hopper GPU")


@requires_cuda
@pytest.mark.parametrize("kernel", ["triton", pytest.param("gluon", marks=gluon_only)])
def test_gpu_kernel_per_row_loss_at_gpt2_vocab(kernel):
    """check_kernel_in_half_precision at GPT-2's padded vocab in bf16 over 4096 rows, both kernels
    (Triton's single pass, a row per 32 warps; the persistent Gluon kernel): every warp reads the
    target's logit before any warp overwrites the row with its gradient (run 71: without the Triton
    kernel's barrier a faster gradient pass let stores win that race, 5e-3 loss error over 4096
    rows; the Gluon kernel reads it from shared memory). Many rows, so that a race has many
    chances to show."""
    check_kernel_in_half_precision(4096, 50304, torch.bfloat16, [5, 4000], {"kernel": kernel}, device="cuda", seed=2)


# ---- kernels/cross_entropy_gluon.py: the dispatch on CPU, the kernel on a Hopper GPU ----

def test_gluon_fits_only_16_bit_rows_of_whole_vectors_that_fit_its_buffers():
    fits = cross_entropy_gluon.fits
    assert fits(torch.empty(3, 50304, dtype=torch.bfloat16))           # GPT-2's padded vocab
    assert fits(torch.empty(3, 1000, dtype=torch.float16))
    assert fits(torch.empty(3, 57344, dtype=torch.bfloat16))           # the widest: 14 chunks
    assert not fits(torch.empty(3, 57352, dtype=torch.bfloat16))       # wider than the two buffers
    assert not fits(torch.empty(3, 50257, dtype=torch.bfloat16))       # ragged: not whole 16-byte vectors
    assert not fits(torch.empty(3, 50304, dtype=torch.float32))        # fp32 keeps the Triton kernel
    assert fits(torch.empty(3, 50320, dtype=torch.bfloat16)[:, :50304])      # row stride 50320: aligned
    assert not fits(torch.empty(3, 50308, dtype=torch.bfloat16)[:, :50304])  # row stride not 16 bytes
    assert fits(torch.empty(3, 50312, dtype=torch.bfloat16)[:, 8:])          # base 16 bytes in
    assert not fits(torch.empty(3, 50312, dtype=torch.bfloat16)[:, 4:50308])  # base not 16-byte aligned
    assert not fits(torch.empty(50304, 3, dtype=torch.bfloat16).t())   # column stride not 1


def test_gluon_does_not_apply_on_cpu_and_forcing_it_is_a_clear_error():
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    logits = torch.randn(2, 64).bfloat16()
    assert not cross_entropy_gluon.applies(logits)
    args = (torch.zeros(2, dtype=torch.long), torch.empty(2), torch.ones(()), -1, True)
    with pytest.raises(ValueError, match="kernel='gluon' needs a Hopper GPU with Gluon"):
        cross_entropy_fwd_bwd_(logits, *args, kernel="gluon")
    with pytest.raises(ValueError, match="Triton kernel's knobs"):
        cross_entropy_fwd_bwd_(logits, *args, kernel="gluon", single_pass=True)
    with pytest.raises(ValueError, match="kernel must be None, 'triton' or 'gluon'"):
        cross_entropy_fwd_bwd_(logits, *args, kernel="cuda")


def test_dispatch_takes_gluon_where_it_applies_unless_a_triton_knob_is_pinned(monkeypatch):
    """With Gluon made to apply wherever the logits fit (no GPU needed: both launches are spied on)."""
    from fastgpt.kernels import cross_entropy as ce

    seen = []
    class TritonSpy:
        def __getitem__(self, grid):
            return lambda *args, **kw: seen.append(("triton", kw.get("num_warps")))
    monkeypatch.setattr(ce, "_cross_entropy_fwd_bwd_kernel", TritonSpy())
    monkeypatch.setattr(cross_entropy_gluon, "applies", cross_entropy_gluon.fits)
    monkeypatch.setattr(cross_entropy_gluon, "launch_cross_entropy_fwd_bwd_",
                        lambda *args, num_warps=None: seen.append(("gluon", num_warps)))

    def picks(n_cols, dtype=torch.bfloat16, **kwargs):
        seen.clear()
        ce.cross_entropy_fwd_bwd_(torch.empty(1, n_cols, dtype=dtype), torch.zeros(1, dtype=torch.long),
                                  torch.empty(1), torch.ones(()), -1, True, **kwargs)
        return seen[0]

    assert picks(50304) == ("gluon", None)
    assert picks(50304, kernel="gluon", num_warps=16) == ("gluon", 16)
    assert picks(50304, kernel="triton")[0] == "triton"
    assert picks(50304, num_warps=16) == ("triton", 16)         # a pinned Triton knob keeps Triton
    assert picks(50304, single_pass=True)[0] == "triton"
    assert picks(50257)[0] == "triton"                           # ragged vocab
    assert picks(50304, dtype=torch.float32)[0] == "triton"
    assert picks(65536)[0] == "triton"                           # wider than the buffers


@gluon_only
@pytest.mark.parametrize("num_warps", [None, 16])
@pytest.mark.parametrize("V", [50304, 1000, 8192])
@pytest.mark.parametrize("rows", [1, 5, 133, 4096])
def test_gpu_gluon_kernel_matches_float64(rows, V, num_warps):
    """The Gluon kernel against float64 (check_kernel_in_half_precision: loss within 1e-6, the
    gradient within bf16 rounding, nothing unwritten): one row; fewer rows than SMs; 133 rows (more
    than an H100's 132 SMs: a program takes two rows, both buffers); 4096 rows (~31 rows a program);
    vocabularies of 13 chunks (the last partial), one partial chunk, two whole chunks; ignored rows
    among them (the first and last rows of a program included)."""
    ignored = [r for r in (0, 3, 132, 4000) if r < rows] if rows > 1 else []
    check_kernel_in_half_precision(rows, V, torch.bfloat16, ignored, {"kernel": "gluon", "num_warps": num_warps},
                                   device="cuda", seed=rows + V)


@gluon_only
def test_gpu_gluon_kernel_fp16_strided_rows_and_loss_only():
    """fp16 logits; rows of a wider buffer (row stride 50320, the padding left alone); and without
    compute_grad the logits are left as they were and only the loss is written."""
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    check_kernel_in_half_precision(300, 50304, torch.float16, [7, 299], {"kernel": "gluon"}, device="cuda")
    g = torch.Generator().manual_seed(3)
    rows, V = 200, 50304
    buffer = (torch.randn(rows, V + 16, generator=g) * 4).to("cuda", torch.bfloat16)
    logits = buffer[:, :V]
    targets = torch.randint(0, V, (rows,), generator=g).cuda()
    targets[[0, 150]] = -1
    n_valid = (targets != -1).sum()
    ref_logits = logits.double().requires_grad_()
    ref_loss = F.cross_entropy(ref_logits, targets, ignore_index=-1, reduction="none")
    (ref_loss.sum() / n_valid).backward()
    before = buffer.clone()
    loss = poison_(torch.empty(rows, device="cuda"))
    cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, -1, False, kernel="gluon")
    assert_rel_close(loss, ref_loss, 1e-6, "per-row loss without the gradient")
    assert torch.equal(buffer, before)
    loss = poison_(torch.empty(rows, device="cuda"))
    cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, -1, True, kernel="gluon")
    assert_rel_close(loss, ref_loss, 1e-6, "per-row loss")
    assert_rel_close(logits, ref_logits.grad, 2 ** -8, "gradient of strided logits")
    assert torch.equal(buffer[:, V:], before[:, V:])               # the padding columns untouched
    assert torch.count_nonzero(logits[[0, 150]]) == 0


@gluon_only
@pytest.mark.parametrize("V", [50304, 2056])
def test_gpu_gluon_and_triton_kernels_agree(V):
    """The same logits through both kernels: the losses within fp32 rounding of each other, the
    gradients within bf16 rounding (the two round different fp32 values); the default takes Gluon."""
    from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_

    assert cross_entropy_gluon.applies(torch.empty(1, V, device="cuda", dtype=torch.bfloat16))
    g = torch.Generator().manual_seed(V)
    rows = 1000
    logits = (torch.randn(rows, V, generator=g) * 4).to("cuda", torch.bfloat16)
    targets = torch.randint(0, V, (rows,), generator=g).cuda()
    targets[::97] = -100
    n_valid = (targets != -100).sum()
    out = {}
    for kernel in ("triton", "gluon", None):
        dlogits, loss = logits.clone(), poison_(torch.empty(rows, device="cuda"))
        cross_entropy_fwd_bwd_(dlogits, targets, loss, n_valid, -100, True, kernel=kernel)
        out[kernel] = loss, dlogits
    assert_rel_close(out["gluon"][0], out["triton"][0], 1e-6, "loss, gluon against triton")
    assert_rel_close(out["gluon"][1], out["triton"][1], 2 ** -8, "gradient, gluon against triton")
    assert torch.equal(out[None][0], out["gluon"][0]) and torch.equal(out[None][1], out["gluon"][1])
    assert torch.count_nonzero(out["gluon"][1][::97]) == 0


# ---- the exp-logits path (kernels/cross_entropy.py's header): the GEMM writes exp(logits - the
# target's logit) and its row sums; on CPU its PyTorch stand-in, the Triton kernels interpreted ----

def _exp_path(x, w, targets, ignore_index=-1, chunk_rows=4096, exp_logits=True):
    from fastgpt.kernels.cross_entropy import linear_cross_entropy_fwd_bwd
    return linear_cross_entropy_fwd_bwd(x.detach(), w.detach(), targets, ignore_index, x.dtype, True, True,
                                        chunk_rows, exp_logits=exp_logits)


EXP_DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", EXP_DTYPES)
@pytest.mark.parametrize("N, V, chunk_rows", [(1, 65, 4096), (33, 1000, 4096), (257, 1031, 100)])
def test_exp_logits_path_matches_float64_reference(N, V, chunk_rows, dtype):
    """Loss and both gradients against float64: one row, a vocab past a 128-column tile's edge, and
    several chunks with a partial last one; every fourth target ignored."""
    x, w, targets = make_inputs(N, 24, V, dtype, ignore_every=4 if N > 1 else 0)
    loss, grad_x, grad_w = _exp_path(x, w, targets, chunk_rows=chunk_rows)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w, targets)
    tol = REL_TOL[dtype]
    assert_rel_close(loss, ref_loss, tol, "loss")
    assert_rel_close(grad_x, ref_gx, tol, "grad of x")
    assert_rel_close(grad_w, ref_gw, tol, "grad of W")
    assert grad_x.dtype == dtype and grad_w.dtype == torch.float32


def test_exp_logits_path_large_logits_and_all_ignored():
    """Logits spread over tens of nats (below the cap) stay exact in fp32; all targets ignored gives
    NaN as torch, with zero gradients (no 0 * inf)."""
    x, w, targets = make_inputs(40, 16, 300, torch.float32)
    w = (w * 4).detach()             # some target logits ~52 nats below their row's largest
    loss, grad_x, grad_w = _exp_path(x, w, targets)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w.requires_grad_(), targets)
    assert_rel_close(loss, ref_loss, 1e-5, "loss")
    assert_rel_close(grad_x, ref_gx, 1e-4, "grad of x")
    assert_rel_close(grad_w, ref_gw, 1e-4, "grad of W")
    loss, grad_x, grad_w = _exp_path(x, w, torch.full_like(targets, -1))
    assert torch.isnan(loss)
    assert torch.count_nonzero(grad_x) == 0 and torch.count_nonzero(grad_w) == 0


def test_exp_logits_path_saturates_past_the_cap():
    """A row whose logits pass its target's by more than EXP_CAP nats: its exponentials are capped, so
    its loss saturates near EXP_CAP + log(the capped count), finite, and so do the gradients; the
    other rows are exact. The documented limit of the path (rows with a loss over ~70 nats)."""
    from fastgpt.kernels.cross_entropy import EXP_CAP
    x, w, targets = make_inputs(8, 16, 200, torch.float32)
    x, w = x.detach(), w.detach()
    logits = x @ w.t()
    targets[0] = int(logits[0].argmin())
    x[0] *= (EXP_CAP + 40) / float(logits[0].max() - logits[0].min())      # row 0: a ~110-nat loss
    loss_rows = F.cross_entropy((x.double() @ w.double().t()), targets, reduction="none")
    assert loss_rows[0] > EXP_CAP + 30
    loss, grad_x, grad_w = _exp_path(x, w, targets)
    assert torch.isfinite(grad_x).all() and torch.isfinite(grad_w).all()
    capped = (loss * 8 - loss_rows[1:].sum()).item()          # row 0's loss as the path computed it
    assert EXP_CAP <= capped <= EXP_CAP + math.log(200) + 1e-3
    rest = _exp_path(x[1:], w, targets[1:])
    assert_rel_close(rest[0], loss_rows[1:].mean(), 1e-5, "the other rows' loss")


def test_exp_logits_default_only_where_the_gluon_gemm_runs():
    """None picks the path where exp_logits_applies (bf16 on a Hopper GPU with Gluon), never fp16
    (exp(EXP_CAP) is past fp16's range) nor off the GPU."""
    from fastgpt.kernels import cross_entropy as ce_kernels
    x = torch.randn(4, 16, device=DEVICE)
    w = torch.randn(64, 16, device=DEVICE)
    assert not ce_kernels.exp_logits_applies(x.half(), w.half())
    assert not ce_kernels.exp_logits_applies(x, w)
    hopper = HAS_CUDA and ce_kernels.mlp_gluon.available()
    assert ce_kernels.exp_logits_applies(x.bfloat16(), w.bfloat16()) == hopper


@requires_cuda
@pytest.mark.skipif(not (HAS_CUDA and cross_entropy_gluon.available()), reason="needs Gluon and a Hopper GPU")
@pytest.mark.parametrize("M, N, K", [(300, 1000, 24), (4096, 50304, 768), (1, 136, 64)])
def test_gpu_gluon_exp_gemm_matches_its_reference(M, N, K):
    """mlp_gluon.launch_linear_exp (the EXP_SHIFT epilogue) against exp_logits_reference: E within
    bf16 rounding of the fp32 product's exponential, the row sums (of the exponentials before
    rounding) within the fp32 product's accumulation order and ex2.approx (run 105: 1.03e-5 at
    GPT-2's shape); rows and columns past the tiles' edges
    (M = 300, N = 1000, 136), poisoned outputs."""
    from fastgpt.kernels import cross_entropy as ce_kernels, mlp_gluon
    g = torch.Generator().manual_seed(M + N)
    x = torch.randn(M, K, generator=g).to("cuda", torch.bfloat16)
    w = (torch.randn(N, K, generator=g) * (3 / math.sqrt(K))).to("cuda", torch.bfloat16)
    shift = torch.randn(M, generator=g).cuda()
    tiles = math.ceil(N / mlp_gluon.BLOCK_N)
    e, sums = poison_(torch.empty(M, N, device="cuda", dtype=torch.bfloat16)), poison_(torch.empty(M, tiles, device="cuda"))
    mlp_gluon.launch_linear_exp(x, w, shift, e, sums, ce_kernels.EXP_CAP)
    ref_e, ref_sums = torch.empty_like(e), torch.empty_like(sums)
    ce_kernels.exp_logits_reference(x, w, shift, ref_e, ref_sums, ce_kernels.EXP_CAP, mlp_gluon.BLOCK_N)
    assert_rel_close(e, ref_e, 2 ** -8, "E")
    assert_rel_close(sums, ref_sums, 1e-4, "row sums")


@requires_cuda
@pytest.mark.parametrize("N, V", [(4096, 50304), (1000, 50257)])
def test_gpu_exp_logits_path_at_gpt2_vocab(N, V):
    """The path as the GPT-2 head runs it on the GPU (bf16; Gluon's GEMM on Hopper, else the
    PyTorch stand-in) against float64 and against the loss kernel's path."""
    x, w, targets = make_inputs(N, 768, V, torch.bfloat16, device="cuda", ignore_every=9)
    w = (w * 0.3).detach()
    exp_path = _exp_path(x, w, targets, chunk_rows=1024)
    loss_kernel = _exp_path(x, w, targets, chunk_rows=1024, exp_logits=False)
    ref = reference_float64(x, w.requires_grad_(), targets)
    for name, out, ref_out, other in zip(("loss", "grad of x", "grad of W"), exp_path, ref, loss_kernel):
        assert_rel_close(out, ref_out, 5e-3, name)
        assert_rel_close(out, other, 1e-2, name + " against the loss kernel's path")


def test_exp_logits_path_strided_inputs():
    """x and W as transposed views (column stride != 1): the same result as contiguous copies."""
    x, w, targets = make_inputs(20, 24, 130, torch.float32, ignore_every=3)
    x, w = x.detach(), w.detach()
    x_t, w_t = x.t().contiguous().t(), w.t().contiguous().t()
    assert x_t.stride(1) != 1 and w_t.stride(1) != 1
    for got, ref in zip(_exp_path(x_t, w_t, targets), _exp_path(x, w, targets)):
        assert torch.equal(got, ref)


def test_exp_logits_path_fp32_inputs_bf16_compute():
    """x and W in fp32 with bf16 GEMMs (autocast's arrangement): grad_x comes back in x's dtype."""
    from fastgpt.kernels.cross_entropy import linear_cross_entropy_fwd_bwd
    x, w, targets = make_inputs(50, 24, 300, torch.float32, ignore_every=7)
    loss, grad_x, grad_w = linear_cross_entropy_fwd_bwd(x.detach(), w.detach(), targets, -1, torch.bfloat16,
                                                        True, True, 4096, exp_logits=True)
    ref_loss, ref_gx, ref_gw = reference_float64(x, w, targets)
    assert grad_x.dtype == torch.float32 and grad_w.dtype == torch.float32
    tol = REL_TOL[torch.bfloat16]
    assert_rel_close(loss, ref_loss, tol, "loss")
    assert_rel_close(grad_x, ref_gx, tol, "grad of x")
    assert_rel_close(grad_w, ref_gw, tol, "grad of W")
