"""Helpers for checking kernels against references: relative error, poisoned outputs.

Used by tests/ and benchmarks/ alike; tolerances are relative errors
||out - ref|| / ||ref|| (METHOD: fp32 far under 1e-3, tf32 ~3e-4, bf16 1e-3..1e-2).
"""
from __future__ import annotations

import torch

# Relative-error bounds by the dtype the kernel computes in.
REL_TOL = {torch.float32: 2e-3, torch.float16: 5e-3, torch.bfloat16: 2e-2, torch.float64: 1e-10}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; inf when out holds NaN or Inf."""
    out64, ref64 = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out64).all():
        return float("inf")
    return ((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30)).item()


def assert_rel_close(out: torch.Tensor, ref: torch.Tensor, tol: float, name: str = "output") -> None:
    if out.shape != ref.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    err = rel_error(out, ref)
    if not err <= tol:
        raise AssertionError(f"{name}: relative error {err:.3e} > {tol:.1e}")


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill with NaN (floats) so any element a kernel fails to write makes the check fail."""
    return t.fill_(float("nan"))
