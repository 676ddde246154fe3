"""kernels/gemm.py's timed cuBLASLt choice against PyTorch's call, at every plain GEMM of the GPT-2
124M step (16384 tokens, bf16; the LM head's dX and dW at its 4096-row chunk), side by side.

    torch     torch.mm / torch.addmm as the step ran them before (the heuristic's first algorithm)
    fastgpt   gemm.matmul(..., tuned=True): the faster of PyTorch's call and each cuBLASLt
              algorithm offered, timed at the first call (the choice and every candidate's time
              are in the JSON's extra_info)

Each row is timed as a CUDA-graph replay (timing.measure), so the operands stay in L2 between
calls as they partly do in the step: run 111's isolated timings predicted ~0.5 ms a step, the
graphed step gained 0.1-0.2 ms (NOTES.md, session 17).

    pytest benchmarks/bench_gemm.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch

from fastgpt.kernels import gemm
from timing import measure

TOKENS, C, CHUNK, VOCAB = 16384, 768, 4096, 50304
BF16, FP32 = torch.bfloat16, torch.float32
# name: (M, K, N, a transposed, b transposed, bias, out dtype, beta)
PROBLEMS = {
    "c_attn fwd (+bias)": (TOKENS, C, 3 * C, False, True, True, BF16, 0.0),
    "attn c_proj fwd": (TOKENS, C, C, False, True, False, BF16, 0.0),
    "mlp c_proj fwd": (TOKENS, 4 * C, C, False, True, False, BF16, 0.0),
    "mlp c_proj dW": (C, TOKENS, 4 * C, True, False, False, BF16, 0.0),
    "c_fc dX": (TOKENS, 4 * C, C, False, False, False, BF16, 0.0),
    "c_fc dW": (4 * C, TOKENS, C, True, False, False, BF16, 0.0),
    "attn c_proj dX": (TOKENS, C, C, False, False, False, BF16, 0.0),
    "attn c_proj dW": (C, TOKENS, C, True, False, False, BF16, 0.0),
    "c_attn dX": (TOKENS, 3 * C, C, False, False, False, BF16, 0.0),
    "c_attn dW": (3 * C, TOKENS, C, True, False, False, BF16, 0.0),
    "lm_head dX (fp32)": (CHUNK, VOCAB, C, False, False, False, FP32, 0.0),
    "lm_head dW (fp32, +=)": (VOCAB, CHUNK, C, True, False, False, FP32, 1.0),
}


def _operand(rows, cols, transposed):
    t = torch.randn(cols, rows, device="cuda", dtype=BF16).t() if transposed else \
        torch.randn(rows, cols, device="cuda", dtype=BF16)
    return t * 0.5


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("impl", ["torch", "fastgpt"])
def test_gemm(benchmark, impl, problem):
    M, K, N, a_t, b_t, has_bias, out_dtype, beta = PROBLEMS[problem]
    torch.manual_seed(0)
    a, b = _operand(M, K, a_t), _operand(K, N, b_t)
    bias = torch.randn(N, device="cuda", dtype=BF16) if has_bias else None
    out = torch.zeros(M, N, device="cuda", dtype=out_dtype)
    algorithm = -1 if impl == "torch" else None      # -1: PyTorch's call, whatever the choice
    fn = lambda: gemm.matmul(a, b, bias, out=out, beta=beta, out_dtype=out_dtype, tuned=True,  # noqa: E731
                             algorithm=algorithm)
    measure(benchmark, fn, flops=2 * M * K * N, M=M, K=K, N=N, out_dtype=str(out_dtype), beta=beta,
            bias=has_bias)
    if impl == "fastgpt":
        row = [r for r in gemm.tuned_problems() if (r["M"], r["K"], r["N"], r["beta"]) == (M, K, N, beta)
               and (r["a_stride"], r["b_stride"]) == (a.stride(), b.stride())
               and r["bias"] == has_bias and r["out_dtype"] == str(out_dtype)]
        benchmark.extra_info["choice"] = row[0]["choice"] if row else None
        benchmark.extra_info["candidate_ms"] = {str(k): v for k, v in (row[0]["times"] or {}).items()} if row else {}
