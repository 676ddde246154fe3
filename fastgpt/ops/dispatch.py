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

Importing this module also bounds one error message of inductor (bound_inductor_operator_messages,
below): without it torch.compile of the whole model on a GPU did not finish.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

_replayed: contextvars.ContextVar[bool] = contextvars.ContextVar("fastgpt_replayed", default=False)
# the DeferredColumnSums (kernels/common.py) that ops forwarded inside deferred_column_sums() give
# their backward, and the one sum_partials records into on this thread (an op's backward runs on
# autograd's thread, which sees no ContextVar of the forward's)
_column_sums: contextvars.ContextVar = contextvars.ContextVar("fastgpt_column_sums", default=None)
_sums_here = threading.local()


def _ir_summary(arg):
    """An inductor IR node as its class, name, size and dtype; other values (and lists of them) as they are."""
    if isinstance(arg, (list, tuple)):
        return type(arg)(_ir_summary(a) for a in arg)
    if not type(arg).__module__.startswith("torch._inductor.ir"):
        return arg
    fields = []
    for label, getter in (("name", "get_name"), ("size", "get_size"), ("dtype", "get_dtype")):
        try:
            fields.append(f"{label}={getattr(arg, getter)()}")
        except Exception:      # views and boxes without a name or layout
            pass
    return f"{type(arg).__name__}({', '.join(fields)})"


def bound_inductor_operator_messages() -> None:
    """Make inductor describe an operator's IR arguments by name, size and dtype, never by str().

    inductor's OperatorIssue.operator_str, which builds the message of a lowering error and of
    its "Creating implicit fallback" log line for an op without a lowering (every fastgpt custom
    op), prints each IR argument with str(), and IRNode.__str__ prints the node's inputs, their
    inputs, and so on, with no memo: over a DAG as deep as a 12-layer GPT built of opaque custom
    ops that takes exponential time. On the H100 with torch 2.11 the benchmark's torch.compile of
    the triton-backend GPT (run under pytest) sat in that recursion for minutes (runs 17 and 27:
    benchmarks/results/runs/logs/run27-stacks-triton-compile-last.txt); with this bound it compiled
    and ran (run 28). Which call reached the message there was not pinned down: in a plain script
    the same compile never called it (run 28's logs/run28-compile-diag.log). vLLM bounds the same
    function for the same reason (vllm-project/vllm#43111; pytorch/pytorch#139501). Idempotent; a
    torch without that function is left alone."""
    try:
        from torch._inductor.exc import OperatorIssue
    except ImportError:
        return
    original = OperatorIssue.__dict__.get("operator_str")
    if not isinstance(original, staticmethod) or getattr(original.__func__, "_fastgpt_bounded", False):
        return

    def operator_str(target, args, kwargs):
        return original.__func__(target, _ir_summary(list(args)), {k: _ir_summary(v) for k, v in kwargs.items()})

    operator_str._fastgpt_bounded = True
    OperatorIssue.operator_str = staticmethod(operator_str)


bound_inductor_operator_messages()


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


@contextlib.contextmanager
def deferred_column_sums(sums) -> Iterator[None]:
    """Ops whose forward runs inside leave their backward's column sums (kernels/common.sum_partials)
    to `sums`, a kernels.common.DeferredColumnSums whose flush() the caller runs once the backward
    is done (None: they run in place). Only where every such sum's output reaches autograd as a
    leaf's first gradient, uncast (GraphedTrainStep's step on parameter copies)."""
    token = _column_sums.set(sums)
    try:
        yield
    finally:
        _column_sums.reset(token)


def column_sums_deferral():
    """The DeferredColumnSums of the enclosing deferred_column_sums() (an op's forward keeps it in
    ctx for its backward), or None; None while torch.compile traces (Dynamo reads no ContextVar)."""
    return None if torch.compiler.is_compiling() else _column_sums.get()


def deferring(sums) -> contextlib.AbstractContextManager:
    """sum_partials calls on this thread inside go to `sums` (None: they run as usual, and nothing
    is set: traceable by Dynamo): an op's backward wraps its kernels in it, with the
    DeferredColumnSums its forward saw."""
    return contextlib.nullcontext() if sums is None else _deferring(sums)


@contextlib.contextmanager
def _deferring(sums) -> Iterator[None]:
    previous = getattr(_sums_here, "sums", None)
    _sums_here.sums = sums
    try:
        yield
    finally:
        _sums_here.sums = previous


def sums_deferred_here():
    """The DeferredColumnSums sum_partials records into on this thread, or None."""
    return getattr(_sums_here, "sums", None)


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
