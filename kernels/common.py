"""Helpers the kernel families share (no kernels here)."""
from __future__ import annotations

import functools

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
