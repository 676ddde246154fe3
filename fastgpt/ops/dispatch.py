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

from typing import Callable

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def call_custom_op(op: Callable, fn: Callable, *args):
    """op(*args) when a compiler or dispatch mode must see the custom op, else fn(*args) directly."""
    if torch.compiler.is_compiling() or is_in_torch_dispatch_mode() or torch.is_grad_enabled():
        return op(*args)
    return fn(*args)


def absent(like: torch.Tensor) -> torch.Tensor:
    """The stand-in for an optional output that is not there. Custom ops return tensors only, so
    None crosses the op boundary as a 0-element tensor; the autograd Functions turn it back."""
    return like.new_empty(0)
