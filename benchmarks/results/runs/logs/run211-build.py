"""Session 28, run 211 (built here, no GPU): kernels/mlp_gluon.py's kernel compiled ahead of time by
Triton 3.9 for sm_90 (.run211_mlp_gluon39.py: the tree's file with 3.9's names for two TMA calls,
async_load and async_store), in the step's three uses: the MLP forward (codes), its backward (codes,
bias partials) and the LM head's exp GEMM; cubins and launch metadata to .run211-aot/ for
.run211-time.py, which times them on the GPU against the tree's (JIT-compiled there by 3.6)."""
import importlib.util
import json
import os

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("mlp_gluon39", os.path.join(HERE, ".run211_mlp_gluon39.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
bf, u8 = torch.bfloat16, torch.uint8


def desc(shape, dtype, block):
    gdt = {bf: gl.bfloat16, u8: gl.uint8}[dtype]
    return TensorDescriptor.from_tensor(torch.empty(shape, dtype=dtype), block, gl.NVMMASharedLayout.get_default_for(block, gdt))


def build(tag, a, b, out, aux, pre, b_nk, consts):
    block_m, bn, bk, half = 128, mod.BLOCK_N, mod.BLOCK_K, mod.HALF
    sig = {"a_desc": desc(a, bf, [block_m, bk]).__mangle__(),
           "b_desc": desc(b, bf, [bn, bk] if b_nk else [bk, bn]).__mangle__(),
           "out_desc": desc(out, bf, [half, bn]).__mangle__(), "aux_desc": desc(*aux, [half, bn]).__mangle__(),
           "pre_desc": desc(*pre, [half, bn]).__mangle__(), "Bias": "*fp32" if consts.get("EXP_SHIFT") else "*bf16",
           "Partials": "*fp32", "M": "i32", "N": "i32", "K": "i32"}
    consts = dict(dict(B_NK=b_nk, COOPERATIVE=False, NUM_STAGES=mod.STAGES["pingpong"], CONSUMER_REGS=mod.CONSUMER_REGS,
                       PRODUCER_REGS=mod.PRODUCER_REGS, EXP_SHIFT=False, CAP=0.0, GRAD_CODE=False), **consts)
    for k in consts:
        sig[k] = "constexpr"
    kernel = triton.compile(GluonASTSource(mod._mlp_gluon_kernel, sig, consts), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": 4, "maxnreg": mod.MAX_REGS})
    md = kernel.metadata
    meta = {"name": md.name, "shared": md.shared, "num_warps": md.num_warps, "num_ctas": md.num_ctas,
            "global_scratch_size": md.global_scratch_size, "profile_scratch_size": md.profile_scratch_size,
            "tensordesc_meta": md.tensordesc_meta, "triton": triton.__version__}
    os.makedirs(os.path.join(HERE, ".run211-aot"), exist_ok=True)
    open(os.path.join(HERE, ".run211-aot", f"{tag}.cubin"), "wb").write(kernel.asm["cubin"])
    json.dump(meta, open(os.path.join(HERE, ".run211-aot", f"{tag}.json"), "w"), default=str)
    print(tag, "shared", md.shared, "scratch", md.global_scratch_size, md.profile_scratch_size, flush=True)


M, C, H, V, R = 1024, 768, 3072, 50304, 1024    # shapes only name the descriptors' types here
build("fwd", (M, C), (H, C), (M, H), ((M, H), u8), ((M, H), u8), True,
      dict(GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, GRAD_CODE=True))
build("bwd", (M, C), (C, H), (M, H), ((M, H), bf), ((M, H), u8), False,
      dict(GELU_GRAD=True, HAS_BIAS=False, BIAS_GRAD=True, GRAD_CODE=True))
build("exp", (R, C), (V, C), (R, V), ((R, V), bf), ((R, V), bf), True,
      dict(GELU_GRAD=False, HAS_BIAS=False, BIAS_GRAD=False, EXP_SHIFT=True, CAP=70.0))
