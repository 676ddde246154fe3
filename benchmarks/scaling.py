"""Multi-GPU scaling of fastgpt-train: GPT-2 124M at block 512 on the triton backend, one GPU
against N GPUs (torchrun, NCCL) at the same per-GPU batch, and the N-GPU loss curve against one
GPU trained on the same global batch.

Runs, each a fastgpt-train process (or torchrun job) with the same flags but for what its name says:
    1gpu          one GPU (CUDA_VISIBLE_DEVICES=0), --batch-size B, no accumulation: the default
                  CUDA-graphed step
    {N}gpu        torchrun --nproc_per_node N, batch B on each GPU: each rank replays its graphed
                  step, which averages the gradients over the ranks inside the graph
    1gpu-eager, {N}gpu-eager
                  the same with --no-cuda-graph (N GPUs: DDP) [--eager]
and, in this process on GPU 0, the same seed, schedule and graphed step on the N ranks' batches
of every step (what the N-GPU run computes, up to rounding):
    global-batch              the N batches concatenated: one batch of N x B sequences (on the
                              parameter copies, as the runs without accumulation are)
    global-batch-accumulated  the N batches as N accumulated micro-steps (N x B sequences too;
                              the cast step: no copies with accumulation)

tokens/s of a run: the median over its log intervals (--log-interval steps each), the first
interval (compilation, autotuning, warm-up, capture) left out. Scaling efficiency: N-GPU tokens/s
over N x the 1-GPU tokens/s (issue 9's Must: at least 0.90). Peak memory: each rank's
torch.cuda.max_memory_allocated at the end (fastgpt-train's --metrics-file summary).
Loss curves, bound stated up front: the moving averages (window --smooth) of the N-GPU run's
per-step loss (mean over ranks) and of each global-batch run differ by at most
max(--tolerance, 2 x noise) nats at every step, where noise is the largest difference between
the two global-batch runs: the same data and weights, only regrouped (and one on the parameter
copies, the other on the cast step), so only rounding differs, and rounding differences grow over
a run of a few hundred steps (convergence.py's rule).

Writes OUT/scaling.json (rows, losses, commands, device, versions), OUT/logs/*.log and OUT/*.jsonl,
prints a table last; exits 1 when the loss bound is broken or a run fails.

    python benchmarks/scaling.py --out scaling --gpus 2            # 2 GPUs, ~4 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from convergence import max_abs_difference, moving_average
from timing import environment

from fastgpt import distributed
from fastgpt.backend import use_backend
from fastgpt.cuda_graph import GraphedTrainStep
from fastgpt.data import BatchSampler, prepare_dataset
from fastgpt.train import (build_parser, initial_model_and_optimizer, learning_rate_at, model_config,
                           optimizer_writes_copies, resolve_config)

# NVLink multicast stays off on the lent multi-GPU machines (the device README): also in children
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def train_flags(args, metrics: Path, out_dir: Path, eager: bool) -> list[str]:
    flags = ["--preset", "gpt2", "--backend", args.backend, "--batch-size", args.batch_size,
             "--gradient-accumulation-steps", 1, "--max-iters", args.steps, "--eval-interval", args.steps,
             "--log-interval", args.log_interval, "--sample-tokens", 0, "--no-progress",
             "--metrics-file", metrics, "--out-dir", out_dir]
    return [str(f) for f in flags] + (["--no-cuda-graph"] if eager else [])


def launch(name: str, gpus: int, flags: list[str], out: Path, timeout: float) -> dict:
    """Run fastgpt-train on `gpus` GPUs; its metrics records (the last one the summary)."""
    if gpus == 1:
        command = [sys.executable, "-m", "fastgpt.train", *flags]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   "-m", "fastgpt.train", *flags]
    env = {**os.environ, **NO_MULTICAST, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(gpus)))}
    log = out / "logs" / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    metrics_file = Path(flags[flags.index("--metrics-file") + 1])
    metrics = [json.loads(line) for line in metrics_file.read_text().splitlines()] if metrics_file.exists() else []
    if done.returncode != 0 or not metrics or not metrics[-1].get("summary"):
        raise RuntimeError(f"{name} failed (exit {done.returncode}); see {log}")
    print(f"{name}: {time.perf_counter() - start:.0f} s wall", flush=True)
    return {"command": " ".join(command), "gpus": gpus, "records": metrics[:-1], "summary": metrics[-1]}


def tokens_per_second(run: dict) -> float:
    """Median over the log intervals after the first."""
    return statistics.median(r["tokens_per_s"] for r in run["records"][1:])


def global_batch_losses(flags: list[str], world: int, accumulate: bool) -> list[float]:
    """One GPU, every step on the `world` ranks' batches (fastgpt-train's samplers, model,
    optimizer and graphed step), concatenated or as `world` accumulated micro-steps: the losses
    the world-rank run must equal up to rounding."""
    cfg, _ = resolve_config(vars(build_parser().parse_args(flags)))
    device = torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = True
    dataset = prepare_dataset(cfg.data, cfg.tokenizer, cfg.cache_dir, log=lambda *a: None)
    mc = model_config(cfg, dataset.tokenizer)
    samplers = [BatchSampler(dataset.train, cfg.batch_size, mc.block_size, cfg.seed, "train", rank, world)
                for rank in range(world)]
    model, optimizer = initial_model_and_optimizer(cfg, mc, device)
    precision = distributed.autocast(device, distributed.resolve_dtype(cfg.dtype, device))
    n_micro = world if accumulate else 1
    # the parameter copies where fastgpt-train would use them (so, as on the ranks, not with accumulation)
    step = GraphedTrainStep(model, optimizer, n_micro, cfg.grad_clip, precision,
                            optimizer_writes_copies=optimizer_writes_copies(cfg, optimizer, n_micro, precision))
    losses = []
    with use_backend(cfg.backend):
        for s in range(cfg.max_iters):
            batches = [tuple(t.to(device) for t in sampler.batch(s)) for sampler in samplers]
            if not accumulate:
                batches = [tuple(torch.cat(parts) for parts in zip(*batches))]
            losses.append(step(batches, learning_rate_at(s, cfg)))
    return torch.stack(losses).tolist()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--backend", default="triton")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per GPU per step")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-interval", type=int, default=25)
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window (steps)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="absolute floor of the bound on the smoothed loss difference (nats)")
    parser.add_argument("--eager", action="store_true", help="also the --no-cuda-graph runs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    parser.add_argument("--out", type=Path, default=Path("scaling"))
    args = parser.parse_args(argv)
    if torch.cuda.device_count() < args.gpus:
        parser.error(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} GPU(s)")
    (args.out / "logs").mkdir(parents=True, exist_ok=True)

    n = args.gpus
    scratch = Path(tempfile.mkdtemp(prefix="fastgpt-scaling-"))   # checkpoints: 1.5 GB each, not results
    plan = [("1gpu", 1, False), (f"{n}gpu", n, False)]
    if args.eager:
        plan += [("1gpu-eager", 1, True), (f"{n}gpu-eager", n, True)]
    runs = {}
    for name, gpus, eager in plan:
        flags = train_flags(args, args.out / f"{name}.jsonl", scratch / name, eager)
        runs[name] = launch(name, gpus, flags, args.out, args.timeout)
        shutil.rmtree(scratch / name, ignore_errors=True)
    references = {}
    for name, accumulate in (("global-batch", False), ("global-batch-accumulated", True)):
        start = time.perf_counter()
        references[name] = global_batch_losses(train_flags(args, scratch / "unused.jsonl", scratch, False), n,
                                               accumulate)
        print(f"{name}: {time.perf_counter() - start:.0f} s wall", flush=True)

    rows = []
    for name, run in runs.items():
        base = runs["1gpu-eager" if name.endswith("eager") else "1gpu"]
        tps = tokens_per_second(run)
        summary = run["summary"]
        rows.append({"run": name, "gpus": run["gpus"], "step": summary["step_kind"], "tokens_per_s": tps,
                     "tokens_per_s_per_gpu": tps / run["gpus"],
                     "ms_per_step": statistics.median(r["ms_per_step"] for r in run["records"][1:]),
                     "mfu": statistics.median(r["mfu"] for r in run["records"][1:] if "mfu" in r) if any(
                         "mfu" in r for r in run["records"]) else None,
                     "scaling_efficiency": tps / (run["gpus"] * tokens_per_second(base)),
                     "peak_memory_gib_per_rank": summary["peak_memory_gib_per_rank"],
                     "final_val_loss": summary["evals"][str(summary["steps"])]["val"]})
    multi = [float(v) for _, v in sorted(runs[f"{n}gpu"]["summary"]["losses"].items(), key=lambda kv: int(kv[0]))]
    smooth = {name: moving_average(v, args.smooth) for name, v in references.items()}
    noise = max_abs_difference(*smooth.values())
    bound = max(args.tolerance, 2 * noise)
    smooth_multi = moving_average(multi, args.smooth)
    loss_diff = {name: max_abs_difference(smooth_multi, v) for name, v in smooth.items()}
    first_steps_diff = max(max_abs_difference(multi[:10], v[:10]) for v in references.values())
    efficiency = next(r["scaling_efficiency"] for r in rows if r["run"] == f"{n}gpu")
    loss_ok = (max(loss_diff.values()) <= bound
               and all(len(v) == args.steps for v in [multi, *references.values()]))

    result = {"environment": {**environment(), "gpus": n}, "args": {k: str(v) for k, v in vars(args).items()},
              "command": "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows, "commands": {name: run["command"] for name, run in runs.items()},
              "losses": {f"{n}gpu": multi, **references},
              "max_smoothed_loss_difference": loss_diff, "regrouping_noise": noise,
              "max_loss_difference_first_10_steps": first_steps_diff,
              "loss_bound": bound, "loss_curves_match": loss_ok, "scaling_efficiency": efficiency}
    (args.out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{result['environment']['device']} x {n}, torch {result['environment']['torch']}, "
          f"triton {result['environment']['triton']}; wrote {args.out / 'scaling.json'}")
    print(scaling_table(result))
    return 0 if loss_ok else 1


def scaling_table(result: dict) -> str:
    """The markdown table of a scaling.json (also RESULTS.md's)."""
    lines = ["| run | GPUs | training step | tokens/s | tokens/s per GPU | ms/step | MFU | scaling efficiency | "
             "peak GiB per GPU | val loss |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        peaks = ", ".join(f"{p:.2f}" for p in r["peak_memory_gib_per_rank"])
        lines.append(f"| {r['run']} | {r['gpus']} | {r['step']} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s_per_gpu']:,.0f} | {r['ms_per_step']:.2f} | {mfu} | "
                     f"{r['scaling_efficiency']:.1%} | {peaks} | {r['final_val_loss']:.4f} |")
    lines.append("")
    n, diffs = result["args"]["gpus"], result["max_smoothed_loss_difference"]
    lines.append(f"Loss (moving averages over {result['args']['smooth']} steps): the {n}-GPU run against one GPU "
                 "on the same global batch, " + ", ".join(f"{name} {d:.4f}" for name, d in diffs.items())
                 + f" nats at most; the two global-batch runs against each other (regrouping noise) "
                 f"{result['regrouping_noise']:.4f}; bound max({result['args']['tolerance']}, 2 x noise) = "
                 f"{result['loss_bound']:.4f}: {'PASS' if result['loss_curves_match'] else 'FAIL'}. First 10 "
                 f"steps, unsmoothed: {result['max_loss_difference_first_10_steps']:.4f}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
