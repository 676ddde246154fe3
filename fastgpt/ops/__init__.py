"""Fused ops, one family per module: public function -> autograd Function -> torch.library op.

Each module also holds the op's pure-PyTorch reference (the `torch` backend) beside it.
"""
from fastgpt.ops.attention import (FusedCausalSelfAttention, KVCache, flash_attention,
                                   flash_attention_qkvpacked)
from fastgpt.ops.cross_entropy import fused_linear_cross_entropy
from fastgpt.ops.layernorm import FusedAddLayerNorm, fused_add_layernorm
from fastgpt.ops.linear import fused_linear
from fastgpt.ops.mlp import FusedMLP, MLPOptions, fused_linear_gelu, fused_mlp

__all__ = [
    "FusedAddLayerNorm", "FusedCausalSelfAttention", "FusedMLP", "KVCache", "MLPOptions",
    "flash_attention", "flash_attention_qkvpacked", "fused_add_layernorm", "fused_linear", "fused_linear_cross_entropy", "fused_linear_gelu",
    "fused_mlp",
]
