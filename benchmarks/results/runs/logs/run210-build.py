"""Session 28, run 210 (built here, no GPU): a Gluon kernel compiled ahead of time by Triton 3.9 for
sm_90 as a 2-CTA cluster with a TMA multicast load, its cubin and launch metadata written to
.run210-aot/ for .run210-launch.py to load through the CUDA driver API on the GPU (whose Triton is
3.6). The kernel: one (128, 128) fp16 tile multicast into both CTAs' shared memory, stored plus one
to a (128, 128) output: the route's plumbing (NOTES Next GPU run 1), not its speed."""
import json
import os

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

TILE = 128


@gluon.jit
def _multicast_tile_kernel(in_desc, Out, stride_out, BLOCK: gl.constexpr):
    gl.static_assert(gl.num_ctas() == 2)
    smem = gl.allocate_shared_memory(in_desc.dtype, in_desc.block_shape, in_desc.layout)
    bar = mbarrier.allocate_mbarrier()
    mbarrier.init(bar, count=1)
    mbarrier.expect(bar, in_desc.nbytes_per_cta)
    tma.async_load(in_desc, [0, 0], bar, smem, multicast=True)
    mbarrier.wait(bar, phase=0, deps=[smem])
    layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [gl.num_warps(), 1], [1, 0], cga_layout=[[0, 0]])
    x = smem.load(layout)
    rows = gl.arange(0, BLOCK, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, BLOCK, layout=gl.SliceLayout(0, layout))
    gl.store(Out + gl.expand_dims(rows, 1) * stride_out + gl.expand_dims(cols, 0), x + 1.0)


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run210-aot")
    os.makedirs(out_dir, exist_ok=True)
    layout = gl.NVMMASharedLayout.get_default_for([TILE, TILE], gl.float16, cga_layout=[[0, 0]])
    desc = TensorDescriptor.from_tensor(torch.empty(TILE, TILE, dtype=torch.float16), [TILE, TILE], layout)
    signature = {"in_desc": desc.__mangle__(), "Out": "*fp16", "stride_out": "i32", "BLOCK": "constexpr"}
    src = GluonASTSource(_multicast_tile_kernel, signature, {"BLOCK": TILE})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_ctas": 2})
    md = kernel.metadata
    meta = {"name": md.name, "shared": md.shared, "num_warps": md.num_warps, "num_ctas": md.num_ctas,
            "global_scratch_size": md.global_scratch_size, "profile_scratch_size": md.profile_scratch_size,
            "tensordesc_meta": md.tensordesc_meta, "signature": signature, "triton": triton.__version__}
    open(os.path.join(out_dir, "kernel.cubin"), "wb").write(kernel.asm["cubin"])
    json.dump(meta, open(os.path.join(out_dir, "kernel.json"), "w"), indent=1, default=str)
    print(json.dumps(meta, indent=1, default=str))
    print("multicast in PTX:", "multicast::cluster" in kernel.asm["ptx"], "cubin bytes", len(kernel.asm["cubin"]))


if __name__ == "__main__":
    main()
