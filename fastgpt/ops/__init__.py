"""Fused ops, one family per module: public function -> autograd Function -> torch.library op.

Each module also holds the op's pure-PyTorch reference (the `torch` backend) beside it.
"""
from fastgpt.ops.adamw import adamw_step_with_copies
from fastgpt.ops.attention import (FusedCausalSelfAttention, KVCache, flash_attention,
                                   flash_attention_qkvpacked)
from fastgpt.ops.cross_entropy import fused_linear_cross_entropy
from fastgpt.ops.embedding import FusedEmbedding, fused_embedding, fused_tied_embedding
from fastgpt.ops.layernorm import FusedAddLayerNorm, fused_add_layernorm
from fastgpt.ops.linear import fused_linear
from fastgpt.ops.mlp import FusedMLP, MLPOptions, fused_linear_gelu, fused_mlp

__all__ = [
    "adamw_step_with_copies", "FusedAddLayerNorm", "FusedCausalSelfAttention", "FusedEmbedding", "FusedMLP", "KVCache",
    "MLPOptions", "flash_attention", "flash_attention_qkvpacked", "fused_add_layernorm", "fused_embedding", "fused_linear",
    "fused_linear_cross_entropy", "fused_tied_embedding", "fused_linear_gelu", "fused_mlp",
]
