"""The linear family against PyTorch, side by side, at GPT-2 124M's projections (16384 tokens, bf16).

    bias_grad   dbias = dy.sum(0): kernels/linear.column_sum against torch (what F.linear's
                backward runs) and torch.compile of the same sum. Memory bound: its floor is
                M * N * 2 bytes over the copy bandwidth measured in the same run (copy_gbps).
    fwd_bwd     fused_linear (triton backend: cuBLAS GEMMs + the column sum, as inside a CUDA-graphed
                step) against F.linear, forward and the gradients of x, weight and bias.

    pytest benchmarks/bench_linear.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch
import torch.nn.functional as F

import fastgpt
from fastgpt.ops.dispatch import replayed_steps
from fastgpt.ops.linear import fused_linear
from timing import measure, step

TOKENS = 16384
DTYPE = torch.bfloat16
# name: (in_features, out_features)
SHAPES = {"c_attn": (768, 2304), "c_proj": (768, 768), "mlp_c_proj": (3072, 768)}


# The launcher's knobs (kernels/linear.py) around the defaults, so one GPU run says which wins.
VARIANTS = {
    "triton-m64w8": {"BLOCK_M": 64, "NUM_WARPS": 8},
    "triton-m64w8-sm2": {"BLOCK_M": 64, "NUM_WARPS": 8, "PROGRAMS_PER_SM": 2},
    "triton-sm8": {"PROGRAMS_PER_SM": 8},
    "triton-sm16": {"PROGRAMS_PER_SM": 16},
    "triton-s1-sm4": {"NUM_STAGES": 1, "PROGRAMS_PER_SM": 4},    # the default before run 163
    "triton-sm4": {"PROGRAMS_PER_SM": 4},
    "triton-s4": {"NUM_STAGES": 4},
    "triton-m16-sm8": {"BLOCK_M": 16, "PROGRAMS_PER_SM": 8},
}


def _column_sum(impl):
    if impl.startswith("triton"):
        from fastgpt.kernels.linear import column_sum
        return column_sum
    if impl == "compile":
        return torch.compile(lambda dy: dy.sum(0), fullgraph=True)
    return lambda dy: dy.sum(0)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["torch", "compile", "triton", *VARIANTS])
def test_bias_grad(benchmark, copy_gbps, impl, shape, monkeypatch):
    from fastgpt.kernels import linear as launchers
    for knob, value in VARIANTS.get(impl, {}).items():
        monkeypatch.setattr(launchers, knob, value)
    N = SHAPES[shape][1]
    dy = torch.randn(TOKENS, N, device="cuda", dtype=DTYPE)
    fn = _column_sum(impl)
    bytes_moved = TOKENS * N * dy.element_size()
    floor_ms = bytes_moved / (copy_gbps * 1e9) * 1e3
    ms = measure(benchmark, lambda: fn(dy), bytes_moved=bytes_moved, rows=TOKENS, cols=N, dtype=str(DTYPE),
                 copy_gbps=copy_gbps, floor_ms=floor_ms, **VARIANTS.get(impl, {}))
    benchmark.extra_info["vs_floor"] = ms / floor_ms


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_linear(benchmark, impl, shape):
    K, N = SHAPES[shape]
    torch.manual_seed(0)
    x = torch.randn(TOKENS, K, device="cuda", dtype=DTYPE, requires_grad=True)
    w = (torch.randn(N, K, device="cuda") * K ** -0.5).to(DTYPE).requires_grad_()
    b = torch.randn(N, device="cuda", dtype=DTYPE, requires_grad=True)
    dy = torch.randn(TOKENS, N, device="cuda", dtype=DTYPE)

    def forward(x, w, b):
        if impl == "torch":
            return F.linear(x, w, b)
        # as inside a CUDA-graphed step: eagerly the triton backend runs F.linear (launch_bound)
        with fastgpt.use_backend("triton"), replayed_steps():
            return fused_linear(x, w, b)
    fn = step(forward, (x, w, b), (x, w, b), dy, "fwd_bwd")
    measure(benchmark, fn, flops=3 * 2 * TOKENS * K * N, rows=TOKENS, in_features=K, out_features=N,
            dtype=str(DTYPE))
