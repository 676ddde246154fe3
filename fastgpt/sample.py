"""fastgpt-sample: text from a fastgpt checkpoint, or from local nanoGPT / Hugging Face GPT-2 weights.

    fastgpt-sample                                   # out/ckpt.pt, written by fastgpt-train
    fastgpt-sample --checkpoint out --prompt "ROMEO:" --num-samples 2 --max-new-tokens 200
    fastgpt-sample --pretrained ~/models/gpt2 --prompt "Hello, I'm a language model,"

Generation uses the model's KV cache, so each new token costs one position. A checkpoint
carries its tokenizer, so text decodes exactly as training encoded it; pretrained weights use
GPT-2's BPE. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

import torch

from fastgpt.backend import CHOICES as BACKEND_CHOICES
from fastgpt.backend import BackendError, resolve, use_backend
from fastgpt.checkpoint import CheckpointError, load_checkpoint, model_config_of
from fastgpt.cli import ConfigError, add_dataclass_arguments, run_command, setting
from fastgpt.distributed import DeviceError, autocast, resolve_device, resolve_dtype
from fastgpt.model import GPT
from fastgpt.tokenizer import GPT2Tokenizer, Tokenizer, TokenizerError, tokenizer_from_dict


@dataclasses.dataclass
class SampleConfig:
    checkpoint: str = setting("out", "a fastgpt checkpoint file, or the --out-dir of a fastgpt-train run",
                              metavar="PATH")
    pretrained: str | None = setting(None, "instead: local nanoGPT ckpt.pt or Hugging Face GPT-2 "
                                           "weights (file or folder), decoded with GPT-2's BPE", metavar="PATH")
    prompt: str = setting("\n", "text to continue (empty: start from <|endoftext|> where the "
                                "tokenizer has one)")
    num_samples: int = setting(3, "how many continuations")
    max_new_tokens: int = setting(500, "tokens generated per continuation")
    temperature: float = setting(0.8, "< 1 sharper, > 1 more random")
    top_k: int | None = setting(200, "sample among the k likeliest tokens only (none: all)")
    seed: int = setting(1337, "random seed of the sampling")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", metavar="DEVICE")
    dtype: str = setting("auto", "autocast precision", ("auto", "float32", "bfloat16", "float16"))
    backend: str = setting("auto", "which kernels run the model", BACKEND_CHOICES)


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.encode(prompt)
    if not ids and tokenizer.eot is not None:
        ids = [tokenizer.eot]
    if not ids:
        raise TokenizerError("the prompt is empty: give at least one character to continue")
    return ids


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int,
                  num_samples: int = 1, temperature: float = 0.8, top_k: int | None = 200,
                  seed: int = 1337, dtype: torch.dtype = torch.float32) -> list[str]:
    """`num_samples` continuations of `prompt` (the new text only), sampled with the KV cache."""
    device = next(model.parameters()).device
    ids = prompt_ids(tokenizer, prompt)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, dtype):
            out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                 generator=generator)
    finally:
        model.train(was_training)
    return [tokenizer.decode(row[len(ids):].tolist()) for row in out]


def load_model(cfg: SampleConfig, device: torch.device) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer that `cfg.checkpoint` or `cfg.pretrained` names, on `device`."""
    if cfg.pretrained is not None:
        try:
            model = GPT.from_pretrained(cfg.pretrained)
        except (FileNotFoundError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"cannot load weights from {cfg.pretrained!r}: {e}") from None
        tokenizer = GPT2Tokenizer()
        if model.config.vocab_size < tokenizer.vocab_size:
            raise CheckpointError(f"{cfg.pretrained!r} has a vocabulary of {model.config.vocab_size} tokens, "
                                  "not GPT-2's; sample it from a fastgpt checkpoint instead")
    else:
        state = load_checkpoint(cfg.checkpoint)
        model = GPT(model_config_of(state, dropout=0.0))
        model.load_state_dict(state["model"])
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    return model.to(device).eval(), tokenizer


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="fastgpt-sample", description=__doc__.split("\n\n")[0],
                                     argument_default=argparse.SUPPRESS)
    add_dataclass_arguments(parser, SampleConfig)
    cfg = SampleConfig(**vars(parser.parse_args(argv)))
    for name in ("num_samples", "max_new_tokens"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.temperature <= 0:
        raise ConfigError("--temperature must be > 0")
    if cfg.top_k is not None and cfg.top_k < 1:
        raise ConfigError("--top-k must be >= 1 (or none)")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    with use_backend(cfg.backend):
        resolve(device)   # a backend that cannot run here fails now, with its reason
        model, tokenizer = load_model(cfg, device)
        texts = generate_text(model, tokenizer, cfg.prompt, cfg.max_new_tokens, cfg.num_samples,
                              cfg.temperature, cfg.top_k, cfg.seed, dtype)
    for text in texts:
        print(cfg.prompt + text)
        print("---------------")
    return 0


USER_ERRORS = (ConfigError, CheckpointError, DeviceError, BackendError, TokenizerError)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("fastgpt-sample", _main, argv, USER_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
