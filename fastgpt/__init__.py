"""fastgpt: fused GPU kernels for training GPT models fast.

    import fastgpt
    model = fastgpt.GPT(fastgpt.gpt_preset("gpt2"))
    with fastgpt.use_backend("triton"):
        logits, loss = model(idx, targets)
"""
from fastgpt.backend import BackendError, get_backend, set_backend, use_backend
from fastgpt.config import GPT_PRESETS, GPTConfig, gpt_preset
from fastgpt.model import GPT
from fastgpt.ops import (FusedAddLayerNorm, FusedCausalSelfAttention, FusedEmbedding, FusedMLP, MLPOptions,
                         flash_attention, flash_attention_qkvpacked, fused_add_layernorm, fused_embedding, fused_linear,
                         fused_linear_cross_entropy, fused_linear_gelu, fused_mlp, fused_tied_embedding)

__version__ = "0.1.0"

__all__ = [
    "BackendError", "FusedAddLayerNorm", "FusedCausalSelfAttention", "FusedEmbedding", "FusedMLP", "GPT", "GPTConfig",
    "GPT_PRESETS", "flash_attention", "flash_attention_qkvpacked", "fused_add_layernorm", "fused_embedding", "fused_linear",
    "fused_linear_cross_entropy",
    "fused_linear_gelu", "fused_tied_embedding", "fused_mlp", "get_backend", "MLPOptions", "gpt_preset",
    "set_backend", "use_backend",
]
