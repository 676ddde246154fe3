"""Timing for the GPU benchmarks: `measure(benchmark, fn, ...)`.

Warm-up, then pytest-benchmark's rounds (host clock, the call synchronizes inside), and the
median of `triton.testing.do_bench` (CUDA events), which is the number we report. FLOPs and
bytes go into extra_info so the saved JSON carries TFLOP/s and GB/s beside the times.

Sustained timing (`measure(..., sustain_s=)`, the training step's benchmark). GPT-2's training
step holds an H100 at its 700 W power cap ("SW power cap" active in every nvidia-smi sample, runs
191-192), and do_bench's 0.3 s window right after a warm-up runs faster than the step keeps up:
the first samples show the clock near its 1980 MHz maximum, then falling as the GPU warms. Run
191 (one H100): fastgpt's graphed step 25.60 ms in that window, 26.52 over 3 s (the compiled
reference 32.18 and 32.60); run 192 (40 s each, the GPU at ~66 C after ~20 s): 26.8 ms at ~1560
MHz against the compiled reference's 33.0 at ~1750 (benchmarks/NOTES.md, session 25). The denser
step loses more. `sustained` runs fn back to back for `sustain_s` seconds in ~1 s slices (CUDA
events, one synchronisation a slice) and reports the median slice of the second half, with the
SM clock, board power and temperature nvidia-smi sampled meanwhile: the rate a training run gets.
"""
import datetime
import platform
import shutil
import subprocess
import time
from statistics import median

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


def replay_timer(fn, calls: int = 10, rep_ms: int = 300):
    """A timer of fn as CUDA-graph replays (the training step's graph has no launch gaps either):
    fn is called once, then `calls` calls of it are captured in one graph; each call of the timer
    returns do_bench's median replay (after a warm-up, over rep_ms) in microseconds a call of fn.
    The kernel A/Bs of benchmarks/ab_step.compare_kernels take these."""
    import triton.testing
    fn()
    torch.cuda.synchronize()
    graph = _capture(lambda: [fn() for _ in range(calls)])
    return lambda: (triton.testing.do_bench(graph.replay, warmup=50, rep=rep_ms, return_mode="median")
                    / calls * 1e3)


# nvidia-smi's fields sampled beside sustained timing (power.draw.instant: drivers >= 530; older ones
# get power.draw, a 1 s average), and the keys they are reported under
GPU_SAMPLE_FIELDS = (("clocks.sm", "sm_clock_mhz"), ("power.draw.instant", "power_w"), ("temperature.gpu", "temperature_c"))
GPU_SAMPLE_PERIOD_MS = 200


def _nvidia_smi_ids() -> list[str]:
    """The current CUDA device as nvidia-smi's -i may take it: its PCI address (CUDA's numbering
    need not be nvidia-smi's) where torch says it, then CUDA's index."""
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    ids = [str(index)]
    if hasattr(props, "pci_bus_id"):
        ids.insert(0, f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0")
    return ids


class GpuSampler:
    """nvidia-smi sampling the current GPU every GPU_SAMPLE_PERIOD_MS while the `with` block runs:
    `rows`, one (seconds since the block began, {key: value}) per sample, dated by nvidia-smi's own
    timestamp of the sample rather than by counting periods from the block's start (nvidia-smi's
    start-up and the pace of its samples are its own); none where nvidia-smi is missing or answers
    neither id."""

    def __enter__(self):
        self.rows, self._process = [], None
        smi = shutil.which("nvidia-smi")
        fields = [field for field, _ in GPU_SAMPLE_FIELDS]

        def answers(device: str, field: str) -> bool:
            return subprocess.run([smi, "-i", device, f"--query-gpu={field}", "--format=csv,noheader"],
                                  capture_output=True).returncode == 0
        device = next((d for d in _nvidia_smi_ids() if answers(d, fields[0])), None) if smi else None
        if device is None:
            return self
        if not answers(device, fields[1]):
            fields[1] = "power.draw"
        self._process = subprocess.Popen([smi, "-i", device, f"--query-gpu=timestamp,{','.join(fields)}",
                                          "--format=csv,noheader,nounits", "-lms", str(GPU_SAMPLE_PERIOD_MS)],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.started = time.time()
        return self

    def __exit__(self, *exc):
        if self._process is None:
            return
        self._process.terminate()
        self.rows = dated_samples(self._process.communicate()[0].strip().splitlines(), self.started)


def dated_samples(lines: list[str], started: float) -> list[tuple[float, dict]]:
    """GpuSampler's rows from nvidia-smi's lines ("timestamp, value, ...": the timestamp in local
    time, as time.time() counts it), dated in seconds since `started` (a time.time())."""
    keys = [key for _, key in GPU_SAMPLE_FIELDS]
    rows = []
    for line in lines:
        stamp, *fields = line.split(",")
        try:
            at = datetime.datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            values = [float(v) for v in fields]
        except ValueError:       # "[N/A]" or a line cut by the termination
            continue
        if len(values) == len(keys):
            rows.append((at - started, dict(zip(keys, values))))
    return rows


def summarize_sustained(slices: list[tuple[float, float]], samples: list[tuple[float, dict]],
                        seconds: float) -> dict:
    """sustained()'s report from its slices ((start s, ms a call)) and GPU samples ((s, {key: value})):
    the medians over the second half of the `seconds` (the GPU's clock and temperature settle
    first), the first half's median beside them."""
    later = [ms for t, ms in slices if t >= seconds / 2] or [slices[-1][1]]
    earlier = [ms for t, ms in slices if t < seconds / 2] or later
    report = {"sustained_ms": median(later), "sustained_first_half_ms": median(earlier),
              "sustained_s": seconds, "sustained_slices": len(slices)}
    later_samples = [values for t, values in samples if t >= seconds / 2]
    for _, key in GPU_SAMPLE_FIELDS:
        values = [v[key] for v in later_samples if key in v]
        if values:
            report[key] = median(values)
    return report


def joules_per_step(report: dict) -> float | None:
    """A sustained report's (or a benchmark row's) energy a call: board power times ms a call (at
    the power cap a step's time is its energy over the capped power); None without both."""
    if "power_w" not in report or "sustained_ms" not in report:
        return None
    return report["power_w"] * report["sustained_ms"] / 1e3


def sustained(fn, seconds: float, slice_s: float = 1.0) -> dict:
    """fn (one call: a training step) run back to back for `seconds` in ~slice_s slices; the report
    of summarize_sustained (ms a call once the GPU has settled at its power cap and temperature)."""
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    calls = max(1, round(slice_s / max(time.perf_counter() - start, 1e-6)))
    slices = []
    with GpuSampler() as sampler:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t = time.perf_counter() - start
            begin.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            slices.append((t, begin.elapsed_time(end) / calls))
    return summarize_sustained(slices, sampler.rows, seconds)


def measure(benchmark, fn, *, flops: float | None = None, bytes_moved: float | None = None,
            rounds: int = 20, graph: bool = True, sustain_s: float = 0.0, **info) -> float:
    """Time fn on the GPU; return the reported median in ms and record it in extra_info.

    With graph=True (the op benchmarks) fn is also captured in a CUDA graph and the replay
    time is the one reported: at these sizes one launch of an op takes 0.1-1 ms of GPU time,
    about what PyTorch's eager dispatch (custom op, autograd) costs on the host, so plain
    timing would measure the host, not the kernels. Every implementation, ours and the
    references, is timed the same way, and the plain (eager) median is kept as eager_ms.
    A function that cannot be captured is reported with its eager time and the reason.
    With sustain_s > 0 the timed callable then runs for that long (`sustained`): extra_info's
    sustained_ms beside median_ms, with the GPU's clock, power and temperature meanwhile.
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
    if sustain_s > 0:
        extra.update(sustained(timed, sustain_s))
    if flops is not None:
        extra["tflops"] = flops / (ms * 1e-3) / 1e12
    if bytes_moved is not None:
        extra["gbps"] = bytes_moved / (ms * 1e-3) / 1e9
    return ms
