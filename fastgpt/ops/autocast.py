"""Autocast for the fused ops.

torch.autocast casts the inputs of the PyTorch ops it knows (F.linear to bf16, F.layer_norm
to fp32, ...) but not of our custom ops. Each fused op's public function calls
`autocast_inputs` once, so that under autocast every floating input arrives in the autocast
dtype, as for F.linear: one dtype inside each kernel, and gradients flow back through the cast
to the fp32 parameters. Outside autocast it returns its inputs unchanged.

Under autocast this makes the residual stream of the fused model bf16 (as llm.c), where the
PyTorch reference keeps it in fp32; the convergence check (benchmarks/convergence.py)
measures what that costs.
"""
from __future__ import annotations

import torch


def autocast_inputs(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """The tensors cast to the autocast dtype of their device when autocast is on there."""
    first = next((t for t in tensors if t is not None), None)
    if first is None:
        return tensors
    device_type = first.device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)


def _gradient_buffers(grads: list[torch.Tensor], dtypes: list[torch.dtype]) -> list[torch.Tensor]:
    """Empty tensors shaped as `grads`, in `dtypes`: consecutive slices of one buffer when the
    dtypes agree. Autograd keeps them as the parameters' .grad (it takes a fresh gradient
    without copying it), so all gradients then lie in one buffer, which a multi-GPU step
    all-reduces as one collective in place (fastgpt.distributed.all_reduce_gradients)."""
    if len(set(dtypes)) != 1:
        return [torch.empty_like(g, dtype=d) for g, d in zip(grads, dtypes)]
    flat = torch.empty(sum(g.numel() for g in grads), dtype=dtypes[0], device=grads[0].device)
    return [piece.view(g.shape) for piece, g in zip(flat.split([g.numel() for g in grads]), grads)]


class _CastParameters(torch.autograd.Function):
    """(dtype, *params) -> the params' copies in dtype, made by one multi-tensor copy; the
    backward casts the copies' gradients back to each param's dtype the same way."""

    @staticmethod
    def forward(ctx, dtype, *params):
        copies = [torch.empty_like(p, dtype=dtype) for p in params]
        torch._foreach_copy_(copies, list(params))
        ctx.dtypes = [p.dtype for p in params]
        ctx.set_materialize_grads(False)     # an unused copy's gradient stays None
        return tuple(copies)

    @staticmethod
    def backward(ctx, *grads):
        present = [i for i, g in enumerate(grads) if g is not None]
        out: list[torch.Tensor | None] = [None] * len(grads)
        if present:
            full = _gradient_buffers([grads[i] for i in present], [ctx.dtypes[i] for i in present])
            torch._foreach_copy_(full, [grads[i] for i in present])
            for i, g in zip(present, full):
                out[i] = g
        return (None, *out)


def cast_once_forward(model: torch.nn.Module, *args, **kwargs):
    """model(*args, **kwargs) with every floating parameter cast to the autocast dtype up front.

    What autocast would do anyway, in fewer kernels: under autocast each op casts the fp32
    parameters it uses (F.linear, and the fused ops through autocast_inputs), a kernel per
    parameter in the forward and another per gradient in the backward: about 320 small copies
    in a GPT-2 step, 1.2 ms of GPU time on the H100 (run 8, kernels-triton.md). Here one
    multi-tensor copy (torch._foreach_copy_) makes all the copies, the model runs on them
    (torch.func.functional_call; tied weights stay tied), and the backward casts their
    gradients back in one more; the fp32 parameters get fp32 gradients as before.

    Numerics: the same bf16 weights reach every GEMM and kernel; what differs from plain
    autocast is that ops autocast leaves in fp32 (the embeddings) now run in the autocast
    dtype too, so the token + position sum is rounded once more and the embedding gradient
    (tied with the LM head's) is summed in the autocast dtype before its cast to fp32.

    Plain model(*args) outside autocast, and for a DistributedDataParallel or torch.compile'd
    model (DDP overlaps its all-reduce with the backward per parameter, which one cast at the
    very end would defeat; a compiled model fuses the casts itself).
    """
    params = dict(model.named_parameters())
    first = next(iter(params.values()), None)
    if (first is None or not torch.is_autocast_enabled(first.device.type)
            or isinstance(model, torch.nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod")):
        return model(*args, **kwargs)
    dtype = torch.get_autocast_dtype(first.device.type)
    names = [n for n, p in params.items() if p.is_floating_point() and p.dtype != dtype]
    if not names:
        return model(*args, **kwargs)
    copies = _CastParameters.apply(dtype, *(params[n] for n in names))
    return torch.func.functional_call(model, dict(zip(names, copies)), args, kwargs)


class ParameterCopies:
    """Persistent copies of a model's fp32 parameters in the autocast dtype, kept up to date by an
    optimizer that writes them (fastgpt.ops.adamw.adamw_step_with_copies).

    The alternative to cast_once_forward for a step whose optimizer writes the copies: the forward
    reads them without a cast, and their gradients, in the copies' dtype, go to the optimizer
    without a cast back (two passes over the parameters fewer a step). `copies` are leaf tensors
    that require grad, one per trainable parameter (tied weights once); `params` the fp32
    parameters in the same order. They are made from the parameters here and by refresh(): call
    it after changing the parameters other than through the optimizer (loading a checkpoint).
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        wrong = [n for n, p in named if p.dtype != torch.float32]
        if wrong:
            raise ValueError(f"ParameterCopies needs fp32 parameters; {wrong[0]} is {dict(named)[wrong[0]].dtype}")
        self.model, self.dtype = model, dtype
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.copies = [p.detach().to(dtype).requires_grad_() for p in self.params]

    @torch.no_grad()
    def refresh(self) -> None:
        torch._foreach_copy_(self.copies, self.params)

    def forward(self, *args, **kwargs):
        """model(*args, **kwargs) run on the copies (torch.func.functional_call: tied weights stay tied)."""
        return torch.func.functional_call(self.model, dict(zip(self.names, self.copies)), args, kwargs)

    def grads(self) -> list[torch.Tensor]:
        return [c.grad for c in self.copies]

    def zero_grad(self) -> None:
        for c in self.copies:
            c.grad = None
