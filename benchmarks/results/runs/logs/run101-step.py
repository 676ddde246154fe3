"""exp (run 101): the graphed step (triton-adamwcopy-cudagraph) with the fused attention backward
on the kernel probe's best tile against the two kernels, alternating, two builds each."""
import gc, json, sys
import torch
import triton
from triton.testing import do_bench
sys.path.insert(0, "benchmarks")
import bench_train_step as S
import fastgpt.kernels.attention as A
c = json.load(open(sys.argv[1]))
A._attention_bwd_fused_kernel.configs = [triton.Config({"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"]}, num_warps=c["num_warps"], num_stages=c["num_stages"], maxnreg=c.get("maxnreg"))]
A.FUSED_BLOCKS = (c["BLOCK_M"], c["BLOCK_N"])
A.MAX_FUSED_KEY_BLOCKS = 512 // c["BLOCK_N"]
print("tile", c, flush=True)
default = A.MAX_FUSED_KEY_BLOCKS
for rnd in range(2):
    for name, blocks in (("fused", default), ("two-kernel", 0)):
        A.MAX_FUSED_KEY_BLOCKS = blocks
        torch.cuda.reset_peak_memory_stats()
        model, step = S.build(S.CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        ms = [do_bench(step, warmup=5, rep=1500, return_mode="median") for _ in range(2)]
        print("RESULT", name, rnd, [round(m, 3) for m in ms], "peak GiB", round(torch.cuda.max_memory_allocated() / 2**30, 2), flush=True)
        del model, step
        gc.collect(); torch.cuda.empty_cache()
