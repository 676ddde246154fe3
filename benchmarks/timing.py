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


COPY_BYTES = 2**30                       # 1 GiB read + 1 GiB written
# extra_info key of the bytes allocated before a benchmark began (conftest's fixture sets it)
BASELINE_KEY = "memory_baseline_bytes"


def peak_memory_gib(extra: dict) -> float:
    """The peak of allocated memory since the benchmark began, less what was allocated before it
    (extra[BASELINE_KEY], 0 where absent): the benchmark's own inputs, outputs and working memory."""
    return (torch.cuda.max_memory_allocated() - extra.get(BASELINE_KEY, 0)) / 2**30


def copy_step():
    """A device-to-device copy of COPY_BYTES: the ceiling the memory-bound ops are held to
    (the session fixture copy_gbps in conftest.py times it once)."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def step(forward, args, leaves, grad_outputs, mode: str):
    """The callable a benchmark times: forward(*args) alone (mode "fwd"), or the forward and the
    gradients of `leaves` given `grad_outputs` (mode "fwd_bwd")."""
    if mode == "fwd":
        return lambda: forward(*args)
    return lambda: torch.autograd.grad(forward(*args), leaves, grad_outputs)


def _capture(fn):
    """fn recorded once as a CUDA graph (warmed on a side stream, as torch.cuda.graph asks)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def measure(benchmark, fn, *, flops: float | None = None, bytes_moved: float | None = None,
            rounds: int = 20, graph: bool = True, **info) -> float:
    """Time fn on the GPU; return the reported median in ms and record it in extra_info.

    With graph=True (the op benchmarks) fn is also captured in a CUDA graph and the replay
    time is the one reported: at these sizes one launch of an op takes 0.1-1 ms of GPU time,
    about what PyTorch's eager dispatch (custom op, autograd) costs on the host, so plain
    timing would measure the host, not the kernels. Every implementation, ours and the
    references, is timed the same way, and the plain (eager) median is kept as eager_ms.
    A function that cannot be captured is reported with its eager time and the reason.
    """
    import triton.testing

    def synced(call=fn):
        call()
        torch.cuda.synchronize()

    for _ in range(3):
        synced()                         # compile/autotune/cuBLAS handles out of the numbers
    eager_ms = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
    extra = benchmark.extra_info
    extra.update(environment())
    extra.update(info)
    extra["peak_mem_gib"] = peak_memory_gib(extra)
    extra["eager_ms"] = eager_ms
    ms, timed = eager_ms, fn
    if graph:
        try:
            replay = _capture(fn).replay
            ms = triton.testing.do_bench(replay, warmup=50, rep=300, return_mode="median")
            timed = replay
            extra["timing"] = "cuda graph replay"
        except Exception as err:   # noqa: BLE001 - reported, and the eager time stands
            extra["timing"] = f"eager (graph capture failed: {type(err).__name__}: {err})"[:300]
    else:
        extra["timing"] = "eager"
    benchmark.pedantic(lambda: synced(timed), rounds=rounds, iterations=1, warmup_rounds=2)
    extra["median_ms"] = ms
    if flops is not None:
        extra["tflops"] = flops / (ms * 1e-3) / 1e12
    if bytes_moved is not None:
        extra["gbps"] = bytes_moved / (ms * 1e-3) / 1e9
    return ms
