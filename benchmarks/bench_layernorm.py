"""Fused residual-add + LayerNorm against eager PyTorch and torch.compile of the same, side by side.

bf16, 65536 rows x 768 (GPT-2 small at 128 x 512 tokens): forward (training mode: the graph is
built) and forward+backward (gradients of x, residual, weight and bias from both outputs y and s).
The op is memory bound, so each benchmark records its floor: the bytes it must move over the
device-to-device copy bandwidth measured in the same run (`test_copy_bandwidth`, the ceiling):
    forward           read x, r; write s, y                       4 * N * C * 2 bytes
    forward+backward  the forward, then read dy, ds, s; write dx  8 * N * C * 2 bytes
(mean / rstd, N * 8 bytes each way, and the (C,) parameters are left out: under 0.5%.)
`test_add_layernorm_with_x_bias`: the same with the branch's bias (s = x + x_bias + r, whose
gradient is dx's column sum), as GPT's blocks run it: same bytes, the column sum on the way.

    pytest benchmarks/bench_layernorm.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch

import fastgpt
from fastgpt.backend import cuda_extension_available
from fastgpt.ops.layernorm import add_layernorm_reference, fused_add_layernorm
from timing import COPY_BYTES, copy_step, measure, step

N, C = 65536, 768
DTYPE = torch.bfloat16
ELEMENT = torch.tensor([], dtype=DTYPE).element_size()
BYTES = {"fwd": 4 * N * C * ELEMENT, "fwd_bwd": 8 * N * C * ELEMENT}
HAS_CUDA = torch.cuda.is_available()


def test_copy_bandwidth(benchmark, copy_gbps):
    measure(benchmark, copy_step(), bytes_moved=2 * COPY_BYTES, copy_gbps=copy_gbps)


def _on_backend(name):
    def run(x, r, w, b, x_bias=None):
        with fastgpt.use_backend(name):
            return fused_add_layernorm(x, r, w, b, x_bias=x_bias)
    return run


def _compiled():
    # the reference (x + r then F.layer_norm) as torch.compile fuses it
    reference = torch.compile(add_layernorm_reference, fullgraph=True)
    return lambda x, r, w, b, x_bias=None: reference(x, r, w, b, 1e-5, x_bias)


IMPLEMENTATIONS = {
    "torch": lambda: _on_backend("torch"),     # eager: x + r, then F.layer_norm
    "compile": _compiled,
    "triton": lambda: _on_backend("triton"),
    "cuda": lambda: _on_backend("cuda"),
}
# The Triton launchers' tuning knobs (kernels/layernorm.py) around the defaults, so one GPU run
# says which setting wins. Forward (fwd only): elements per program and warps. Backward (fwd_bwd
# only): 2D tile elements (BLOCK_R x BLOCK_C), warps, rows per program, the register prefetch.
FWD_VARIANTS = {
    "triton-tile1024": {"ROW_TILE": 1024},                          # the old default
    "triton-tile1024-w8": {"ROW_TILE": 1024, "FWD_NUM_WARPS": 8},   # warps or programs?
    "triton-tile2048-w4": {"ROW_TILE": 2048, "FWD_NUM_WARPS": 4},
    "triton-tile2048-w16": {"ROW_TILE": 2048, "FWD_NUM_WARPS": 16},
    "triton-tile4096": {"ROW_TILE": 4096},                          # now 16 warps
    "triton-tile4096-w8": {"ROW_TILE": 4096, "FWD_NUM_WARPS": 8},   # the old 4096
}
BWD_VARIANTS = {
    "triton-bwd_noprefetch": {"BWD_PREFETCH": False},
    "triton-bwd_maxnreg80": {"BWD_MAXNREG": 80},                    # 3 programs an SM, not 2
    "triton-bwd_tile4096-maxnreg64": {"BWD_ROW_TILE": 4096, "BWD_MAXNREG": 64},
    "triton-bwd_tile1024": {"BWD_ROW_TILE": 1024},                  # 1 row x 1024, 4 warps
    "triton-bwd_tile2048-w4": {"BWD_ROW_TILE": 2048, "BWD_NUM_WARPS": 4},
    "triton-bwd_tile4096": {"BWD_ROW_TILE": 4096},                  # 4 rows, 16 warps
    "triton-bwd_tile4096-w8": {"BWD_ROW_TILE": 4096, "BWD_NUM_WARPS": 8},
    "triton-bwd_tile8192-w16": {"BWD_ROW_TILE": 8192, "BWD_NUM_WARPS": 16},
    "triton-bwd_rows32": {"BWD_ROWS_PER_PROGRAM": 32},
    "triton-bwd_rows128": {"BWD_ROWS_PER_PROGRAM": 128},
    "triton-bwd_rows256": {"BWD_ROWS_PER_PROGRAM": 256},
    "triton-bwd_rows256-noprefetch": {"BWD_ROWS_PER_PROGRAM": 256, "BWD_PREFETCH": False},
}
TRITON_VARIANTS = {**FWD_VARIANTS, **BWD_VARIANTS}
IMPLEMENTATIONS.update({name: IMPLEMENTATIONS["triton"] for name in TRITON_VARIANTS})


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_add_layernorm(benchmark, copy_gbps, impl, mode, monkeypatch):
    if impl == "cuda" and not (HAS_CUDA and cuda_extension_available()):
        pytest.skip("the CUDA extension fastgpt._C is not built")
    if impl in BWD_VARIANTS and mode == "fwd":
        pytest.skip("the backward's knobs do not change the forward")
    if impl in FWD_VARIANTS and mode == "fwd_bwd":
        pytest.skip("forward knobs: timed forward only")
    if impl in TRITON_VARIANTS:
        from fastgpt.kernels import layernorm as launchers
        for knob, value in TRITON_VARIANTS[impl].items():
            monkeypatch.setattr(launchers, knob, value)
    torch.manual_seed(0)
    x, r, dy, ds = (torch.randn(N, C, device="cuda", dtype=DTYPE) for _ in range(4))
    w = (1 + 0.1 * torch.randn(C, device="cuda")).to(DTYPE)
    b = (0.1 * torch.randn(C, device="cuda")).to(DTYPE)
    leaves = [t.requires_grad_() for t in (x, r, w, b)]
    forward = IMPLEMENTATIONS[impl]()
    fn = step(forward, leaves, leaves, (dy, ds), mode)
    floor_ms = BYTES[mode] / (copy_gbps * 1e9) * 1e3
    ms = measure(benchmark, fn, bytes_moved=BYTES[mode], rows=N, hidden=C, dtype=str(DTYPE),
                 copy_gbps=copy_gbps, floor_ms=floor_ms, **TRITON_VARIANTS.get(impl, {}))
    benchmark.extra_info["vs_floor"] = ms / floor_ms


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("impl", ["torch", "compile", "triton"])
def test_add_layernorm_with_x_bias(benchmark, copy_gbps, impl, mode):
    torch.manual_seed(0)
    x, r, dy, ds = (torch.randn(N, C, device="cuda", dtype=DTYPE) for _ in range(4))
    w = (1 + 0.1 * torch.randn(C, device="cuda")).to(DTYPE)
    b, x_bias = ((0.1 * torch.randn(C, device="cuda")).to(DTYPE) for _ in range(2))
    leaves = [t.requires_grad_() for t in (x, r, w, b, x_bias)]
    fn = step(IMPLEMENTATIONS[impl](), leaves, leaves, (dy, ds), mode)
    floor_ms = BYTES[mode] / (copy_gbps * 1e9) * 1e3
    ms = measure(benchmark, fn, bytes_moved=BYTES[mode], rows=N, hidden=C, dtype=str(DTYPE),
                 copy_gbps=copy_gbps, floor_ms=floor_ms, x_bias=True)
    benchmark.extra_info["vs_floor"] = ms / floor_ms
