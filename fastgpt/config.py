"""Model configuration: the `GPTConfig` dataclass and its named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    block_size: int = 512     # longest sequence the model takes (rows of the position table)
    vocab_size: int = 50304   # GPT-2's 50257 padded up to a multiple of 64 for the matrix units
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True         # biases in Linear and LayerNorm layers, as GPT-2

    def __post_init__(self):
        for field in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, field) < 1:
                raise ValueError(f"GPTConfig.{field} must be >= 1, got {getattr(self, field)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes) -> "GPTConfig":
        return dataclasses.replace(self, **changes)


GPT_PRESETS: dict[str, GPTConfig] = {
    # GPT-2 small, 124M parameters
    "gpt2": GPTConfig(),
    # GPT-2 medium, 350M parameters
    "gpt2-medium": GPTConfig(block_size=1024, n_layer=24, n_head=16, n_embd=1024),
    # nanoGPT's shakespeare-char shape: the GPU default of fastgpt-train
    "shakespeare-char": GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384,
                                  dropout=0.2, bias=False),
    # nanoGPT's CPU demo shape: the CPU default of fastgpt-train
    "cpu-char": GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128,
                          dropout=0.0, bias=False),
}


def gpt_preset(name: str, **overrides) -> GPTConfig:
    """The named preset, with any fields overridden."""
    if name not in GPT_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(GPT_PRESETS)}")
    return GPT_PRESETS[name].replace(**overrides)
