"""kernels/common.py's shared kernel: sum_partials, the fixed-order column sum of fp32 partials that
ends every deterministic bias / weight gradient, against a float64 sum. One, two and three buffers
in one launch; P from 1 to several tiles and not a multiple of one, C not a multiple of a tile's
columns; outputs poisoned with NaN so an unwritten column fails; the output's own dtype (bf16: no
cast after); zero columns launch nothing; mismatched buffers are a clear error.

Deferred (DeferredColumnSums): calls inside deferring() write nothing until flush(), which writes
every output bit for bit as the calls in place would have, in one launch per dtype and tile; an
output that is not one of the gradients flush() is given is an error, and nothing is written; a
GPT's backward with its sums deferred gives the gradients of the backward without."""
import pytest
import torch

import fastgpt
from fastgpt.kernels.common import DeferredColumnSums, sum_partials
from fastgpt.ops.dispatch import deferred_column_sums, deferring
from fastgpt.testing import assert_rel_close, poison_


@pytest.mark.parametrize("buffers", [1, 2, 3])
@pytest.mark.parametrize("P, C", [(1, 1), (7, 5), (300, 33), (129, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_sums_match_float64(buffers, P, C, dtype, device):
    partials = [torch.randn(P, C, device=device) for _ in range(buffers)]
    outs = [poison_(torch.empty(C, device=device, dtype=dtype)) for _ in range(buffers)]
    args = [partials[0], outs[0]]
    for i in (1, 2):
        args += [partials[i], outs[i]] if i < buffers else [None, None]
    assert sum_partials(*args) is outs[0]
    tol = 1e-6 if dtype == torch.float32 else 1e-2       # bf16: one rounding of the result
    for partial, out in zip(partials, outs):
        assert out.dtype == dtype
        assert_rel_close(out, partial.double().sum(0), tol, f"{buffers} buffers, P={P}, C={C}")


def test_deterministic(device):
    partials = torch.randn(1000, 96, device=device)
    first = sum_partials(partials, torch.empty(96, device=device))
    assert torch.equal(first, sum_partials(partials, torch.empty(96, device=device)))


def test_zero_columns_and_bad_arguments(device):
    out = torch.empty(0, device=device)
    assert sum_partials(torch.empty(4, 0, device=device), out) is out
    partials, out = torch.randn(4, 3, device=device), torch.empty(3, device=device)
    with pytest.raises(ValueError, match="needs its output"):
        sum_partials(partials, out, partials_b=partials)
    with pytest.raises(ValueError, match="needs its output"):
        sum_partials(partials, out, out_c=out)


def _sum_calls(device, deferred_into=None):
    """Three sum_partials calls as the backward makes them: three buffers (add+LayerNorm's), one
    (a bias's), one in bf16; P and C ragged against the tiles; made inside deferring(deferred_into).
    Returns the outputs."""
    g = torch.Generator().manual_seed(3)
    shapes = [((300, 33), torch.float32, 3), ((129, 100), torch.float32, 1), ((7, 5), torch.bfloat16, 1)]
    calls, outputs = [], []
    for (P, C), dtype, buffers in shapes:
        args = []
        for _ in range(buffers):
            out = poison_(torch.empty(C, device=device, dtype=dtype))
            args += [torch.randn(P, C, generator=g).to(device), out]
            outputs.append(out)
        calls.append(args)
    with deferring(deferred_into):
        for args in calls:
            sum_partials(*args)
    return outputs


def test_deferred_sums_write_at_flush_what_the_calls_write(device):
    sums = DeferredColumnSums()
    outputs = _sum_calls(device, sums)
    assert all(torch.isnan(out.float()).all() for out in outputs), "written before the flush"
    assert sums.flush(outputs) == len(outputs)
    expected = _sum_calls(device)
    for out, ref in zip(outputs, expected):
        assert torch.equal(out, ref), "deferred and in-place sums differ"
    assert sums.flush([]) == 0       # nothing left


def test_deferred_sums_refuse_an_output_that_is_no_gradient(device):
    sums = DeferredColumnSums()
    outputs = _sum_calls(device, sums)
    with pytest.raises(RuntimeError, match="no parameter's gradient"):
        sums.flush(outputs[1:])
    assert all(torch.isnan(out.float()).all() for out in outputs), "written after the refusal"
    assert sums.flush(outputs) == 0     # the refused sums are dropped


def test_gpt_backward_with_deferred_sums_gives_the_same_gradients(device):
    """A small GPT on the triton backend run on leaf copies of its parameters (as GraphedTrainStep's
    step on copies): its backward's column sums deferred and flushed give the gradients of the
    backward without, bit for bit; the flush finds every output taken by autograd as a gradient
    (else it raises). The outputs: every LayerNorm's weight and bias and every bias of a block
    (c_proj's from the LayerNorm after it, c_attn's from the attention, c_fc's from the MLP)."""
    from fastgpt.ops.autocast import ParameterCopies
    torch.manual_seed(0)
    config = fastgpt.gpt_preset("gpt2").replace(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    model = fastgpt.GPT(config).to(device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_()
    idx = torch.randint(0, 64, (2, 16), device=device)
    targets = torch.randint(0, 64, (2, 16), device=device)
    grads = {}
    for deferred in (False, True):
        copies = ParameterCopies(model, torch.float32)
        sums = DeferredColumnSums() if deferred else None
        with fastgpt.use_backend("triton"), deferred_column_sums(sums):
            _, loss = copies.forward(idx, targets)
        loss.backward()
        if deferred:
            layernorm_params = 2 * (2 * config.n_layer + 1)
            assert sums.flush(copies.grads()) == layernorm_params + 4 * config.n_layer
        grads[deferred] = [g.clone() for g in copies.grads()]
    for name, with_sums, without in zip(copies.names, grads[True], grads[False]):
        assert torch.equal(with_sums, without), name
