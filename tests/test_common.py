"""kernels/common.py's shared kernel: sum_partials, the fixed-order column sum of fp32 partials that
ends every deterministic bias / weight gradient, against a float64 sum. One, two and three buffers
in one launch; P from 1 to several tiles and not a multiple of one, C not a multiple of a tile's
columns; outputs poisoned with NaN so an unwritten column fails; the output's own dtype (bf16: no
cast after); zero columns launch nothing; mismatched buffers are a clear error."""
import pytest
import torch

from fastgpt.kernels.common import sum_partials
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
