"""In-process A/B of bench_train_step's graphed training step: variants of the code, each captured
as its own CUDA graph in one process, timed sustained, back to back, alternating.

Why one process: from machine to machine the step moves by ~1-3% (NOTES.md), more than most
levers; in one process the variants share the GPU, and alternating rounds share its drift.
Why sustained only (timing.sustained, the second half's median at the power cap): in one process
the graph built second ran ~2 ms slower in do_bench's 0.3 s window than the same graph built first,
but not sustained (run 205's A/A control; NOTES.md, session 27). With `control=True` the first
variant is built once more, last, so every comparison carries its own A/A noise.

A variant is a name and a context-manager factory that is active while its graph is built and
captured (what the capture records stays): a patched function (unittest.mock.patch.object), an
environment variable read at build time (mock.patch.dict(os.environ, ...)). A probe is then a few
lines:

    from unittest import mock
    from ab_step import Variant, compare
    compare([Variant("tree"),
             Variant("ln-twice", lambda: mock.patch.object(FusedAddLayerNorm, "forward", twice))])

Each round prints one line a variant (ms a step, SM clock, board power, temperature, energy a
step); the summary gives each variant's median and its difference to the first's.

The kernels a change touches are timed beside the step: compare_kernels alternates timers (each
a kernel's launch as CUDA-graph replays, timing.replay_timer) over rounds and prints the paired
differences; from run 236 on probes take it and replay_timer rather than copies of their own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from statistics import median
from typing import Callable, ContextManager

from timing import joules_per_step, sustained


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    patched: Callable[[], ContextManager] = contextlib.nullcontext


def build_graphed_step(config: str, warmup_calls: int = 5) -> Callable[[], None]:
    """bench_train_step's step of `config`, called until its graph is captured and replayed."""
    import torch
    from bench_train_step import CONFIGS, build

    _, step = build(CONFIGS[config])
    for _ in range(warmup_calls):
        step()
    torch.cuda.synchronize()
    return step


def compare(variants: list[Variant], rounds: int = 2, seconds: float = 16.0,
            config: str = "triton-adamwcopy-cudagraph", control: bool = True,
            build: Callable[[str], Callable[[], None]] = build_graphed_step,
            timer: Callable[[Callable[[], None], float], dict] = sustained,
            print_fn: Callable[[str], None] = print) -> list[dict]:
    """Build every variant's step (each inside its own patched()), then `rounds` rounds of each run
    back to back `seconds` long, in the variants' order; the rows, one a variant a round."""
    if len({v.name for v in variants}) != len(variants) or not variants:
        raise ValueError("compare needs variants with distinct names")
    if control:
        variants = [*variants, Variant(f"{variants[0].name} (again)", variants[0].patched)]
    steps = {}
    for variant in variants:
        start = time.perf_counter()
        with variant.patched():
            steps[variant.name] = build(config)
        print_fn(f"built {variant.name} in {time.perf_counter() - start:.1f} s")
    rows = []
    for r in range(rounds):
        for variant in variants:
            report = timer(steps[variant.name], seconds)
            row = {"round": r, "variant": variant.name, **report}
            joules = joules_per_step(report)
            if joules is not None:
                row["joules_per_step"] = joules
            rows.append(row)
            print_fn(_row_line(row))
    for line in summary_lines(rows, variants[0].name):
        print_fn(line)
    return rows


def compare_kernels(timers: dict[str, Callable[[], float]], rounds: int = 8, baseline: str | None = None,
                    print_fn: Callable[[str], None] = print) -> dict[str, list[float]]:
    """The kernels' A/B beside the step's: each timer (microseconds a call, timing.replay_timer's) once
    a round, the rounds in the timers' order and its reverse by turns, so that a drift of the GPU's
    clock within a round falls on every side alike; then each timer's times with their min and
    median, and each other timer's differences to `baseline` (the last timer by default) round by
    round with their median. Returns the times by name."""
    names = list(timers)
    baseline = names[-1] if baseline is None else baseline
    if baseline not in timers:
        raise ValueError(f"compare_kernels: no timer named {baseline!r}")
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timers[name]())
    width = max(map(len, names))
    for name, ts in times.items():
        print_fn(f"RESULT {name:{width}s} " + " ".join(f"{t:7.1f}" for t in ts)
                 + f"   min {min(ts):.1f} median {median(ts):.1f} us")
    for name in names:
        if name != baseline:
            diffs = [a - b for a, b in zip(times[name], times[baseline])]
            print_fn(f"RESULT paired ({name} - {baseline}) " + " ".join(f"{d:+6.1f}" for d in diffs)
                     + f"   median {median(diffs):+.1f} us")
    return times


def _row_line(row: dict) -> str:
    state = ", ".join(f"{row[key]:.0f} {unit}" for key, unit in
                      (("sm_clock_mhz", "MHz"), ("power_w", "W"), ("temperature_c", "C")) if key in row)
    energy = f", {row['joules_per_step']:.2f} J/step" if "joules_per_step" in row else ""
    return (f"round {row['round']} {row['variant']}: sustained {row['sustained_ms']:.3f} ms (first half "
            f"{row['sustained_first_half_ms']:.3f})" + (f", {state}" if state else "") + energy)


def summary_lines(rows: list[dict], baseline: str) -> list[str]:
    """Each variant's median sustained ms and its difference to `baseline`'s median."""
    names = list(dict.fromkeys(row["variant"] for row in rows))
    medians = {name: median(row["sustained_ms"] for row in rows if row["variant"] == name) for name in names}
    return [f"{name}: median {medians[name]:.3f} ms ({medians[name] - medians[baseline]:+.3f} against {baseline})"
            for name in names]
