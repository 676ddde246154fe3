"""Eager fast path of the fused ops' torch.library custom ops.

Every fused op's kernels are wrapped as torch.library custom ops (with fake implementations),
which is what lets torch.compile(fullgraph=True) trace through them. In eager mode the same
round trip costs host time on every call, for nothing: the dispatcher, and above all the
autograd wrapper that torch.library puts around a custom op, which runs whenever an input
requires grad (as inside our autograd Functions) even though grad mode is off there. Measured on
CPU with the launchers stubbed (benchmarks/host_overhead.py), the round trip was 10-30 us per
op call, several times the Python implementation it ends in; an eager GPT-2 step makes about
100 such calls, and on the H100 the eager step is host-bound.

So each op is defined as a plain function, registered with
`torch.library.custom_op(name, mutates_args=())(fn)` (both handles kept), and called through
`call_custom_op(op, fn, *args)`: the plain function in eager mode, the op while torch.compile /
torch.export trace (Dynamo then records the op in the graph), while a TorchDispatchMode is
active (FakeTensorMode, make_fx, FlopCounterMode, ... must see the op, not the Triton launch),
and under grad mode: our autograd Functions run the ops with grad mode off, so it is on only in
a backward with create_graph=True, where the op's autograd wrapper keeps raising "no autograd
formula" for a double backward instead of the plain function recording a partial graph.
The results are the same either way: the op's implementation *is* the plain function.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

_replayed: contextvars.ContextVar[bool] = contextvars.ContextVar("fastgpt_replayed", default=False)


@contextlib.contextmanager
def replayed_steps() -> Iterator[None]:
    """Mark the enclosed work as recorded once and replayed (a CUDA graph): launches cost nothing
    there, so ops that trade host time for GPU time take the GPU-time side (launch_bound()).
    GraphedTrainStep wraps its warm-up steps and its capture in it, so that whatever the capture
    launches was compiled and loaded before (no module may be loaded while a stream captures)."""
    token = _replayed.set(True)
    try:
        yield
    finally:
        _replayed.reset(token)


def launch_bound() -> bool:
    """True when an extra kernel launch costs more than it saves: eager execution, where every
    Triton launch costs tens of microseconds of host time (about 85 us on the H100 machine,
    benchmarks/host_profile.py) and a GPT-2 step is host-bound. False inside replayed_steps() and
    while torch.compile traces (its graph launches the custom ops' kernels with little host work).

    Ask in a forward, never in a backward: autograd runs a CUDA backward on its own thread, which
    does not see the caller's replayed_steps() (a ContextVar), so there the answer is always
    True. A Function whose backward depends on it decides in its forward and keeps the answer in
    ctx (fastgpt.ops.mlp's c_proj bias gradient)."""
    return not (torch.compiler.is_compiling() or _replayed.get())   # dynamo reads no ContextVar


def call_custom_op(op: Callable, fn: Callable, *args):
    """op(*args) when a compiler or dispatch mode must see the custom op, else fn(*args) directly."""
    if torch.compiler.is_compiling() or is_in_torch_dispatch_mode() or torch.is_grad_enabled():
        return op(*args)
    return fn(*args)


def absent(like: torch.Tensor) -> torch.Tensor:
    """The stand-in for an optional output that is not there. Custom ops return tensors only, so
    None crosses the op boundary as a 0-element tensor; the autograd Functions turn it back."""
    return like.new_empty(0)
