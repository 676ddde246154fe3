"""Timing for the GPU benchmarks: `measure(benchmark, fn, ...)`.

Warm-up, then pytest-benchmark's rounds (host clock, the call synchronizes inside), and the
median of `triton.testing.do_bench` (CUDA events), which is the number we report. FLOPs and
bytes go into extra_info so the saved JSON carries TFLOP/s and GB/s beside the times.
"""
import platform

import torch

HAS_CUDA = torch.cuda.is_available()


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
