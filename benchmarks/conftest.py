"""Shared machinery of the GPU benchmarks (pytest-benchmark).

Every benchmark times one callable with `timing.measure(benchmark, fn, ...)` (see timing.py).
Without a GPU every benchmark is skipped, with that reason.

Run:  pytest benchmarks/ --benchmark-only --benchmark-json=benchmarks/results/<device>.json
then: python benchmarks/report.py benchmarks/results/<device>.json > benchmarks/RESULTS.md
"""
import gc
import os
from pathlib import Path

import pytest
import torch

from timing import BASELINE_KEY, COPY_BYTES, copy_step, environment

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="benchmarks time GPU kernels: no CUDA GPU here")


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if not HAS_CUDA:
        for item in items:   # the hook sees the whole session: tests/ collected beside us run
            if HERE in Path(item.path).resolve().parents:
                item.add_marker(requires_cuda)


@pytest.fixture(scope="session")
def copy_gbps():
    """Device-to-device copy bandwidth (read + write) in GB/s: the ceiling of every floor."""
    import triton.testing

    ms = triton.testing.do_bench(copy_step(), warmup=50, rep=300, return_mode="median")
    return 2 * COPY_BYTES / (ms * 1e-3) / 1e9


@pytest.fixture(autouse=True)
def _fresh_memory_stats(request):
    """Each benchmark's peak memory counts only what it allocates itself: the garbage of the
    benchmarks before it is collected and the peak reset, and what is still allocated then (an
    earlier row's CUDA-graph pool or cache; run 110 saw a module row read 0.707 GiB after another
    row and 0.580 alone) is its baseline, which timing.measure subtracts (recorded beside it)."""
    if HAS_CUDA:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if "benchmark" in request.fixturenames:
            request.getfixturevalue("benchmark").extra_info[BASELINE_KEY] = torch.cuda.memory_allocated()
    yield


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fastgpt"] = {
        "command": " ".join(["pytest"] + list(config.invocation_params.args)),
        "cwd": os.getcwd(),
        **(environment() if HAS_CUDA else {}),
    }
