"""The CPU version of benchmarks/convergence.py: the torch and triton backends (Triton kernels in
the interpreter) train a tiny GPT on the same Tiny Shakespeare batches to the same losses.

In fp32 the two backends differ only by rounding order, so the losses agree to a relative
1e-5 at every step (the drift measured over these 6 AdamW steps is about 1e-7); a wrong gradient
direction in any fused op shows up from the second step on. (AdamW does not see a uniform scale
error of a gradient: the per-op tests check those.) The GPU check in bf16 is
benchmarks/convergence.py. On a GPU this test runs on CUDA tensors, where the Triton kernels'
fp32 dots use TF32 (10-bit mantissa), so the bound there is the TF32 one, 2e-3.
"""
import importlib.util
from pathlib import Path

import pytest
import torch

import fastgpt

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "convergence.py"
TINY = fastgpt.GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32,
                         dropout=0.0, bias=True)
REL_TOL = {"cpu": 1e-5, "cuda": 2e-3}


@pytest.fixture(scope="module")
def convergence():
    spec = importlib.util.spec_from_file_location("convergence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backends_train_to_the_same_losses(convergence, device):
    data, vocab = convergence.char_tokens(convergence.DATA.read_text(encoding="utf-8")[:20000])
    assert vocab <= TINY.vocab_size
    run = dict(steps=6, batch=4, lr=3e-3, warmup=2, seed=0, device=device, autocast_dtype=None)
    reference = convergence.train("torch", TINY, data, **run)
    fused = convergence.train("triton", TINY, data, **run)
    assert reference[-1] < reference[0]          # it learns, so the steps are not trivial
    tol = REL_TOL[torch.device(device).type]
    for step, (ours, ref) in enumerate(zip(fused, reference)):
        assert abs(ours - ref) <= tol * abs(ref), f"step {step}: triton {ours} vs torch {ref}"


def test_graphed_step_arithmetic_trains_as_plain_autocast(convergence, device):
    """bf16: the CUDA-graphed step's arithmetic (the model on bf16 parameter copies, embeddings
    included, written by the fused AdamW step with clipping as a gradient scale; the bias-gradient
    kernels) against plain autocast, 60 steps, with convergence.py's bound:
    smoothed losses within max(0.05, 2 x what bf16 does to the reference) nats."""
    data, _ = convergence.char_tokens(convergence.DATA.read_text(encoding="utf-8")[:20000])
    run = dict(steps=60, batch=4, lr=3e-3, warmup=5, seed=0, device=device)
    plain = convergence.train("torch", TINY, data, autocast_dtype=torch.bfloat16, **run)
    graphed = convergence.train("torch", TINY, data, autocast_dtype=torch.bfloat16, graphed_numerics=True, **run)
    fp32 = convergence.train("torch", TINY, data, autocast_dtype=None, **run)
    smooth = {name: convergence.moving_average(v, 10) for name, v in
              (("plain", plain), ("graphed", graphed), ("fp32", fp32))}
    assert smooth["graphed"][-1] < smooth["graphed"][0] - 0.5          # it learns
    bound = max(0.05, 2 * convergence.max_abs_difference(smooth["plain"], smooth["fp32"]))
    assert convergence.max_abs_difference(smooth["graphed"], smooth["plain"]) <= bound


def test_moving_average_and_difference(convergence):
    assert convergence.moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert convergence.max_abs_difference([1.0, 2.0], [1.5, 1.0]) == 1.0
