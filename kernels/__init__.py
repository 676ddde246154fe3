"""Triton kernels of fastgpt, installed as the package `fastgpt.kernels`.

One kernel family per module (attention, layernorm, mlp, cross_entropy): a header saying
what is fused and why, the `@triton.jit` kernels, then plain tensor-in/tensor-out launchers.
Importing a module here imports triton; fastgpt imports them only when the triton backend runs.
"""
