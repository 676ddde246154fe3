"""Session 19, run 141: the graphed GPT-2 step (triton-adamwcopy-cudagraph, do_bench median of
replays) with the residual add in the projections' GEMM epilogues (the tree's blocks:
STRUCTURE=epilogue) or in the next add+LayerNorm (session 18's blocks, re-created here from the
ops, which still take that form: STRUCTURE=layernorm)."""
import math
import os

import torch
import triton.testing

import fastgpt.model as M
from fastgpt.ops.attention import attention_qkvpacked
from fastgpt.ops.cross_entropy import fused_linear_cross_entropy
from fastgpt.ops.linear import fused_linear
from fastgpt.ops.mlp import fused_mlp


def old_attn_branch(attn, x):
    """Session 18's FusedCausalSelfAttention.forward_branch (no cache, no dropout)."""
    B, T, C = x.shape
    bias = attn.c_attn.bias
    qkv = fused_linear(x, attn.c_attn.weight, bias.detach()).view(B, T, 3, attn.n_head, C // attn.n_head)
    y = attention_qkvpacked(qkv, True, 1.0 / math.sqrt(C // attn.n_head), 0.0, bias, device=qkv.device)
    return fused_linear(y.reshape(B, T, C), attn.c_proj.weight, None), attn.c_proj.bias


def old_block_forward(self, out, out_bias, resid, cache=None):
    h, resid = self.ln_1(out, resid, out_bias)
    out, out_bias = old_attn_branch(self.attn, h)
    h, resid = self.ln_2(out, resid, out_bias)
    out = fused_mlp(h, self.mlp.c_fc.weight, self.mlp.c_fc.bias, self.mlp.c_proj.weight, None, self.mlp.options)
    return out, self.mlp.c_proj.bias, resid


def old_gpt_forward(self, idx, targets=None, caches=None):
    x, head_weight = self._embed(idx, 0)
    out, out_bias, resid = x, None, None
    for block in self.transformer.h:
        out, out_bias, resid = block(out, out_bias, resid)
    x, _ = self.transformer.ln_f(out, resid, out_bias)
    return None, fused_linear_cross_entropy(x, head_weight, targets, ignore_index=-1)


structure = os.environ.get("STRUCTURE", "epilogue")
if structure == "layernorm":
    M.Block.forward = old_block_forward
    M.GPT.forward = old_gpt_forward

from bench_train_step import CONFIGS, build  # noqa: E402

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step()
torch.cuda.synchronize()
# after 4 steps from the same seed the two structures' weights agree to bf16 rounding, not bitwise
checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"structure {structure}: step {ms:.3f} ms, peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB, "
      f"|params| after 4 steps {checksum:.6e}")
