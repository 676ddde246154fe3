"""Tile sweep of kernels/common.sum_partials_kernel at the GPT-2 step's shapes (16384 tokens):
add+LayerNorm's (512, 768) partials, three or two buffers at once, the attention's qkv bias
(256, 2304) and the MLP's c_fc bias (256, 3072). Each row: one tile (BLOCK_P partial rows,
BLOCK_C columns, warps), checked against torch.sum, then timed as the median of CUDA-graph replays
of 20 launches (the step replays them in a graph too), in microseconds a launch. SUM_TILES in
kernels/common.py is chosen from this table.

    python benchmarks/tune_sum_partials.py          # GPU, ~30 s
"""
import torch
import triton
import triton.testing

from fastgpt.kernels.common import sum_partials_kernel

CASES = {"ln3 512x768": (512, 768, 3), "ln2 512x768": (512, 768, 2), "qkv 256x2304": (256, 2304, 1),
         "fc 256x3072": (256, 3072, 1)}
TILES = [(256, 32, 8), (64, 32, 4), (128, 16, 4), (256, 16, 8), (64, 16, 4), (128, 8, 4), (256, 8, 4),
         (512, 8, 8), (64, 8, 2)]


def main():
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}\n")
    print("| case | BLOCK_P | BLOCK_C | warps | us |\n|---|---|---|---|---|")
    for name, (P, C, buffers) in CASES.items():
        partials = [torch.randn(P, C, device="cuda") for _ in range(3)]
        outs = [torch.empty(C, device="cuda") for _ in range(3)]
        for block_p, block_c, warps in TILES:
            def launch():
                sum_partials_kernel[(triton.cdiv(C, block_c),)](
                    *partials, *outs, P, C, HAS_B=buffers > 1, HAS_C=buffers > 2,
                    BLOCK_P=block_p, BLOCK_C=block_c, num_warps=warps)
            launch()
            for i in range(buffers):
                torch.testing.assert_close(outs[i], partials[i].sum(0), atol=1e-3, rtol=1e-4)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(20):
                    launch()
            ms = triton.testing.do_bench(graph.replay, warmup=10, rep=100, return_mode="median") / 20
            print(f"| {name} | {block_p} | {block_c} | {warps} | {ms * 1e3:.2f} |")


if __name__ == "__main__":
    main()
