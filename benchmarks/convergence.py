"""Convergence check: the reference (torch backend) and fastgpt (triton backend) train to the same
losses from the same seed and the same batches.

A small GPT-2-shaped model (6 layers, 384 wide, 6 heads, block 256, biases as GPT-2, no dropout;
before session 7 without biases) on character-level
Tiny Shakespeare (fastgpt/data/tinyshakespeare.txt, 65 characters), AdamW, bf16 autocast, for a
few hundred steps. Four runs from identical weights and batches:
    reference        torch backend, bf16 autocast
    fastgpt          triton backend, bf16 autocast (the eager step)
    fastgpt-graphed  the same with the arithmetic of fastgpt-train's CUDA-graphed step: the model
                     on persistent bf16 parameter copies (embeddings included) that the fused
                     AdamW step writes, clipping as a gradient scale, the bias-gradient kernels
    reference-fp32   torch backend without autocast: sets the scale of bf16 rounding noise
Bound, stated up front: the moving averages (window --smooth steps) of fastgpt and the reference
differ by at most max(--tolerance, 2 x the largest difference between the reference in bf16 and
in fp32), in nats, at every step; the same bound for fastgpt-graphed. That is, fastgpt may differ from the reference by no more than
twice what bf16 alone does to the reference (and never needs to beat a small absolute floor).

Writes a JSON (every run's per-step losses, the smoothed differences, the bound, the verdict)
and prints a table; exits 1 when the bound is broken.

    python benchmarks/convergence.py --out convergence.json          # GPU, about a minute
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

import fastgpt
from fastgpt.ops.adamw import step_with_copies
from fastgpt.ops.autocast import ParameterCopies
from fastgpt.ops.dispatch import replayed_steps

DATA = Path(fastgpt.__file__).parent / "data" / "tinyshakespeare.txt"
MODEL = fastgpt.GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384,
                          dropout=0.0, bias=True)


def char_tokens(text: str) -> tuple[torch.Tensor, int]:
    """The text as character ids over its sorted alphabet, and the alphabet's size."""
    alphabet = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(alphabet)}
    return torch.tensor([lookup[ch] for ch in text], dtype=torch.long), len(alphabet)


def batches(data: torch.Tensor, steps: int, batch: int, block: int, seed: int):
    """The same `steps` random (x, y) windows for every run."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - block - 1, (batch,), generator=g)
        x = torch.stack([data[s:s + block] for s in starts])
        y = torch.stack([data[s + 1:s + 1 + block] for s in starts])
        yield x, y


def train(backend: str, config: fastgpt.GPTConfig, data: torch.Tensor, *, steps: int, batch: int,
          lr: float, warmup: int, seed: int, device: str, autocast_dtype: torch.dtype | None,
          graphed_numerics: bool = False) -> list[float]:
    """Per-step training losses of a fresh model (weights from `seed`) on `backend`.

    graphed_numerics: the arithmetic of fastgpt-train's CUDA-graphed step (GraphedTrainStep with
    optimizer_writes_copies, its default on one GPU), run eagerly: the model on ParameterCopies in
    the autocast dtype, AdamW by step_with_copies (clipping folded in as a gradient scale), and the
    kernels of replayed steps (replayed_steps: the bias-gradient column sums)."""
    torch.manual_seed(seed)
    model = fastgpt.GPT(config).to(device)
    model.fuse_bias_gradients(backend != "torch")      # the reference: nanoGPT's arrangement
    optimizer = model.configure_optimizer(weight_decay=0.1, learning_rate=lr, betas=(0.9, 0.95),
                                          device_type=torch.device(device).type)
    copies = ParameterCopies(model, autocast_dtype) if graphed_numerics else None
    losses = []
    for step, (x, y) in enumerate(batches(data, steps, batch, config.block_size, seed)):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        x, y = x.to(device), y.to(device)
        with fastgpt.use_backend(backend), torch.autocast(torch.device(device).type,
                                                          dtype=autocast_dtype or torch.float32,
                                                          enabled=autocast_dtype is not None):
            if graphed_numerics:
                with replayed_steps():
                    _, loss = copies.forward(x, y)
            else:
                _, loss = model(x, y)
        loss.backward()
        if graphed_numerics:
            step_with_copies(optimizer, copies, 1.0)
            copies.zero_grad()
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def max_abs_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--smooth", type=int, default=25, help="moving-average window (steps)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="absolute floor of the bound on the smoothed difference (nats)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("convergence.json"))
    args = parser.parse_args(argv)
    if args.device == "cpu":
        print("warning: on CPU the triton backend runs in the interpreter (TRITON_INTERPRET=1): "
              "use tests/test_convergence.py there", file=sys.stderr)

    data, vocab = char_tokens(DATA.read_text(encoding="utf-8"))
    config = MODEL.replace(vocab_size=vocab)
    common = dict(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                  seed=args.seed, device=args.device)
    # name: (backend, autocast dtype, graphed_numerics)
    runs = {"reference": ("torch", torch.bfloat16, False), "fastgpt": ("triton", torch.bfloat16, False),
            "fastgpt-graphed": ("triton", torch.bfloat16, True), "reference-fp32": ("torch", None, False)}
    losses, seconds = {}, {}
    for name, (backend, dtype, graphed) in runs.items():
        start = time.perf_counter()
        losses[name] = train(backend, config, data, autocast_dtype=dtype, graphed_numerics=graphed, **common)
        seconds[name] = time.perf_counter() - start
        print(f"{name:15s} {args.steps} steps in {seconds[name]:.1f} s, "
              f"final loss {losses[name][-1]:.4f}", flush=True)

    smooth = {name: moving_average(v, args.smooth) for name, v in losses.items()}
    diff = max_abs_difference(smooth["fastgpt"], smooth["reference"])
    graphed_diff = max_abs_difference(smooth["fastgpt-graphed"], smooth["reference"])
    bf16_noise = max_abs_difference(smooth["reference"], smooth["reference-fp32"])
    bound = max(args.tolerance, 2 * bf16_noise)
    ok = (max(diff, graphed_diff) <= bound
          and all(math.isfinite(v) for v in losses["fastgpt"] + losses["fastgpt-graphed"]))

    print(f"\n{'step':>6} | {'reference':>9} | {'fastgpt':>9} | {'graphed':>9} | {'ref fp32':>9} | smoothed |diff|")
    for step in sorted(set(range(0, args.steps, max(1, args.steps // 10))) | {args.steps - 1}):
        print(f"{step:6d} | {smooth['reference'][step]:9.4f} | {smooth['fastgpt'][step]:9.4f} | "
              f"{smooth['fastgpt-graphed'][step]:9.4f} | {smooth['reference-fp32'][step]:9.4f} | "
              f"{abs(smooth['fastgpt'][step] - smooth['reference'][step]):.4f}")
    print(f"\nmax |smoothed fastgpt - reference| = {diff:.4f} nats (graphed step's arithmetic: "
          f"{graphed_diff:.4f}); bf16 noise of the reference "
          f"(bf16 vs fp32) = {bf16_noise:.4f}; bound max({args.tolerance}, 2 x noise) = {bound:.4f}: "
          f"{'PASS' if ok else 'FAIL'}")

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"device": device_name, "torch": torch.__version__, "model": dataclasses.asdict(config),
              "args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds,
              "losses": losses, "smoothed": smooth, "max_smoothed_difference": diff,
              "max_smoothed_difference_graphed": graphed_diff,
              "bf16_noise": bf16_noise, "bound": bound, "passed": ok}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
