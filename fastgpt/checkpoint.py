"""Checkpoints: everything a run needs to continue exactly where it stopped, written atomically.

A checkpoint is one torch.save'd dict (loadable with weights_only=True):
  format, version     "fastgpt-checkpoint", CHECKPOINT_VERSION
  model               the model's state dict (unwrapped from DDP / torch.compile)
  model_config        GPTConfig as a dict
  train_config        TrainConfig as a dict (the run's settings)
  optimizer, scaler   AdamW and GradScaler state dicts
  step                optimizer steps done
  sampler             the training batch sampler's position (fastgpt.data.BatchSampler)
  rng                 per rank: the torch CPU generator and the CUDA one of the rank's device
  tokenizer           the tokenizer's to_dict(), so sampling decodes exactly as training encoded
  data                the dataset's meta (source, content hash, token counts)
  world_size          how many ranks wrote it
  best_val_loss, last_eval_step

save_checkpoint writes to a temporary file in the same folder and renames it over the old one
(os.replace is atomic on POSIX and Windows), so a crash or a full disk mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from fastgpt.config import GPTConfig

CHECKPOINT_FORMAT = "fastgpt-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "ckpt.pt"
# the fields that make two models' weights interchangeable (dropout is a training setting)
ARCHITECTURE_FIELDS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model being built."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the ckpt.pt inside a run's output folder."""
    path = Path(path).expanduser()
    return path / CHECKPOINT_NAME if path.is_dir() else path


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any training."""
    folder = Path(folder).expanduser()
    probe = folder / f".write-test.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(f"cannot write to the output folder {str(folder)!r}: "
                              f"{e.strerror or e}; choose another with --out-dir") from None
    return folder


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through `write(f)` so that readers see either the old file or the whole new
    one: a temporary file in the same folder, fsync, then os.replace over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)   # only left when the write failed
    return path


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically (the previous checkpoint survives a failed write)."""
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return write_atomic(path, lambda f: torch.save(state, f))


def is_fastgpt_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a fastgpt checkpoint onto the CPU, or raise CheckpointError saying why not."""
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {str(e).splitlines()[0]}") from None
    if not is_fastgpt_checkpoint(state):
        raise CheckpointError(f"{str(path)!r} is not a fastgpt checkpoint (for nanoGPT or Hugging Face "
                              "weights use fastgpt-sample --pretrained)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{str(path)!r} is checkpoint version {state.get('version')}, "
                              f"this fastgpt reads version {CHECKPOINT_VERSION}")
    return state


def check_model_config(state: dict, config: GPTConfig, source: str = "the checkpoint") -> None:
    """Raise CheckpointError naming every architecture field where `config` and `state` differ."""
    stored = state["model_config"]
    diffs = [f"{f} {stored.get(f)} vs {getattr(config, f)}"
             for f in ARCHITECTURE_FIELDS if stored.get(f) != getattr(config, f)]
    if diffs:
        raise CheckpointError(f"{source} holds a model of another config ({'; '.join(diffs)}, "
                              "checkpoint vs this run): resume with the original run's settings "
                              "or train into another --out-dir")


def model_config_of(state: dict, **overrides) -> GPTConfig:
    """The GPTConfig a checkpoint was trained with, with any fields overridden."""
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in state["model_config"].items() if k in known}).replace(**overrides)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain GPT inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):          # DistributedDataParallel
            model = model.module
        elif hasattr(model, "_orig_mod"):     # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def rng_state(device: torch.device) -> dict:
    """This process's random state: the torch CPU generator and the CUDA one of `device`."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
