"""exp (run 103): the graphed step with the exp-logits LM head against the loss-kernel path, alternating."""
import gc, sys
import torch
from triton.testing import do_bench
sys.path.insert(0, "benchmarks")
import bench_train_step as S
import fastgpt.kernels.cross_entropy as CE
applies = CE.exp_logits_applies
for rnd in range(2):
    for name, mode in (("exp-logits", True), ("loss-kernel", False)):
        CE.exp_logits_applies = applies if mode else (lambda xc, wc: False)
        torch.cuda.reset_peak_memory_stats()
        model, step = S.build(S.CONFIGS["triton-adamwcopy-cudagraph"])
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        ms = [do_bench(step, warmup=5, rep=1500, return_mode="median") for _ in range(2)]
        print("RESULT", name, rnd, [round(m, 3) for m in ms], "peak GiB", round(torch.cuda.max_memory_allocated() / 2**30, 2), flush=True)
        del model, step
        gc.collect(); torch.cuda.empty_cache()
