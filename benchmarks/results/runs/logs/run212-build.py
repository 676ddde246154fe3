"""Session 28, run 212 (built here, no GPU): the MLP forward's Gluon kernel in 2-CTA clusters with
TMA multicast (.run212_mlp_gluon_mc.py: run 211's 3.9 port, clusters of two CTAs side by side along
N sharing the A tile, each CTA loading half of it into both; the slot ring released by both CTAs'
consumers on the lead's barrier and passed on by the lead's producer to both producers), compiled
ahead of time by Triton 3.9 for sm_90; and the same file without clusters as the control."""
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
spec = importlib.util.spec_from_file_location("mlp_gluon_mc", os.path.join(HERE, ".run212_mlp_gluon_mc.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
bf, u8 = torch.bfloat16, torch.uint8


def desc(shape, dtype, block, cga):
    gdt = {bf: gl.bfloat16, u8: gl.uint8}[dtype]
    layout = gl.NVMMASharedLayout.get_default_for(block, gdt, cga_layout=cga)
    return TensorDescriptor.from_tensor(torch.empty(shape, dtype=dtype), block, layout).__mangle__()


def build(tag, ctas):
    M, C, H = 1024, 768, 3072
    bn = 128 * ctas                      # the cluster's columns: 128 a CTA
    split = [[0, 1]] if ctas == 2 else []
    sig = {"a_desc": desc((M, C), bf, [128, 64], [[0, 0]] if ctas == 2 else []),
           "b_desc": desc((H, C), bf, [bn, 64], [[1, 0]] if ctas == 2 else []),
           "out_desc": desc((M, H), bf, [64, bn], split), "aux_desc": desc((M, H), u8, [64, bn], split),
           "pre_desc": desc((M, H), u8, [64, bn], split), "Bias": "*bf16", "Partials": "*fp32",
           "M": "i32", "N": "i32", "K": "i32"}
    consts = dict(GELU_GRAD=False, HAS_BIAS=True, BIAS_GRAD=False, B_NK=True, COOPERATIVE=False,
                  NUM_STAGES=mod.STAGES["pingpong"], CONSUMER_REGS=mod.CONSUMER_REGS, PRODUCER_REGS=mod.PRODUCER_REGS,
                  EXP_SHIFT=False, CAP=0.0, GRAD_CODE=True)
    for k in consts:
        sig[k] = "constexpr"
    kernel = triton.compile(GluonASTSource(mod._mlp_gluon_kernel, sig, consts), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": 4, "num_ctas": ctas, "maxnreg": mod.MAX_REGS})
    md = kernel.metadata
    meta = {"name": md.name, "shared": md.shared, "num_warps": md.num_warps, "num_ctas": md.num_ctas,
            "global_scratch_size": md.global_scratch_size, "profile_scratch_size": md.profile_scratch_size,
            "tensordesc_meta": md.tensordesc_meta, "triton": triton.__version__, "block_n": bn}
    os.makedirs(os.path.join(HERE, ".run212-aot"), exist_ok=True)
    open(os.path.join(HERE, ".run212-aot", f"{tag}.cubin"), "wb").write(kernel.asm["cubin"])
    open(os.path.join(HERE, ".run212-aot", f"{tag}.ptx"), "w").write(kernel.asm["ptx"])
    json.dump(meta, open(os.path.join(HERE, ".run212-aot", f"{tag}.json"), "w"), default=str)
    print(tag, json.dumps(meta, default=str), flush=True)


build("fwd1", 1)
build("fwd2", 2)
