"""Host (Python / dispatcher) cost of one forward + backward of each fused op, timed on CPU.

Why: on the H100 the eager GPT-2 training step is host-bound (our Triton kernels replayed as a
CUDA graph take a fraction of the eagerly timed time), so the microseconds our Python layers
spend per call decide the eager step time. This script times those layers alone: every launcher
in fastgpt.kernels.* that the custom ops call is replaced by a stub that returns correctly
shaped `torch.empty` outputs, so no kernel runs and what remains is ours: the public function's
validation and autocast, the backend switch (Op dispatch), autograd.Function, the torch.library
custom op round trip, and the output allocations.

Each op is timed at several layers of its stack, top to bottom (fwd + bwd per call, gradients by
torch.autograd.grad so nothing accumulates into .grad):
  public     the public function (validation, autocast, Op dispatch) + autograd backward
  function   the autograd.Function applied to already-checked arguments + autograd backward
  ops        the two torch.library custom ops called through the dispatcher (torch.ops.fastgpt)
  impl       the custom ops' Python implementations called directly (what eager mode runs once
             fastgpt.ops.dispatch.call_custom_op picks them; "n/a" where the module has none)
  launchers  the stubbed launchers alone: the floor (allocation of the outputs)
and the pieces the public layer adds: `validate`, `autocast_inputs`, `resolve` (the backend
switch's per-call decision).

CPU allocation of large tensors goes through mmap/munmap (~10 us for 48 MB), far more than the
CUDA caching allocator's; so that the layernorm and attention shapes (GPT-2's) cost what they
would there, glibc is told to keep large blocks in its heap (mallopt), which makes torch.empty
of any size about as cheap as a cached CUDA allocation. The MLP and cross-entropy run real CPU
ops between the stubs (cuBLAS GEMMs, bias sums) and use small shapes so
that those cost what an eager aten call costs on the host; their shapes are printed.

Run:  python benchmarks/host_overhead.py [--json out.json] [--repeats 200]
Numbers are machine-dependent: compare runs made on one machine in one sitting.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Iterator

if __name__ == "__main__":   # as a script: the triton backend accepts CPU tensors (stubs run).
    # Not on import (tests): set globally, it would turn every Triton kernel imported later in
    # the process into an interpreted one, on a GPU machine too.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

import fastgpt  # noqa: E402
from fastgpt.backend import _resolve_device_type  # noqa: E402
from fastgpt.ops import attention, cross_entropy, layernorm, linear, mlp  # noqa: E402
from fastgpt.ops.autocast import autocast_inputs  # noqa: E402

LAYERS = ("public", "function", "ops", "impl", "launchers", "validate", "autocast_inputs", "resolve")


# ---- stubbed launchers: correctly shaped outputs, no kernel ----

def _stub_add_layernorm_fwd(x, residual, weight, bias, eps, store_sum=True, x_bias=None):
    stats = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    s = torch.empty_like(x) if (residual is not None or x_bias is not None) and store_sum else None
    return torch.empty_like(x), s, stats, torch.empty_like(stats)


def _stub_add_layernorm_bwd(dy, ds, s, weight, mean, rstd, has_bias, x_bias_grad=None):
    return torch.empty_like(s), torch.empty_like(weight), torch.empty_like(weight) if has_bias else None


def _stub_attention_fwd(q, k, v, causal, softmax_scale, dropout_p=0.0, seed=None, out=None, config=None):
    B, H, T, D = q.shape
    out = q.new_empty(B, T, H, D).transpose(1, 2) if out is None else out
    return out, q.new_empty(B, H, T, dtype=torch.float32)


def _stub_attention_bwd(dout, q, k, v, out, lse, causal, softmax_scale, dropout_p=0.0, seed=None,
                        grads=None, dkdv_config=None, dq_config=None, partials=None):
    if grads is not None:
        return grads
    B, H, T, D = q.shape
    return tuple(q.new_empty(B, T, H, D).transpose(1, 2) for _ in range(3))


def _stub_attention_qkvpacked_fwd(qkv, causal, softmax_scale, dropout_p=0.0, seed=None, config=None):
    B, T, _, H, D = qkv.shape
    return qkv.new_empty(B, T, H, D), qkv.new_empty(B, H, T, dtype=torch.float32)


def _stub_attention_qkvpacked_bwd(dout, qkv, out, lse, causal, softmax_scale, dropout_p=0.0, seed=None,
                                  dqkv=None, bias_grad_dtype=None):
    dqkv = qkv.new_empty(qkv.shape) if dqkv is None else dqkv
    return dqkv, None if bias_grad_dtype is None else qkv.new_empty(3, qkv.shape[3], qkv.shape[4], dtype=bias_grad_dtype)


def _stub_linear_gelu(x, weight, bias=None, store_pre=False, schedule=None, kernel="triton", pre_code=False):
    h = x.new_empty(x.shape[0], weight.shape[0])
    return h, torch.empty_like(h, dtype=torch.uint8 if pre_code else None) if store_pre else None


def _stub_linear(x, weight, bias=None, schedule=None):
    return x.new_empty(x.shape[0], weight.shape[0])


def _stub_matmul(a, b, prologue_gelu=False, schedule=None):
    return a.new_empty(a.shape[0], b.shape[1])


def _stub_gelu_bwd(dh, pre, store_gelu=False, bias_grad=False, overwrite_dh=False, bias_dtype=torch.float32):
    dpre = dh if overwrite_dh else torch.empty_like(dh)
    h = torch.empty_like(dh) if store_gelu else None
    return dpre, h, pre.new_empty(pre.shape[1], dtype=bias_dtype) if bias_grad else None


def _stub_matmul_gelu_grad(dy, weight, pre, store_gelu=False, bias_grad=False, schedule=None, kernel="triton",
                           bias_dtype=torch.float32):
    dh = dy.new_empty(dy.shape[0], weight.shape[1])
    return _stub_gelu_bwd(dh, pre, store_gelu, bias_grad, overwrite_dh=True, bias_dtype=bias_dtype)


def _stub_linear_cross_entropy_fwd_bwd(x, weight, targets, ignore_index, compute_dtype, need_grad_x,
                                       need_grad_weight, rows_per_chunk, tuned_gemms=False, n_valid=None):
    loss = x.new_empty((), dtype=torch.float32)
    return (loss, torch.empty_like(x) if need_grad_x else x.new_empty(0),
            torch.empty_like(weight, dtype=torch.float32) if need_grad_weight else weight.new_empty(0))


def _stub_target_stats(targets, vocab, ignore_index):
    return (torch.empty((), dtype=torch.int64, device=targets.device),
            torch.ones((), dtype=torch.bool, device=targets.device))


def _stub_scale_gradient(grad, grad_output, dtype, out=None):
    return torch.empty(grad.shape, dtype=dtype, device=grad.device)


STUBS = {
    "layernorm": {"add_layernorm_fwd": _stub_add_layernorm_fwd, "add_layernorm_bwd": _stub_add_layernorm_bwd},
    "attention": {"attention_fwd": _stub_attention_fwd, "attention_bwd": _stub_attention_bwd,
                  "attention_qkvpacked_fwd": _stub_attention_qkvpacked_fwd,
                  "attention_qkvpacked_bwd": _stub_attention_qkvpacked_bwd},
    "mlp": {"linear_gelu": _stub_linear_gelu, "linear": _stub_linear, "matmul": _stub_matmul,
            "gelu_bwd": _stub_gelu_bwd, "matmul_gelu_grad": _stub_matmul_gelu_grad},
    "cross_entropy": {"linear_cross_entropy_fwd_bwd": _stub_linear_cross_entropy_fwd_bwd,
                      "target_stats": _stub_target_stats, "scale_gradient": _stub_scale_gradient},
}


@contextlib.contextmanager
def stubbed_launchers() -> Iterator[None]:
    """Replace the launchers of fastgpt.kernels.* by the stubs above; restore them on exit."""
    import importlib

    saved = []
    try:
        for module_name, stubs in STUBS.items():
            module = importlib.import_module(f"fastgpt.kernels.{module_name}")
            for name, stub in stubs.items():
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, stub)
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def keep_freed_memory_in_heap() -> bool:
    """Make large CPU allocations cheap (glibc mallopt: no mmap, no trim), as the CUDA caching
    allocator's are. Returns False where that is not possible (then large shapes cost more)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


# ---- timing ----

def time_per_call(fn: Callable[[], object], repeats: int, inner: int, warmup: int = 20) -> dict:
    """Median (and min) microseconds of one fn() call, over `repeats` samples of `inner` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter_ns() - start) / inner / 1e3)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {"median_us": statistics.median(samples), "min_us": min(samples)}


# ---- the ops, layer by layer ----

def _leaf(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype).requires_grad_()


def _grad_call(forward: Callable[[], object], inputs, grads) -> Callable[[], object]:
    """fwd + bwd through autograd, returning the input gradients (no .grad accumulation)."""
    def run():
        out = forward()
        out = out if isinstance(out, tuple) else (out,)
        return torch.autograd.grad(out, inputs, grads)
    return run


def _impl(module, name: str):
    return getattr(module, name, None)


def layernorm_case(N: int = 16384, C: int = 768) -> tuple[str, dict]:
    x, r, w, b = _leaf(N, C), _leaf(N, C), _leaf(C), _leaf(C)
    gy, gs = torch.randn(N, C), torch.randn(N, C)
    inputs, eps = (x, r, w, b), 1e-5
    kl = __import__("fastgpt.kernels.layernorm", fromlist=["_"])
    fwd_impl, bwd_impl = _impl(layernorm, "_add_layernorm_fwd_impl"), _impl(layernorm, "_add_layernorm_bwd_impl")
    xd, rd, wd, bd = (t.detach() for t in inputs)

    def ops():
        y, s, mean, rstd = torch.ops.fastgpt.add_layernorm_fwd(xd, rd, wd, bd, eps, "triton")
        return torch.ops.fastgpt.add_layernorm_bwd(gy, gs, s, wd, mean, rstd, True, "triton")

    def impl():
        y, s, mean, rstd = fwd_impl(xd, rd, wd, bd, eps, "triton")
        return bwd_impl(gy, gs, s, wd, mean, rstd, True, "triton")

    def launchers():
        y, s, mean, rstd = kl.add_layernorm_fwd(xd, rd, wd, bd, eps)
        return kl.add_layernorm_bwd(gy, gs, s, wd, mean, rstd, True)

    layers = {
        "public": _grad_call(lambda: fastgpt.fused_add_layernorm(x, r, w, b, eps), inputs, (gy, gs)),
        "function": _grad_call(lambda: layernorm.AddLayerNormFunction.apply(x, r, w, b, eps, "triton"),
                               inputs, (gy, gs)),
        "ops": ops, "impl": impl if fwd_impl and bwd_impl else None, "launchers": launchers,
        "validate": lambda: layernorm._check_inputs(x, r, w, b, eps),
        "autocast_inputs": lambda: autocast_inputs(x, r, w, b),
    }
    return f"add_layernorm ({N}, {C}) fp32, residual + bias", layers


def attention_case(B: int = 2, T: int = 512, H: int = 12, D: int = 64) -> tuple[str, dict]:
    qkv = _leaf(B, T, 3, H, D)
    dout = torch.randn(B, T, H, D)
    scale = 1.0 / math.sqrt(D)
    ka = __import__("fastgpt.kernels.attention", fromlist=["_"])
    fwd_impl = _impl(attention, "_attention_qkvpacked_fwd_impl")
    bwd_impl = _impl(attention, "_attention_qkvpacked_bwd_impl")
    qd = qkv.detach()

    def ops():
        out, lse = torch.ops.fastgpt.attention_qkvpacked_fwd(qd, True, scale, 0.0, None)
        return torch.ops.fastgpt.attention_qkvpacked_bwd(dout, qd, out, lse, True, scale, 0.0, None, None)

    def impl():
        out, lse = fwd_impl(qd, True, scale, 0.0, None)
        return bwd_impl(dout, qd, out, lse, True, scale, 0.0, None, None)

    def launchers():
        out, lse = ka.attention_qkvpacked_fwd(qd, True, scale, 0.0, 0)
        return ka.attention_qkvpacked_bwd(dout, qd, out, lse, True, scale, 0.0, 0)

    layers = {
        "public": _grad_call(lambda: fastgpt.flash_attention_qkvpacked(qkv), (qkv,), (dout,)),
        "function": _grad_call(lambda: attention._FlashAttentionQKVPackedFunction.apply(qkv, None, True, scale, 0.0),
                               (qkv,), (dout,)),
        "ops": ops, "impl": impl if fwd_impl and bwd_impl else None, "launchers": launchers,
        "validate": lambda: attention._check_qkvpacked(qkv, 0.0),
        "autocast_inputs": None,   # flash_attention does not cast (q, k, v come from a linear)
    }
    return f"attention_qkvpacked ({B}, {T}, 3, {H}, {D}) fp32, causal", layers


def mlp_case(B: int = 2, T: int = 8, C: int = 32) -> tuple[str, dict]:
    Hd = 4 * C
    x, fw, fb, pw, pb = _leaf(B, T, C), _leaf(Hd, C), _leaf(Hd), _leaf(C, Hd), _leaf(C)
    dy = torch.randn(B, T, C)
    inputs, o = (x, fw, fb, pw, pb), mlp.DEFAULT_OPTIONS
    km = __import__("fastgpt.kernels.mlp", fromlist=["_"])
    fwd_impl, bwd_impl = _impl(mlp, "_mlp_fwd_impl"), _impl(mlp, "_mlp_bwd_impl")
    x2, fwd, fbd, pwd, pbd, dy2 = x.detach().view(-1, C), fw.detach(), fb.detach(), pw.detach(), pb.detach(), dy.view(-1, C)

    def run(fwd_fn, bwd_fn):
        y, pre, h = fwd_fn(x2, fwd, fbd, pwd, pbd, True, o.save_gelu, o.proj, o.schedule)
        return bwd_fn(dy2, x2, fwd, pwd, pre, h, True, True, o.gelu_grad, o.dgrad, o.wgrad, o.bias_grad,
                      o.schedule, False)     # eager: the proj bias by PyTorch's sum, as launch_bound() picks

    def launchers():   # the triton launchers of the default options' path; its cuBLAS GEMMs are torch
        h, pre = km.linear_gelu(x2, fwd, fbd, store_pre=True, schedule=o.schedule)
        torch.nn.functional.linear(h, pwd, pbd)
        return km.gelu_bwd(torch.mm(dy2, pwd), pre, overwrite_dh=True, bias_grad=True)

    layers = {
        "public": _grad_call(lambda: fastgpt.fused_mlp(x, fw, fb, pw, pb), inputs, (dy,)),
        "function": _grad_call(lambda: mlp._MLPFunction.apply(x, fw, fb, pw, pb, None, o, True), inputs, (dy,)),
        "ops": lambda: run(torch.ops.fastgpt.mlp_fwd, torch.ops.fastgpt.mlp_bwd),
        "impl": (lambda: run(fwd_impl, bwd_impl)) if fwd_impl and bwd_impl else None,
        "launchers": launchers,
        "validate": lambda: (linear.check_linear(x, fw, fb, "fused_mlp (c_fc)"),
                             linear.check_linear(x, pw, pb, "fused_mlp (c_proj)", in_features=Hd)),
        "autocast_inputs": lambda: autocast_inputs(x, fw, fb, pw, pb),
    }
    return f"mlp ({B}, {T}, {C}) -> {Hd} -> {C} fp32, biases, default MLPOptions", layers


def cross_entropy_case(B: int = 2, T: int = 64, C: int = 32, V: int = 128) -> tuple[str, dict]:
    x, w = _leaf(B, T, C), _leaf(V, C)
    targets = torch.randint(0, V, (B, T))
    flat_targets = targets.view(-1)
    kc = __import__("fastgpt.kernels.cross_entropy", fromlist=["_"])
    fwd_impl = _impl(cross_entropy, "_linear_cross_entropy_fwd_impl")
    x2, wd = x.detach().view(-1, C), w.detach()
    rows = kc.chunk_rows(B * T, V, 4)
    grad_out = torch.ones(())

    def run(fwd_fn):   # the backward is Function.backward's scaling, no op
        loss, gx, gw = fwd_fn(x2, wd, flat_targets, -1, torch.float32, True, True, rows)
        return gx * grad_out, gw * grad_out

    layers = {
        "public": _grad_call(lambda: fastgpt.fused_linear_cross_entropy(x, w, targets), (x, w), (grad_out,)),
        "function": _grad_call(lambda: cross_entropy.LinearCrossEntropyFunction.apply(
            x.view(-1, C), w, flat_targets, -1, torch.float32, True, True, rows), (x, w), (grad_out,)),
        "ops": lambda: run(torch.ops.fastgpt.linear_cross_entropy_fwd),
        "impl": (lambda: run(fwd_impl)) if fwd_impl else None,
        "launchers": lambda: run(kc.linear_cross_entropy_fwd_bwd),
        "validate": lambda: cross_entropy._validate(x, w, targets, -1, None),
        "autocast_inputs": None,   # the op decides its compute dtype itself
    }
    return f"linear_cross_entropy ({B}, {T}, {C}) x V={V} fp32", layers


CASES = {"layernorm": layernorm_case, "attention": attention_case, "mlp": mlp_case,
         "cross_entropy": cross_entropy_case}


def measure(repeats: int = 200, inner: int = 10, ops: tuple[str, ...] = tuple(CASES)) -> dict:
    """{op: {"shape": str, "layers": {layer: {"median_us", "min_us"} or None}}} with stubbed launchers."""
    results = {}
    with stubbed_launchers(), fastgpt.use_backend("triton"):
        for op in ops:
            shape, layers = CASES[op]()
            layers["resolve"] = lambda: _resolve_device_type("cpu")
            results[op] = {"shape": shape, "layers": {
                name: None if layers.get(name) is None else time_per_call(layers[name], repeats, inner)
                for name in LAYERS}}
    return results


def format_table(results: dict) -> str:
    lines = ["host microseconds per forward + backward (median; launchers stubbed)", "",
             "| op | " + " | ".join(LAYERS) + " |", "|---" * (len(LAYERS) + 1) + "|"]
    for op, r in results.items():
        cells = ["n/a" if r["layers"][name] is None else f"{r['layers'][name]['median_us']:.1f}"
                 for name in LAYERS]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines += [""] + [f"{op}: {r['shape']}" for op, r in results.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="samples per layer (median taken)")
    parser.add_argument("--inner", type=int, default=10, help="calls per sample")
    parser.add_argument("--ops", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    heap = keep_freed_memory_in_heap()
    torch.set_num_threads(1)
    results = measure(args.repeats, args.inner, tuple(args.ops))
    print(format_table(results))
    if args.json:
        meta = {"torch": torch.__version__, "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(), "cached_large_allocations": heap,
                "repeats": args.repeats, "inner": args.inner}
        with open(args.json, "w") as f:
            json.dump({"environment": meta, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
