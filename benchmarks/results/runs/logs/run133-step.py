"""Session 18: the graphed step with add+LayerNorm's backward knobs from argv (tile, warps, programs an SM;
'default' for the committed ones): do_bench median."""
import sys
import torch, triton.testing
from fastgpt.kernels import layernorm as L
if sys.argv[1] != "default":
    tile, warps, per_sm = (int(v) for v in sys.argv[1].split(","))
    L.BWD_ROW_TILE, L.BWD_NUM_WARPS, L.BWD_PROGRAMS_PER_SM = tile, warps, per_sm
from bench_train_step import CONFIGS, build
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(4):
    step(); torch.cuda.synchronize()
ms = triton.testing.do_bench(step, warmup=50, rep=500, return_mode="median")
print(f"ln bwd {sys.argv[1]} (tile {L.BWD_ROW_TILE}, warps {L.BWD_NUM_WARPS}, programs/SM {L.BWD_PROGRAMS_PER_SM}): step {ms:.3f} ms")
