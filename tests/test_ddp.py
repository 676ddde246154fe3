"""DDP through torchrun on 2 CPU processes (gloo): training equals one process trained on the
concatenated global batch, gradient accumulation defers the all-reduce (no_sync), and a 2-rank
checkpoint resumes on 2 ranks (every rank restored: the replicas stay in sync) and on 1.

Run with the torch backend and with our Triton kernels (in the interpreter: slow, so fewer
steps), so the fused ops' autograd Functions are checked under DDP too."""
import re
import subprocess
import sys

import pytest
import torch

from fastgpt.backend import use_backend
from fastgpt.checkpoint import load_checkpoint
from fastgpt.data import BatchSampler, prepare_dataset
from fastgpt.model import GPT
from fastgpt.train import learning_rate_at, main, model_config, train_step
from test_train import tiny_config, tiny_flags

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is missing")

WORLD, ACCUMULATION = 2, 2
STEPS = {"torch": 6, "triton": 2}   # optimizer steps in all; the first half, then a resume


def torchrun(args, timeout=120):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "fastgpt.train", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def logged_losses(stdout: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in re.findall(r"^step (\d+)/\d+ \| loss ([\d.]+)", stdout, re.M)}


def single_process_reference(cfg, steps):
    """One process, each step on the ranks' micro-batches concatenated: what DDP must equal."""
    dataset = prepare_dataset(cfg.data, cfg.tokenizer, cfg.cache_dir, log=lambda *a: None)
    mc = model_config(cfg, dataset.tokenizer)
    samplers = [BatchSampler(dataset.train, cfg.batch_size, mc.block_size, cfg.seed, "train", rank, WORLD)
                for rank in range(WORLD)]
    torch.manual_seed(cfg.seed)
    model = GPT(mc)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = {}
    with use_backend(cfg.backend):
        for step in range(steps):
            micro = [tuple(torch.cat(parts) for parts in zip(*(s.batch(step * ACCUMULATION + m) for s in samplers)))
                     for m in range(ACCUMULATION)]
            loss = train_step(model, optimizer, scaler, iter(micro), ACCUMULATION, learning_rate_at(step, cfg),
                              cfg.grad_clip, torch.autocast("cpu", enabled=False))
            losses[step + 1] = loss.item()
    return model, losses


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="CPU ranks run Triton in the interpreter, which tests/conftest.py "
    "turns on only where there is no GPU (the GPU's triton runs in tests/test_train.py)"))])
def test_two_ranks_equal_one_process_on_the_global_batch_and_resume(tmp_path, corpus, backend):  # noqa: F811
    steps = STEPS[backend]
    settings = dict(max_iters=steps // 2, lr_decay_iters=steps, gradient_accumulation_steps=ACCUMULATION,
                    eval_interval=steps, sample_tokens=0, device="cpu", backend=backend)
    first = torchrun(tiny_flags(tmp_path, corpus, **settings))
    assert "x 2 rank(s) = 256 tokens/step" in first      # 4 sequences x 16 tokens x 2 micro-steps x 2 ranks
    assert f"backend {backend}" in first
    state = load_checkpoint(tmp_path / "out")
    assert state["step"] == steps // 2 and state["world_size"] == WORLD and len(state["rng"]) == WORLD
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])   # per-rank dropout streams

    resumed = torchrun(["--resume", "--out-dir", tmp_path / "out", "--max-iters", steps])
    assert f"step {steps // 2}/" not in resumed and f"step {steps}/{steps}" in resumed
    final = load_checkpoint(tmp_path / "out")
    assert final["step"] == steps

    model, ref_losses = single_process_reference(tiny_config(tmp_path, corpus, **settings), steps)
    ddp_losses = {**logged_losses(first), **logged_losses(resumed)}
    assert sorted(ddp_losses) == list(range(1, steps + 1))
    for step, loss in ddp_losses.items():
        assert loss == pytest.approx(ref_losses[step], abs=1e-4), step   # the log prints 4 decimals
    for name, ref in model.state_dict().items():
        torch.testing.assert_close(final["model"][name], ref, rtol=1e-5, atol=1e-6, msg=name)


def test_a_two_rank_checkpoint_continues_in_one_process(tmp_path, corpus, capsys):  # noqa: F811
    torchrun(tiny_flags(tmp_path, corpus, max_iters=2, sample_tokens=0, device="cpu"))
    assert main(["--resume", "--out-dir", str(tmp_path / "out"), "--max-iters", "3"]) == 0
    assert "resuming a 2-rank checkpoint on 1 rank(s)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "out")["step"] == 3
