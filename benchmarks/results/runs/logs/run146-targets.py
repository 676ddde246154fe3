"""Session 19, run 146: kernels/cross_entropy.target_stats at GPT-2's 16384 targets, one block of
32 warps (the tree's) against blocks of 4096 on 8 warps (run 144's) and PyTorch's 11 launches
(the range check and the count as before), each replayed in a CUDA graph of 10 calls."""
import torch, triton, triton.testing
from fastgpt.kernels import cross_entropy as ce

targets = torch.randint(0, 50257, (16384,), device="cuda")
targets[::7] = -1
n_valid = torch.empty((), dtype=torch.int64, device="cuda")
in_range = torch.empty((), dtype=torch.bool, device="cuda")


def old_kernel():
    ce._target_stats_kernel[(1,)](targets, targets.numel(), 50304, -1, n_valid, in_range, BLOCK=4096, num_warps=8)


def pytorch():
    bad = (targets >= 50304) | ((targets < 0) & (targets != -1))
    torch._assert_async(~bad.any(), "range")
    return (targets != -1).sum()


def graph_us(fn, reps=10):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return [round(triton.testing.do_bench(g.replay, warmup=50, rep=300, return_mode="median") / reps * 1000, 2)
            for _ in range(3)]


for name, fn in (("tree: one block, 32 warps", lambda: ce.target_stats(targets, 50304, -1)),
                 ("run 144: 4096 a block, 8 warps", old_kernel), ("PyTorch's ops", pytorch)):
    print(f"{name:32s} us a call: {graph_us(fn)}")
got = ce.target_stats(targets, 50304, -1)
print("n_valid", got[0].item(), "expected", int((targets != -1).sum()), "in_range", got[1].item())
