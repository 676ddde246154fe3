"""benchmarks/host_overhead.py: its stubs stand in for the launchers faithfully (autograd checks
every gradient's shape against its input's), every layer of every op runs, the launchers are
restored afterwards, and the eager path calls the ops' Python implementations directly."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import host_overhead  # noqa: E402

from fastgpt.ops import layernorm  # noqa: E402
from fastgpt.ops.dispatch import call_custom_op  # noqa: E402


def test_every_layer_of_every_op_runs_and_the_launchers_come_back():
    originals = {(m, n): getattr(importlib.import_module(f"fastgpt.kernels.{m}"), n)
                 for m, stubs in host_overhead.STUBS.items() for n in stubs}
    results = host_overhead.measure(repeats=2, inner=1)
    for op, r in results.items():
        for layer in ("public", "function", "ops", "impl", "launchers", "validate", "resolve"):
            assert r["layers"][layer]["median_us"] > 0, (op, layer)
    assert "| layernorm |" in host_overhead.format_table(results)
    for (m, n), fn in originals.items():
        assert getattr(importlib.import_module(f"fastgpt.kernels.{m}"), n) is fn


@pytest.mark.parametrize("case", list(host_overhead.CASES))
def test_stubbed_public_call_returns_gradients_shaped_as_inputs(case):
    with host_overhead.stubbed_launchers(), host_overhead.fastgpt.use_backend("triton"):
        _, layers = host_overhead.CASES[case]()
        for name in ("public", "function"):
            for grad in layers[name]():          # autograd raises on a wrongly shaped gradient
                assert grad is not None


def test_eager_calls_the_implementation_and_tracing_the_op(monkeypatch):
    calls = []

    def impl(*args):
        calls.append("impl")
        return args

    def op(*args):
        calls.append("op")
        return args

    with torch.no_grad():
        call_custom_op(op, impl, 1)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        call_custom_op(op, impl, 2)
        monkeypatch.undo()
        from torch._subclasses.fake_tensor import FakeTensorMode
        with FakeTensorMode():
            call_custom_op(op, impl, 3)
    call_custom_op(op, impl, 4)                    # grad mode on (a create_graph backward): the op
    assert calls == ["impl", "op", "op", "op"]


def test_op_and_implementation_agree_on_layernorm(device):
    # the op's registered implementation is the plain function: same launchers, same numbers
    x, r = torch.randn(37, 48, device=device), torch.randn(37, 48, device=device)
    w, b = torch.randn(48, device=device), torch.randn(48, device=device)
    with torch.no_grad():
        via_op = layernorm._add_layernorm_fwd_op(x, r, w, b, 1e-5, "triton")
        direct = layernorm._add_layernorm_fwd_impl(x, r, w, b, 1e-5, "triton")
    for a, c in zip(via_op, direct):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
