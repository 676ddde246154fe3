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
