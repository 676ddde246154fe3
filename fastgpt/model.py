"""A GPT-2 in one readable file, nanoGPT-style, whose hot paths are fastgpt's fused ops.

Pre-LN transformer: token + position embeddings (the tables' gradients by fastgpt's embedding
backward), n_layer blocks of causal self-attention and a 4x GELU MLP, a final LayerNorm and an
LM head tied to the token embedding.

The residual stream is carried as (s, s_bias): each sublayer's c_proj adds its output, and its
bias, to the stream in its GEMM's epilogue (fastgpt.ops.linear's residual), so the LayerNorm
after it reads the one tensor s (run 140: 5 us less a boundary than adding in the norm); s_bias
is that bias, added without its gradient, which the norm's backward returns as the column sum
it makes anyway (fastgpt.ops.layernorm's bias_grad_for; Block.proj_bias_grad_in_layernorm). Each
norm passes s on as its second output, so the stream's two gradients (the norm's and the next
projection's) are summed in the norm's backward kernel. Parameter names follow nanoGPT, so nanoGPT
and Hugging Face GPT-2 state dicts load unchanged (HF's Conv1D weights transposed).

Which kernels run is decided by the backend switch (fastgpt.backend), not here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastgpt.config import GPTConfig
from fastgpt.ops import (FusedAddLayerNorm, FusedCausalSelfAttention, FusedEmbedding, FusedMLP, KVCache,
                         fused_linear_cross_entropy)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = FusedAddLayerNorm(config.n_embd, bias=config.bias)
        self.attn = FusedCausalSelfAttention(config)
        self.ln_2 = FusedAddLayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FusedMLP(config)
        # the sublayers' c_proj bias gradients from the next LayerNorm's backward (False: each
        # c_proj's own column sum)
        self.proj_bias_grad_in_layernorm = True

    def forward(self, s, s_bias, cache: KVCache | None = None):
        # s: the residual stream (B, T, C); s_bias: the c_proj bias the last sublayer added into it
        # whose gradient the next norm returns, or None
        leave = self.proj_bias_grad_in_layernorm
        h, s = self.ln_1(s, bias_grad_for=s_bias)                   # h = ln_1(s), s passed on
        s, s_bias = self.attn.forward_branch(h, cache, s, leave)    # s = s + attn(h), in c_proj's GEMM
        h, s = self.ln_2(s, bias_grad_for=s_bias)
        s, s_bias = self.mlp.forward_branch(h, s, leave)            # s = s + mlp(h)
        return s, s_bias


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=FusedEmbedding(config.vocab_size, config.n_embd),
            wpe=FusedEmbedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=FusedAddLayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight   # weight tying
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[KVCache] | None = None):
        """idx (B, T) token ids -> (logits, loss).

        With targets (B, T) the loss is the mean cross-entropy (targets of -1 ignored) and
        logits is None: the LM head and the loss are fused so the (B*T, vocab) logits never
        exist at once. Without targets, logits are those of the last position only (B, 1, V),
        which is all generation needs; pass `all_logits()` for every position.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids, got {idx.dtype}")
        B, T = idx.shape
        start = caches[0].length if caches else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of length {start + T} is longer than the model's "
                             f"block_size {self.config.block_size}")
        s, head_weight = self._embed(idx, start)                          # (B, T, C), (V, C)
        s_bias = None
        for i, block in enumerate(self.transformer.h):
            s, s_bias = block(s, s_bias, caches[i] if caches else None)
        x, _ = self.transformer.ln_f(s, bias_grad_for=s_bias)             # (B, T, C)
        if targets is not None:
            return None, fused_linear_cross_entropy(x, head_weight, targets, ignore_index=-1)
        return F.linear(x[:, [-1], :], head_weight), None                  # (B, 1, V)

    def _embed(self, idx: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token + position embedding of idx (B, T) at positions start.. (one pass), and the LM
        head's weight. Tied (the default), that is wte's table as returned by the lookup: the
        head's gradient then reaches the lookup's backward, which adds the lookup's rows into it
        (fastgpt.ops.embedding: no (V, C) zero-fill, add pass or copy)."""
        wte, T = self.transformer.wte, idx.shape[1]
        positions = self.transformer.wpe.weight[start:start + T]           # (T, C)
        if self.lm_head.weight is wte.weight:
            # head_weight goes to the LM head alone and no further: its gradient is the head's
            # fresh tensor, which the lookup's backward may add into in place
            x, head_weight = wte.forward_tied(idx, positions, add_in_place=True)
        else:
            x, head_weight = wte(idx, positions), self.lm_head.weight
        return self.transformer.drop(x), head_weight

    def all_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits at every position, (B, T, V): for evaluation and tests, not training."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        s, head_weight = self._embed(idx, 0)
        s_bias = None
        for block in self.transformer.h:
            s, s_bias = block(s, s_bias)
        x, _ = self.transformer.ln_f(s, bias_grad_for=s_bias)
        return F.linear(x, head_weight)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context (e.g. to load GPT-2's 1024 positions into a 512 model)."""
        if block_size > self.config.block_size:
            raise ValueError(f"can only crop block_size down, from {self.config.block_size}")
        self.config = self.config.replace(block_size=block_size)
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def estimate_mfu(self, tokens_per_iter: int, dt: float, peak_flops: float) -> float:
        """Model FLOPs utilisation (PaLM appendix B, as nanoGPT): achieved over peak_flops."""
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.head_dim, cfg.block_size
        flops_per_token = 6 * self.num_params() + 12 * L * H * Q * T
        return flops_per_token * tokens_per_iter / dt / peak_flops

    def fuse_bias_gradients(self, enabled: bool = True) -> None:
        """Where the blocks' bias gradients are computed: enabled (the default), in the fused ops
        (c_attn's from the attention backward, FusedCausalSelfAttention.fuse_qkv_bias_grad; each
        c_proj's from the next LayerNorm's backward, Block.proj_bias_grad_in_layernorm); disabled,
        each bias by its own column sum, as in nanoGPT. Outputs and gradients agree either way
        (tests/test_model.py); the benchmarks and the convergence check give the torch-backend
        reference nanoGPT's arrangement."""
        for block in self.transformer.h:
            block.attn.fuse_qkv_bias_grad = enabled
            block.proj_bias_grad_in_layernorm = enabled

    def configure_optimizer(self, weight_decay: float, learning_rate: float, betas, device_type: str):
        """AdamW with decay on matrices only; fused on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type == "cuda")

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens sampled tokens.

        With the KV cache each new token costs one position; once the context fills
        block_size the window slides and the cache is refilled from the last block_size
        tokens, which gives the same tokens as generation without a cache.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        cfg = self.config
        caches = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = self(idx[:, -cfg.block_size:])
            else:
                if caches is None or idx.size(1) > cfg.block_size:
                    # (re)fill: a fresh cache from the last block_size tokens
                    p = next(self.parameters())
                    caches = [KVCache(idx.size(0), cfg.n_head, cfg.block_size, cfg.head_dim,
                                      p.device, p.dtype) for _ in range(cfg.n_layer)]
                    window = idx[:, -cfg.block_size:]
                    logits, _ = self(window, caches=caches)
                else:
                    logits, _ = self(idx[:, -1:], caches=caches)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits.float(), dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx

    # ---- loading other people's weights (local files only: nothing is downloaded) ----

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, block_size: int | None = None,
                        dropout: float = 0.0) -> "GPT":
        """Load a nanoGPT checkpoint (ckpt.pt) or a Hugging Face GPT-2 file/folder.

        path: a folder holding model.safetensors or pytorch_model.bin (HF layout, Conv1D
        weights, transposed here) or ckpt.pt (nanoGPT), or one such file.
        """
        state, meta = load_state_dict_file(path)
        state = convert_state_dict(state)
        n_layer = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.h."))
        vocab_size, n_embd = state["transformer.wte.weight"].shape
        n_positions = state["transformer.wpe.weight"].shape[0]
        # the head count is not in the weights: nanoGPT's model_args or HF's config.json say it;
        # without either, 64-wide heads as every GPT-2 size
        n_head = meta.get("n_head") or n_embd // 64
        config = GPTConfig(block_size=n_positions, vocab_size=vocab_size, n_layer=n_layer,
                           n_head=n_head, n_embd=n_embd, dropout=dropout,
                           bias="transformer.ln_f.bias" in state)
        model = cls(config)
        model.load_state_dict(state)
        if block_size is not None and block_size < n_positions:
            model.crop_block_size(block_size)
        return model


_HF_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (state dict, model arguments) from a local file or folder: HF (model.safetensors or
    pytorch_model.bin, with config.json beside it) or a nanoGPT ckpt.pt (with model_args)."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "ckpt.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"no model.safetensors, pytorch_model.bin or ckpt.pt in {path}")
    if not path.exists():
        raise FileNotFoundError(f"no such weights file: {path}")
    meta = {}
    if (path.parent / "config.json").exists():
        meta = json.loads((path.parent / "config.json").read_text())
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path)), meta
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj:
        args = obj.get("model_args") or {}
        return obj["model"], dict(args) if isinstance(args, dict) else dataclasses.asdict(args)
    return obj, meta


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map nanoGPT (possibly torch.compile'd) and HF GPT-2 keys onto fastgpt's names."""
    # HF stores Conv1D weights as (in, out): c_attn is (C, 3C) there and (3C, C) in nanoGPT
    c_attn = next(v for k, v in state.items() if k.endswith("attn.c_attn.weight"))
    is_hf = c_attn.shape[1] == 3 * c_attn.shape[0]
    out = {}
    for key, value in state.items():
        key = key.removeprefix("_orig_mod.").removeprefix("module.")
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue   # HF's causal-mask buffers
        if not key.startswith("transformer.") and not key.startswith("lm_head."):
            key = "transformer." + key   # HF GPT2Model has no "transformer." prefix
        if is_hf and key.endswith(_HF_CONV1D):
            value = value.t()
        out[key] = value.contiguous()
    out.setdefault("lm_head.weight", out["transformer.wte.weight"])
    return out
