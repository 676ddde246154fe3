"""benchmarks/host_overhead.py: its stubs stand in for the launchers faithfully (autograd checks
every gradient's shape against its input's), every layer of every op runs, the launchers are
restored afterwards. (The eager fast path it measured is tested in test_dispatch.py.)"""
import importlib
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import host_overhead  # noqa: E402


# The stubbed measurement runs the triton backend on CPU tensors, which it accepts only in the
# Triton interpreter (tests/conftest.py turns that on where there is no GPU).
pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="benchmarks/host_overhead.py measures on CPU; this machine runs Triton on its GPU")


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
