"""Helpers the kernel families share (no kernels here)."""
from __future__ import annotations

import functools
import os

import torch


@functools.lru_cache(maxsize=None)
def _multiprocessor_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def sm_count(device: torch.device, interpreter_programs: int) -> int:
    """Multiprocessors of a CUDA device (cached: the query is not free on every launch), which
    persistent grids are sized by; on CPU tensors (the Triton interpreter) `interpreter_programs`,
    the few sequential programs a family wants its CPU tests to walk through."""
    if device.type != "cuda":
        return interpreter_programs
    return _multiprocessor_count(device)


def autotuning() -> bool:
    """False when FASTGPT_AUTOTUNE=0: every autotuned kernel then runs one pinned configuration.

    For test runs on a GPU: each test shape would otherwise compile and time every configuration
    (minutes over the suite) to check results that do not depend on the tile. Read when a kernel
    family is imported, like TRITON_INTERPRET."""
    return os.environ.get("FASTGPT_AUTOTUNE", "1") not in ("0", "")


def tuning_configs(configs: list, pinned, interpreter) -> list:
    """The configurations one kernel autotunes over: [interpreter] under TRITON_INTERPRET=1 (one
    small tile keeps CPU tests quick), [pinned] with FASTGPT_AUTOTUNE=0 (a tile that fits shared
    memory for every dtype and head size the family takes, fp32 included), else all of `configs`."""
    from fastgpt.backend import interpreter_mode

    if interpreter_mode():
        return [interpreter]
    return configs if autotuning() else [pinned]
