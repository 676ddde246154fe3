"""The one switch that decides how each fused op runs.

Backends:
  torch   the pure-PyTorch reference of every op (test oracle and CPU fallback)
  triton  our Triton kernels (on CPU tensors only under TRITON_INTERPRET=1)
  cuda    the optional compiled extension `fastgpt._C`; ops it lacks run as triton
  auto    triton for CUDA tensors, torch otherwise (the default); an op whose kernels cannot take
          the arguments at hand (e.g. attention with head dim 8) runs on torch, with a warning

The active name comes, first match wins, from `use_backend(...)` / `set_backend(...)`,
then the environment variable FASTGPT_BACKEND, then "auto". Every op in `fastgpt.ops`
is an `Op` with one implementation per backend; `Op.__call__` asks `resolve(device)`
which one to run. No other module branches on the backend.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import warnings
from typing import Callable, Iterator

import torch

BACKENDS = ("torch", "triton", "cuda")
CHOICES = ("auto",) + BACKENDS
# Where a backend has no implementation of an op, the next one in this chain runs it.
FALLBACK = {"cuda": "triton", "triton": None, "torch": None}

_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastgpt_backend", default=None)


class BackendError(RuntimeError):
    """A backend was asked for that cannot run here (no GPU, no Triton, extension not built)."""


def _check_name(name: str) -> str:
    name = name.lower().strip()
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    return name


def set_backend(name: str) -> None:
    """Select the backend for this context from now on ("auto", "torch", "triton", "cuda")."""
    _selected.set(_check_name(name))


def get_backend() -> str:
    """The selected backend name, before resolution ("auto" unless something chose)."""
    chosen = _selected.get()
    if chosen is not None:
        return chosen
    return _check_name(os.environ.get("FASTGPT_BACKEND", "auto"))


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Context manager: run the enclosed ops on backend `name`, then restore the previous one."""
    token = _selected.set(_check_name(name))
    try:
        yield name
    finally:
        _selected.reset(token)


def interpreter_mode() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def autotuning() -> bool:
    """False when FASTGPT_AUTOTUNE=0: every autotuned kernel then runs one pinned configuration.

    For test runs on a GPU: each test shape would otherwise compile and time every configuration
    (minutes over the suite) to check results that do not depend on the tile. Read when a kernel
    family is imported, like TRITON_INTERPRET."""
    return os.environ.get("FASTGPT_AUTOTUNE", "1") not in ("0", "")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def cuda_extension_available() -> bool:
    from fastgpt import _cuda  # deferred: loading the extension may build it

    return _cuda.load() is not None   # builds it (JIT, cached) on first use where it can


def resolve(device: torch.device | str | None = None) -> str:
    """Turn the selected name into the backend that runs on `device`, or raise BackendError."""
    name = get_backend()
    device = torch.device(device) if device is not None else None
    on_gpu = device is not None and device.type == "cuda"
    if name == "auto":
        return "triton" if on_gpu and triton_available() else "torch"
    if name == "triton":
        if not triton_available():
            raise BackendError("backend 'triton' needs the triton package: pip install triton")
        if device is not None and not on_gpu and not interpreter_mode():
            raise BackendError(
                f"backend 'triton' got a tensor on {device}; Triton kernels run on CUDA tensors, "
                "or on CPU tensors with TRITON_INTERPRET=1 (slow, for testing)")
    if name == "cuda":
        if device is not None and not on_gpu:
            raise BackendError(f"backend 'cuda' got a tensor on {device}; it runs on CUDA tensors only")
        if not cuda_extension_available():
            from fastgpt import _cuda

            raise BackendError("backend 'cuda' needs the compiled extension fastgpt._C, which is "
                               "not built. " + _cuda.BUILD_HINT)
    return name


@torch.compiler.assume_constant_result
def _auto_selected() -> bool:
    # as _resolve_device_type below: read at trace time, a constant in the graph
    return get_backend() == "auto"


@torch.compiler.assume_constant_result
def _resolve_device_type(device_type: str) -> str:
    # torch.compile cannot trace the ContextVar and environment reads in resolve(); this
    # wrapper runs them at trace time and bakes the answer into the graph as a constant (so a
    # compiled model keeps the backend it was traced with; recompile after switching).
    return resolve(torch.device(device_type))


class Op:
    """One fused operation with an implementation per backend.

    >>> add_layernorm = Op("add_layernorm")
    >>> @add_layernorm.register("torch")
    ... def add_layernorm_reference(x, residual, weight, bias, eps): ...
    """

    def __init__(self, name: str):
        self.name = name
        self.impls: dict[str, Callable] = {}
        self.unsupported: dict[str, Callable[..., str | None]] = {}
        self._warned: set[str] = set()

    def register(self, backend: str, unsupported: Callable[..., str | None] | None = None
                 ) -> Callable[[Callable], Callable]:
        """Decorator: fn implements this op on `backend`. `unsupported(*args, **kwargs)`, if given,
        says why that implementation cannot take these arguments (None when it can); under "auto"
        the op then runs its torch implementation instead (a backend chosen by name keeps its own
        error, which the implementation raises)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")

        def decorator(fn: Callable) -> Callable:
            self.impls[backend] = fn
            if unsupported is not None:
                self.unsupported[backend] = unsupported
            return fn

        return decorator

    def _provider(self, backend: str) -> str:
        """The backend whose implementation runs for `backend`, following FALLBACK."""
        name: str | None = backend
        while name is not None:
            if name in self.impls:
                return name
            name = FALLBACK[name]
        raise BackendError(f"op {self.name!r} has no implementation for backend {backend!r}")

    def implementation(self, backend: str) -> Callable:
        return self.impls[self._provider(backend)]

    def __call__(self, *args, device: torch.device, **kwargs):
        provider = self._provider(_resolve_device_type(device.type))
        check = self.unsupported.get(provider)
        if check is not None and _auto_selected():
            why = check(*args, **kwargs)
            if why is not None:
                if why not in self._warned:
                    self._warned.add(why)
                    warnings.warn(f"fastgpt: {self.name} runs on the torch backend here: {why} "
                                  f"(backend 'auto'; choose one by name to make this an error)",
                                  RuntimeWarning, stacklevel=3)
                return self.impls["torch"](*args, **kwargs)
        return self.impls[provider](*args, **kwargs)

    def __repr__(self) -> str:
        return f"Op({self.name!r}, backends={sorted(self.impls)})"
