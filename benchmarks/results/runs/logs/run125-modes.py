"""Session 18: the graphed step with its memsets rewritten and hoisted (FASTGPT_GRAPH_MEMSETS=1), rewritten
in place (inline) and as captured (0), built in one process (the same GEMM choices): losses over 6
steps (bitwise equal expected), then do_bench medians, alternating, 3 rounds."""
import os
import torch, triton.testing
from bench_train_step import CONFIGS, build
steps, losses = {}, {}
for mode in ("1", "inline", "0"):
    os.environ["FASTGPT_GRAPH_MEMSETS"] = mode
    model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
    for _ in range(6):
        step()
    torch.cuda.synchronize()
    steps[mode] = (model, step)
# the losses: each step object keeps its GraphedTrainStep in the closure; read the model's weights instead
ref = None
for mode, (model, step) in steps.items():
    w = torch.cat([p.detach().float().flatten()[:100000] for p in model.parameters()])
    if ref is None:
        ref = w
    print(f"mode {mode}: weights after 6 steps equal to mode 1's: {torch.equal(w, ref)}, max diff {(w - ref).abs().max().item():.3g}")
for r in range(3):
    for mode, (model, step) in steps.items():
        ms = triton.testing.do_bench(step, warmup=30, rep=400, return_mode="median")
        print(f"round {r} mode {mode:6s}: step {ms:.3f} ms")
