"""AdamW's step with the half-precision parameter copies written on the way (kernels/adamw.py).

A bf16-autocast step keeps fp32 parameters and runs on bf16 copies of them. Written by the
optimizer's pass, the copies need no cast of their own, and the optimizer reads their bf16
gradients directly, without a cast back to fp32 (fastgpt.ops.autocast.ParameterCopies holds the
copies; fastgpt.cuda_graph.GraphedTrainStep(optimizer_writes_copies=True) runs the two together).

The optimizer stays a torch.optim.AdamW: its hyperparameters are read from its param groups, and
its state (step, exp_avg, exp_avg_sq) is created and updated as its own step() would, so its
state_dict, checkpoints and a later plain step() carry on from here.

Layers: `adamw_step_with_copies` (public: documented, validates, reads the optimizer) -> the
`adamw_with_copies` Op of the backend switch -> triton: `_TritonTables` (the address tables, built
once per set of tensors; the gradients' rebuilt when their addresses change) and the launcher
kernels/adamw.adamw_step; torch: `adamw_with_copies_reference`, PyTorch ops tensor by tensor (the
test oracle and the CPU fallback).
"""
from __future__ import annotations

import torch
from torch import Tensor

from fastgpt.backend import Op

adamw_with_copies = Op("adamw_with_copies")


@adamw_with_copies.register("torch")
def adamw_with_copies_reference(params, grads, exp_avgs, exp_avg_sqs, copies, steps, weight_decays,
                                lr, grad_scale, beta1, beta2, eps, cache=None):
    """torch's AdamW arithmetic (ADAMW mode) in fp32, tensor by tensor; steps already incremented.
    (cache: the triton implementation's, unused here.)"""
    for i, (p, g, m, v, step) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, steps)):
        g = g.float() if grad_scale is None else g.float() * grad_scale
        p.mul_(1 - lr * weight_decays[i])
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step).sqrt()
        p.sub_((lr / bias_correction1) * m / (v.sqrt() / bias_correction2_sqrt + eps))
        if copies is not None:
            copies[i].copy_(p)


class _TritonTables:
    """The kernel's tables for one list of parameters (their moments, steps and copies fixed with
    them), kept with the optimizer; the gradients' addresses are written into a table of their
    own per call, only when they changed (in a captured step, once: the graph's memory pool keeps
    them)."""

    def __init__(self, params, exp_avgs, exp_avg_sqs, copies, steps, weight_decays):
        from fastgpt.kernels import adamw as kernels
        from fastgpt.kernels.common import PinnedTable

        device = params[0].device
        self.params = kernels.address_table(params, device)
        self.exp_avgs = kernels.address_table(exp_avgs, device)
        self.exp_avg_sqs = kernels.address_table(exp_avg_sqs, device)
        self.copies = None if copies is None else kernels.address_table(copies, device)
        self.steps = kernels.address_table(steps, device)
        self.numels = torch.tensor([p.numel() for p in params], dtype=torch.int64, device=device)
        self.weight_decays = torch.tensor(weight_decays, dtype=torch.float32, device=device)
        self.chunks = kernels.chunk_table([p.numel() for p in params], device)
        self.aligned = kernels.aligned([t for group in (params, exp_avgs, exp_avg_sqs, copies or []) for t in group])
        # the gradients' addresses, written so that a CUDA graph can record the write
        self.grads = PinnedTable(len(params), device)
        self.grad_addresses: tuple[int, ...] | None = None   # what the table holds (eager calls)
        self.captured = False           # once a graph replays its own table, eager calls rewrite it
        self.keep = (params, exp_avgs, exp_avg_sqs, copies, steps)   # the addresses stay valid

    @classmethod
    def of(cls, cache: dict, params, exp_avgs, exp_avg_sqs, copies, steps, weight_decays) -> "_TritonTables":
        """The tables of these tensors from `cache` (the optimizer's), made when they changed."""
        key = tuple(t.data_ptr() for group in (params, exp_avgs, exp_avg_sqs, copies or [], steps)
                    for t in group) + tuple(weight_decays)
        if cache.get("key") != key:
            cache["key"], cache["tables"] = key, cls(params, exp_avgs, exp_avg_sqs, copies, steps, weight_decays)
        return cache["tables"]

    def grad_table(self, grads: list[Tensor]) -> Tensor:
        addresses = tuple(g.data_ptr() for g in grads)
        capturing = self.grads.table.is_cuda and torch.cuda.is_current_stream_capturing()
        if capturing or self.captured or addresses != self.grad_addresses:
            self.grads.write(addresses)
            # after a capture, every replay copies the graph's addresses in: an eager call then
            # always writes its own
            self.grad_addresses = addresses
            self.captured = self.captured or capturing
        return self.grads.table


@adamw_with_copies.register("triton")
def adamw_with_copies_triton(params, grads, exp_avgs, exp_avg_sqs, copies, steps, weight_decays,
                             lr, grad_scale, beta1, beta2, eps, cache=None):
    from fastgpt.kernels import adamw as kernels

    tables = _TritonTables.of({} if cache is None else cache, params, exp_avgs, exp_avg_sqs, copies,
                              steps, weight_decays)
    kernels.adamw_step(tables.params, tables.grad_table(grads), tables.exp_avgs, tables.exp_avg_sqs,
                       tables.copies, tables.steps, tables.numels, tables.weight_decays, tables.chunks,
                       lr, grad_scale, beta1, beta2, eps, grads[0].dtype,
                       None if copies is None else copies[0].dtype,
                       aligned=tables.aligned and kernels.aligned(grads))


def _check(optimizer, params, grads, copies) -> dict[int, dict]:
    """Clear errors for what the fused step does not do; returns each parameter's group."""
    if not isinstance(optimizer, torch.optim.AdamW):
        raise TypeError(f"adamw_step_with_copies needs a torch.optim.AdamW, got {type(optimizer).__name__}")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    if not params:
        raise ValueError("adamw_step_with_copies: no parameters")
    lengths = {len(params), len(grads)} | ({len(copies)} if copies is not None else set())
    if len(lengths) != 1:
        raise ValueError(f"adamw_step_with_copies: {len(params)} parameters, {len(grads)} gradients"
                         + ("" if copies is None else f", {len(copies)} copies"))
    lrs = set()
    for i, p in enumerate(params):
        group = group_of.get(id(p))
        if group is None:
            raise ValueError(f"parameter {i} ({tuple(p.shape)}) is not in the optimizer's param groups")
        if group["amsgrad"] or group["maximize"]:
            raise ValueError("adamw_step_with_copies does not do amsgrad or maximize")
        if any(isinstance(b, Tensor) for b in group["betas"]):
            raise ValueError("adamw_step_with_copies takes betas as numbers")
        lr = group["lr"]
        lrs.add((id(lr) if isinstance(lr, Tensor) else float(lr), tuple(group["betas"]), group["eps"]))
        if p.dtype != torch.float32 or not p.is_contiguous():
            raise TypeError(f"parameter {i}: fp32 contiguous parameters only, got {p.dtype}")
        g = grads[i]
        if g is None or g.shape != p.shape or g.device != p.device or not g.is_contiguous():
            raise ValueError(f"gradient {i} must be a contiguous tensor shaped as its parameter "
                             f"{tuple(p.shape)} on {p.device}")
        if copies is not None and (copies[i].shape != p.shape or not copies[i].is_contiguous()):
            raise ValueError(f"copy {i} must be a contiguous tensor shaped as its parameter {tuple(p.shape)}")
    if len(lrs) != 1:
        raise ValueError("adamw_step_with_copies needs one learning rate, betas and eps for all "
                         "param groups (weight decay may differ)")
    if len({g.dtype for g in grads}) != 1 or (copies is not None and len({c.dtype for c in copies}) != 1):
        raise TypeError("adamw_step_with_copies: the gradients (and the copies) must share one dtype")
    return {id(p): group_of[id(p)] for p in params}


@torch.no_grad()
def adamw_step_with_copies(optimizer: torch.optim.AdamW, params: list[Tensor], grads: list[Tensor],
                           copies: list[Tensor] | None = None, grad_scale: Tensor | None = None) -> None:
    """One step of `optimizer` for `params`, from `grads`, writing the updated parameters into `copies`.

    Does what `optimizer.step()` does for these parameters (torch's AdamW: decoupled weight decay,
    bias corrections; amsgrad and maximize excepted), with two differences that save passes:
    the gradients come as their own tensors in any float dtype (e.g. the bf16 gradients of the bf16
    copies an autocast forward ran on) instead of fp32 `.grad`, and each updated parameter is also
    written, in the copies' dtype, into `copies` (the copies the next forward reads).

    Args:
        optimizer: the torch.optim.AdamW that owns `params` (its groups give lr, betas, eps and
            weight decay; one learning rate, a float or a 0-d device tensor, for all groups).
        params: fp32 contiguous parameters; grads: their gradients, one dtype, same shapes.
        copies: tensors shaped as the parameters (one dtype), or None for the step alone.
        grad_scale: a one-element fp32 tensor the gradients are multiplied by (a clipping
            coefficient), or None.
    The optimizer's state is created (zeros) and updated as its own step would, so its state_dict
    is that of a plain AdamW run. Which implementation runs is decided by fastgpt.backend: the
    Triton kernel updates every tensor in one launch.

    Raises:
        TypeError: not an AdamW, parameters not fp32, gradients or copies of mixed dtypes.
        ValueError: a parameter outside the optimizer, amsgrad / maximize, several learning
            rates, or gradients / copies not shaped as their parameters.
    """
    groups = _check(optimizer, params, grads, copies)
    states = []
    for p in params:
        state = optimizer.state[p]
        if not state:      # as torch's AdamW creates it (step on the device: fused / capturable)
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states.append(state)
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1.0)
    first = groups[id(params[0])]
    lr = first["lr"]
    lr = lr if isinstance(lr, Tensor) else torch.tensor(float(lr), dtype=torch.float32, device=params[0].device)
    beta1, beta2 = (float(b) for b in first["betas"])
    weight_decays = [float(groups[id(p)]["weight_decay"]) for p in params]
    # the kernel's address tables live with the optimizer (an attribute its state_dict leaves out)
    cache = optimizer.__dict__.setdefault("_fastgpt_adamw_tables", {})
    adamw_with_copies(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                      copies, steps, weight_decays, lr, grad_scale, beta1, beta2, float(first["eps"]),
                      cache, device=params[0].device)


def clip_coefficient(grads: list[Tensor], max_norm: float) -> Tensor:
    """torch.nn.utils.clip_grad_norm_'s coefficient, min(1, max_norm / (total norm + 1e-6)), as a
    0-d fp32 tensor, without rewriting the gradients: the step multiplies by it (grad_scale). The
    norm is taken in fp32 whatever the gradients' dtype."""
    norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
    total = torch.linalg.vector_norm(torch.stack(norms), 2)
    return torch.clamp(max_norm / (total + 1e-6), max=1.0)


def step_with_copies(optimizer: torch.optim.AdamW, copies, grad_clip: float,
                     grads: list[Tensor] | None = None) -> None:
    """The optimizer step of a training step run on fastgpt.ops.autocast.ParameterCopies: clipping
    (grad_clip > 0) folded into the step as a gradient scale, then adamw_step_with_copies from the
    copies' gradients (or `grads`, e.g. their fp32 mean over ranks), writing the copies the next
    forward reads."""
    grads = copies.grads() if grads is None else grads
    scale = clip_coefficient(grads, grad_clip) if grad_clip > 0 else None
    adamw_step_with_copies(optimizer, copies.params, grads, copies.copies, scale)
