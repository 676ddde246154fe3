"""Shared machinery of the GPU benchmarks (pytest-benchmark).

Every benchmark times one callable with `measure(benchmark, fn, ...)`: warm-up, then
pytest-benchmark's rounds (host clock, the call synchronizes inside), and the median of
`triton.testing.do_bench` (CUDA events) which is the number we report. FLOPs and bytes
go into extra_info so the saved JSON carries TFLOP/s and GB/s beside the times.

Run:  pytest benchmarks/ --benchmark-only --benchmark-json=benchmarks/results/<device>.json
then: python benchmarks/report.py benchmarks/results/<device>.json > benchmarks/RESULTS.md
"""
import os
import platform

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="benchmarks time GPU kernels: no CUDA GPU here")


def pytest_collection_modifyitems(config, items):
    if not HAS_CUDA:
        for item in items:
            item.add_marker(requires_cuda)


def environment() -> dict:
    import triton
    return {
        "device": torch.cuda.get_device_name() if HAS_CUDA else "cpu",
        "torch": torch.__version__, "triton": triton.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
    }


def measure(benchmark, fn, *, flops: float | None = None, bytes_moved: float | None = None,
            rounds: int = 20, **info) -> float:
    """Time fn on the GPU; return the do_bench median in ms and record it in extra_info."""
    import triton.testing

    def synced():
        fn()
        torch.cuda.synchronize()

    for _ in range(3):
        synced()                         # compile/autotune/cuBLAS handles out of the numbers
    ms = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
    benchmark.pedantic(synced, rounds=rounds, iterations=1, warmup_rounds=2)
    extra = benchmark.extra_info
    extra.update(environment())
    extra.update(info)
    extra["median_ms"] = ms
    if flops is not None:
        extra["tflops"] = flops / (ms * 1e-3) / 1e12
    if bytes_moved is not None:
        extra["gbps"] = bytes_moved / (ms * 1e-3) / 1e9
    extra["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return ms


@pytest.fixture(autouse=True)
def _fresh_memory_stats():
    if HAS_CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fastgpt"] = {
        "command": " ".join(["pytest"] + list(config.invocation_params.args)),
        "cwd": os.getcwd(),
        **(environment() if HAS_CUDA else {}),
    }
