"""Checkpoints: atomic writes (a failed write leaves the previous checkpoint whole), clear errors
for missing, foreign, truncated and mismatched checkpoints, and resume reproducing the losses
of an uninterrupted run exactly on the CPU."""
import os

import pytest
import torch

from fastgpt.checkpoint import (CheckpointError, check_model_config, ensure_writable_folder, load_checkpoint,
                                save_checkpoint, unwrap_model)
from fastgpt.config import GPTConfig
from fastgpt.model import GPT
from fastgpt.train import resolve_config, train
from test_train import tiny_config

CONFIG = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8)


def state(step: int) -> dict:
    return {"step": step, "model_config": vars(CONFIG), "model": GPT(CONFIG).state_dict()}


def test_round_trip(tmp_path):
    path = save_checkpoint(state(3), tmp_path / "ckpt.pt")
    loaded = load_checkpoint(tmp_path)          # a folder means its ckpt.pt
    assert loaded["step"] == 3 and loaded["format"] == "fastgpt-checkpoint"
    assert os.listdir(tmp_path) == ["ckpt.pt"] and path == tmp_path / "ckpt.pt"


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(1), path)
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(state(2), path)
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]   # no temporary file left behind


def test_interrupted_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state(1), path)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(state(2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and os.listdir(tmp_path) == ["ckpt.pt"]


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"model": {}}, tmp_path / "nanogpt.pt")
    with pytest.raises(CheckpointError, match="is not a fastgpt checkpoint"):
        load_checkpoint(tmp_path / "nanogpt.pt")
    save_checkpoint(state(1), tmp_path / "ckpt.pt")
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_model_config_mismatch_names_the_fields():
    check_model_config(state(1), CONFIG.replace(dropout=0.3))   # dropout is not architecture
    with pytest.raises(CheckpointError, match=r"n_layer 1 vs 2; n_embd 8 vs 16"):
        check_model_config(state(1), CONFIG.replace(n_layer=2, n_embd=16))


def test_writable_folder(tmp_path):
    assert ensure_writable_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="cannot write to the output folder"):
        ensure_writable_folder(tmp_path / "file" / "out")


def test_unwrap_model():
    model = GPT(CONFIG)
    assert unwrap_model(model) is model
    compiled = torch.nn.Module()
    compiled._orig_mod = model            # what torch.compile's OptimizedModule holds
    ddp = torch.nn.Module()
    ddp.module = compiled                 # what DistributedDataParallel holds
    assert unwrap_model(ddp) is model


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_reproduces_the_uninterrupted_losses_exactly(tmp_path, corpus, accumulation):  # noqa: F811
    """12 steps in one go == 5 steps, stop, resume to 12: bit for bit, with dropout on (so the
    RNG state must be restored) and the cosine schedule spanning the interruption."""
    settings = dict(max_iters=12, dropout=0.2, gradient_accumulation_steps=accumulation, eval_interval=4,
                    sample_tokens=0)
    whole = train(tiny_config(tmp_path / "whole", corpus, **settings))
    first = train(tiny_config(tmp_path / "split", corpus, **{**settings, "max_iters": 5, "lr_decay_iters": 12}))
    assert load_checkpoint(tmp_path / "split" / "out")["step"] == 5
    cfg, resumed_state = resolve_config({"resume": True, "out_dir": str(tmp_path / "split" / "out"),
                                         "max_iters": 12})
    assert cfg.dropout == 0.2 and cfg.lr_decay_iters == 12 and cfg.gradient_accumulation_steps == accumulation
    rest = train(cfg, resumed_state)
    assert sorted(first.losses) == list(range(1, 6)) and sorted(rest.losses) == list(range(6, 13))
    assert {**first.losses, **rest.losses} == whole.losses          # exact, not approximate
    assert rest.evals[12] == whole.evals[12]
    a, b = load_checkpoint(tmp_path / "whole" / "out"), load_checkpoint(tmp_path / "split" / "out")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
