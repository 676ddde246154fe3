"""Where the eager step's time goes on the GPU machine: host microseconds per op call, a Python
profile of the hottest functions, and the GPU kernel time of one training step by kernel.

benchmarks/host_overhead.py times our Python layers on CPU with the launchers stubbed; this is
its GPU-side companion, with real launches (Triton's launcher, cuBLAS handles, the caching
allocator) on the machine whose eager step was host-bound:

  ops      host us per forward+backward of each fused op at a small shape (the GPU finishes each
           kernel in a few us, so the loop's wall time per call is the host's), per backend
  profile  cProfile of the triton add+LayerNorm fwd+bwd and of one eager triton train step:
           the functions with the most own time (written to <out>/profile-*.txt)
  layernorm  CUDA time per kernel of the add+LayerNorm fwd+bwd at 65536 x 768, triton and cuda
  kernels  torch.profiler over train steps (triton eager, reference + torch.compile): CUDA time
           per kernel, summed per step (written to <out>/kernels-*.txt)

Run:  python benchmarks/host_profile.py --out DIR [--parts ops profile kernels]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
from pathlib import Path

import torch

import fastgpt
from fastgpt.backend import cuda_extension_available
from host_overhead import time_per_call
from timing import environment


def host_us(fn) -> float:
    """Median wall time per call (host_overhead.time_per_call), the GPU drained first."""
    torch.cuda.synchronize()
    return time_per_call(fn, repeats=5, inner=300)["median_us"]


def _leaf(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)


def op_cases(tokens: int = 256, C: int = 768, H: int = 12):
    """name -> fwd+bwd callable factory per backend, at `tokens` rows (GPT-2 widths)."""
    x, r = _leaf(tokens, C), _leaf(tokens, C)
    w, b = _leaf(C), _leaf(C)
    gy, gs = torch.randn_like(x), torch.randn_like(x)
    qkv = _leaf(1, tokens, 3, H, C // H)
    gout = torch.randn(1, tokens, H, C // H, device="cuda", dtype=torch.bfloat16)
    w_fc, b_fc = _leaf(4 * C, C), _leaf(4 * C)
    w_proj, b_proj = _leaf(C, 4 * C), _leaf(C)
    w_lin = _leaf(C, C)
    w_head = _leaf(50304, C)
    targets = torch.randint(0, 50257, (tokens,), device="cuda")

    def layernorm():
        y, s = fastgpt.fused_add_layernorm(x, r, w, b)
        torch.autograd.grad((y, s), (x, r, w, b), (gy, gs))

    def attention():
        out = fastgpt.flash_attention_qkvpacked(qkv, causal=True)
        torch.autograd.grad(out, qkv, gout)

    def mlp():
        out = fastgpt.fused_mlp(x, w_fc, b_fc, w_proj, b_proj)
        torch.autograd.grad(out, (x, w_fc, b_fc, w_proj, b_proj), gy)

    def linear():
        out = fastgpt.fused_linear(x, w_lin, b)           # attention's c_proj
        torch.autograd.grad(out, (x, w_lin, b), gy)

    def cross_entropy():
        loss = fastgpt.fused_linear_cross_entropy(x, w_head, targets)
        torch.autograd.grad(loss, (x, w_head))

    return {"layernorm": layernorm, "attention": attention, "mlp": mlp, "linear": linear,
            "cross_entropy": cross_entropy}


def part_ops(out: Path) -> dict:
    cases = op_cases()
    backends = ["torch", "triton"] + (["cuda"] if cuda_extension_available() else [])
    rows = {}
    for name, fn in cases.items():
        for backend in backends:
            with fastgpt.use_backend(backend):
                rows[f"{name}/{backend}"] = host_us(fn)
    compiled = torch.compile(cases["layernorm"])
    with fastgpt.use_backend("torch"):
        rows["layernorm/torch-compile"] = host_us(compiled)
    lines = ["| op/backend | host us per fwd+bwd |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rows.items()]
    (out / "host-ops.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def train_step(name: str):
    """One optimizer step of bench_train_step's configuration `name` (a callable)."""
    import bench_train_step
    return bench_train_step.build(bench_train_step.CONFIGS[name])[1]


def _profile_to_file(fn, calls: int, path: Path, top: int = 40) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    path.write_text(text.getvalue())


def cuda_kernel_times(fn, calls: int, warmup: int = 4) -> list[tuple[str, float, float]]:
    """(kernel, us per call of fn, launches per call of fn) of the CUDA kernels fn runs, most
    time first (torch.profiler over `calls` calls after `warmup`)."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sorted(((e.key, e.device_time_total / calls, e.count / calls) for e in events),
                  key=lambda row: -row[1])


def part_profile(out: Path) -> None:
    layernorm = op_cases()["layernorm"]
    with fastgpt.use_backend("triton"):
        for _ in range(20):
            layernorm()
        _profile_to_file(layernorm, 300, out / "profile-layernorm.txt")
    step = train_step("triton")
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    _profile_to_file(step, 5, out / "profile-train-step.txt", top=60)


def part_layernorm_kernels(out: Path, N: int = 65536, C: int = 768) -> None:
    """CUDA time per kernel of one add+LayerNorm fwd+bwd at the benchmark's shape, per backend."""
    x, r, w, b = _leaf(N, C), _leaf(N, C), _leaf(C), _leaf(C)
    gy, gs = torch.randn_like(x), torch.randn_like(x)

    def fwd_bwd():
        y, s = fastgpt.fused_add_layernorm(x, r, w, b)
        torch.autograd.grad((y, s), (x, r, w, b), (gy, gs))

    lines = []
    for backend in ["triton"] + (["cuda"] if cuda_extension_available() else []):
        with fastgpt.use_backend(backend):
            times = cuda_kernel_times(fwd_bwd, calls=10)
        lines += [f"## {backend}", "| kernel | us per call | calls/iter |", "|---|---|---|"]
        lines += [f"| {key[:100]} | {us / count:.1f} | {count:.0f} |" for key, us, count in times]
    (out / "kernels-layernorm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def part_kernels(out: Path, configs=("triton", "reference-compile")) -> dict:
    """GPU kernel time of one training step per bench_train_step configuration, by kernel."""
    summary = {}
    for name in configs:
        times = cuda_kernel_times(train_step(name), calls=5)
        total_ms = sum(us for _, us, _ in times) / 1e3
        lines = [f"{name}: GPU kernel time {total_ms:.2f} ms per step", "",
                 "| kernel | ms/step | calls/step |", "|---|---|---|"]
        lines += [f"| {key[:90]} | {us / 1e3:.3f} | {count:.0f} |" for key, us, count in times[:40]]
        (out / f"kernels-{name}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines[:14]))
        summary[name] = total_ms
        torch._dynamo.reset()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="+", default=["ops", "profile", "kernels"],
                        choices=["ops", "profile", "kernels", "layernorm"])
    parser.add_argument("--configs", nargs="+", default=["triton", "reference-compile"],
                        help="bench_train_step configurations the kernels part profiles")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "host_profile.json"     # parts run separately add to the same file
    result = json.loads(path.read_text()) if path.exists() else {}
    result["environment"] = environment()
    if "ops" in args.parts:
        result["host_us_per_fwd_bwd"] = part_ops(args.out)
    if "profile" in args.parts:
        part_profile(args.out)
    if "layernorm" in args.parts:
        part_layernorm_kernels(args.out)
    if "kernels" in args.parts:
        result["gpu_ms_per_step"] = part_kernels(args.out, args.configs)
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
