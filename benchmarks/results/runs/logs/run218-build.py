"""Session 28, run 218 (built here, no GPU): .run218_exp_mc.py's exp GEMM compiled ahead of time by
Triton 3.9 for sm_90, in 2-CTA clusters (B multicast) and, as the control, one CTA a program with the
same kernel (the cluster-level tile then 128 rows); cubins and launch metadata to .run218-aot/."""
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
spec = importlib.util.spec_from_file_location("exp_mc", os.path.join(HERE, ".run218_exp_mc.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
bf = torch.bfloat16


def desc(shape, block, cga):
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16, cga_layout=cga)
    return TensorDescriptor.from_tensor(torch.empty(shape, dtype=bf), block, layout).__mangle__()


def build(tag, ctas, stages):
    R, C, V = 1024, 768, 50304
    bm = 128 * ctas
    sig = {"a_desc": desc((R, C), [bm, 64], [[1, 0]] if ctas == 2 else []),
           "b_desc": desc((V, C), [128, 64], [[0, 0]] if ctas == 2 else []),
           "out_desc": desc((R, V), [bm, 128], [[1, 0]] if ctas == 2 else []),
           "Shift": "*fp32", "RowSums": "*fp32", "M": "i32", "N": "i32", "K": "i32"}
    consts = dict(NUM_STAGES=stages, GROUP=8 // ctas, CAP=70.0)
    for k in consts:
        sig[k] = "constexpr"
    kernel = triton.compile(GluonASTSource(mod.exp_gemm_kernel, sig, consts), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": 4, "num_ctas": ctas, "maxnreg": mod.MAX_REGS})
    md = kernel.metadata
    meta = {"name": md.name, "shared": md.shared, "num_warps": md.num_warps, "num_ctas": md.num_ctas,
            "global_scratch_size": md.global_scratch_size, "profile_scratch_size": md.profile_scratch_size,
            "tensordesc_meta": md.tensordesc_meta, "triton": triton.__version__, "block_m": bm, "stages": stages}
    os.makedirs(os.path.join(HERE, ".run218-aot"), exist_ok=True)
    open(os.path.join(HERE, ".run218-aot", f"{tag}.cubin"), "wb").write(kernel.asm["cubin"])
    open(os.path.join(HERE, ".run218-aot", f"{tag}.ptx"), "w").write(kernel.asm["ptx"])
    json.dump(meta, open(os.path.join(HERE, ".run218-aot", f"{tag}.json"), "w"), default=str)
    print(tag, json.dumps(meta, default=str), flush=True)


build("exp1", 1, 5)
build("exp2", 2, 5)
build("exp2s4", 2, 4)
