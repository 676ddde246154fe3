"""Causal flash attention: fastgpt's Triton kernels against F.scaled_dot_product_attention with
each backend forced (flash, cuDNN, memory-efficient), side by side in one run.

H100 case of issue 3: bf16, head dim 64, 12 heads, B*T = 65536 tokens (B = 65536 // T), causal,
T = 512 .. 8192; forward, and forward + backward (gradients of q, k, v). TFLOP/s use
FlashAttention's count: forward 4*B*H*T*T*D / 2 (causal halves it), forward+backward 3.5x that
(the backward is 2.5x the forward). "fastgpt_qkv" reads q, k, v as the strided views of one
(B, T, 3, H, D) projection (SDPA's flash backend gets the same views); "fastgpt_packed" takes
that (B, T, 3, H, D) tensor whole through flash_attention_qkvpacked, as FusedCausalSelfAttention
does (its backward writes one d(qkv), no stack of dq, dk, dv): compare it with "sdpa_*_qkv".

    pytest benchmarks/bench_attention.py --benchmark-only --benchmark-json=out.json

Tuning (one batch on the GPU; prints a table per kernel and T, every config timed alone, then the
autotuner's pick, and writes JSON):

    python benchmarks/bench_attention.py tune --out $OUT/attention_tune.json
    python benchmarks/bench_attention.py tune --seq-lens 512 1024 --kernels fwd dq
"""
import argparse
import json
import sys

import pytest
import torch
import torch.nn.functional as F

from timing import measure, step

TOKENS, HEADS, HEAD_DIM = 65536, 12, 64
DTYPE = torch.bfloat16
SEQ_LENS = [512, 1024, 2048, 4096, 8192]
MODES = ["fwd", "fwd_bwd"]
BWD_FACTOR = 2.5      # backward FLOPs / forward FLOPs
SDPA_BACKENDS = ["flash", "cudnn", "efficient"]


def attention_flops(B: int, T: int, mode: str, causal: bool = True) -> float:
    fwd = 4 * B * HEADS * T * T * HEAD_DIM / (2 if causal else 1)
    return fwd * (1 + BWD_FACTOR if mode == "fwd_bwd" else 1)


def inputs(T: int, layout: str = "contiguous"):
    """The forward's arguments (q, k, v (B, H, T, D), or for "packed" one (B, T, 3, H, D) qkv),
    the leaves needing grad, and an upstream gradient of the output's shape."""
    torch.manual_seed(0)
    B = TOKENS // T
    if layout == "packed":
        qkv = torch.randn(B, T, 3, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE, requires_grad=True)
        return (qkv,), (qkv,), torch.randn(B, T, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    if layout == "qkv_view":
        qkv = torch.randn(B, T, 3, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE, requires_grad=True)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        leaves = (qkv,)
    else:
        q, k, v = (torch.randn(B, HEADS, T, HEAD_DIM, device="cuda", dtype=DTYPE, requires_grad=True)
                   for _ in range(3))
        leaves = (q, k, v)
    return (q, k, v), leaves, torch.randn(B, HEADS, T, HEAD_DIM, device="cuda", dtype=DTYPE)


def sdpa(backend: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    chosen = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]

    def forward(q, k, v):
        with sdpa_kernel(chosen):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return forward


def ours(q, k, v):
    import fastgpt
    with fastgpt.use_backend("triton"):
        return fastgpt.flash_attention(q, k, v, causal=True)


def ours_packed(qkv):
    import fastgpt
    from fastgpt.ops.attention import flash_attention_qkvpacked
    with fastgpt.use_backend("triton"):
        return flash_attention_qkvpacked(qkv, causal=True)


IMPLS = {"fastgpt": (ours, "contiguous"), "fastgpt_qkv": (ours, "qkv_view"),
         "fastgpt_packed": (ours_packed, "packed"), "sdpa_flash_qkv": (sdpa("flash"), "qkv_view"),
         "sdpa_cudnn_qkv": (sdpa("cudnn"), "qkv_view"),
         **{f"sdpa_{b}": (sdpa(b), "contiguous") for b in SDPA_BACKENDS}}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("T", SEQ_LENS)
def test_attention(benchmark, T, impl, mode):
    forward, layout = IMPLS[impl]
    qkv, leaves, dout = inputs(T, layout)
    try:
        forward(*qkv)
    except RuntimeError as e:       # e.g. a backend not built into this torch, or not for this GPU
        pytest.skip(f"{impl} cannot run here: {e}")
    B = TOKENS // T
    # Capturing the backward through q, k, v views of one qkv tensor fails on torch 2.11 (the
    # stream capture is invalidated), and a failed capture leaves the CUDA RNG unusable for the
    # rest of the process: those rows are timed eagerly, every other row as a CUDA graph replay.
    measure(benchmark, step(forward, qkv, leaves, dout, mode), flops=attention_flops(B, T, mode),
            graph=layout != "qkv_view", impl=impl, mode=mode, T=T, B=B, H=HEADS, D=HEAD_DIM,
            dtype=str(DTYPE))


MODULE_TOKENS, MODULE_T = 16384, 512      # one GPT-2 layer's attention at batch 32 x 512


@pytest.mark.parametrize("fuse_qkv_bias_grad", [False, True], ids=["bias_grad_in_c_attn", "bias_grad_in_attention"])
def test_attention_module(benchmark, fuse_qkv_bias_grad):
    """FusedCausalSelfAttention (n_embd 768, 12 heads, bf16) forward + backward, all gradients,
    as the CUDA-graphed train step runs it (replayed_steps: the bias-gradient kernels on): c_attn's
    bias gradient by a column sum over d(qkv), against the attention backward's tiles
    (fuse_qkv_bias_grad: dQ's and dO's column sums)."""
    import fastgpt
    from fastgpt.ops.dispatch import replayed_steps
    torch.manual_seed(0)
    module = fastgpt.FusedCausalSelfAttention(n_embd=HEADS * HEAD_DIM, n_head=HEADS,
                                              fuse_qkv_bias_grad=fuse_qkv_bias_grad).to("cuda", DTYPE)
    x = torch.randn(MODULE_TOKENS // MODULE_T, MODULE_T, HEADS * HEAD_DIM, device="cuda", dtype=DTYPE,
                    requires_grad=True)
    leaves = (x, *module.parameters())

    def forward(x):
        with fastgpt.use_backend("triton"), replayed_steps():
            return module(x)
    measure(benchmark, step(forward, (x,), leaves, torch.randn_like(x), "fwd_bwd"),
            flops=attention_flops(MODULE_TOKENS // MODULE_T, MODULE_T, "fwd_bwd"),
            impl="module_" + ("bias_grad_in_attention" if fuse_qkv_bias_grad else "bias_grad_in_c_attn"),
            mode="fwd_bwd", T=MODULE_T, B=MODULE_TOKENS // MODULE_T, H=HEADS, D=HEAD_DIM, dtype=str(DTYPE))


# ---- tuning helper: every config of each kernel, timed alone ----

def _kernel_cases(T: int):
    """name -> (configs, fn(config) running that kernel alone, flops of that kernel)."""
    from fastgpt.kernels import attention as K
    (q, k, v), _, dout = inputs(T)
    q, k, v = (t.detach() for t in (q, k, v))
    scale = HEAD_DIM ** -0.5
    out, lse = K.attention_fwd(q, k, v, True, scale)
    _, delta = K.attention_bwd_dq(dout, q, k, v, out, lse, True, scale)    # what dK/dV reads
    fwd_flops = attention_flops(TOKENS // T, T, "fwd")
    return {
        "fwd": (K.FWD_CONFIGS, lambda c: K.attention_fwd(q, k, v, True, scale, out=out, config=c), fwd_flops),
        # TFLOP/s of the work each kernel does: dK/dV runs 4 T x T x D GEMMs (k q^T, v dO^T, P^T dO,
        # dS^T q), 2x the forward's 2; dQ runs 3 (q k^T, dO v^T, dS k) and also Delta (a read of O).
        # FlashAttention's count credits the whole backward with 2.5x, so "bwd_autotuned" uses that.
        "dkdv": (K.DKDV_CONFIGS, lambda c: K.attention_bwd_dkdv(dout, q, k, v, lse, delta, True, scale, config=c),
                 fwd_flops * 2.0),
        "dq": (K.DQ_CONFIGS, lambda c: K.attention_bwd_dq(dout, q, k, v, out, lse, True, scale, config=c),
               fwd_flops * 1.5),
        "bwd_autotuned": ([None], lambda c: K.attention_bwd(dout, q, k, v, out, lse, True, scale),
                          fwd_flops * BWD_FACTOR),
    }


def _config_dict(config) -> dict | None:
    if config is None:
        return None
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


def tune(seq_lens, kernels, out_path=None):
    import triton.testing
    from timing import environment
    results = {"environment": environment(), "runs": []}
    for T in seq_lens:
        for name, (configs, run, flops) in _kernel_cases(T).items():
            if name not in kernels:
                continue
            rows = []
            for config in configs:
                cfg = _config_dict(config)
                try:
                    run(cfg)
                    ms = triton.testing.do_bench(lambda: run(cfg), warmup=25, rep=100, return_mode="median")
                except Exception as e:   # out of shared memory / registers: report, go on
                    rows.append({"config": cfg, "error": f"{type(e).__name__}: {str(e)[:80]}"})
                    continue
                rows.append({"config": cfg, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12})
            rows.sort(key=lambda r: r.get("ms", float("inf")))
            print(f"\n== T={T} B={TOKENS // T} kernel={name}")
            for r in rows:
                tail = f"{r['ms']:.4f} ms  {r['tflops']:6.1f} TFLOP/s" if "ms" in r else r["error"]
                print(f"  {r['config']}  {tail}")
            results["runs"].append({"T": T, "kernel": name, "rows": rows})
    from fastgpt.kernels import attention as K
    picks = {n: {str(key): str(cfg) for key, cfg in getattr(kern, "cache", {}).items()}
             for n, kern in (("fwd", K._attention_fwd_kernel), ("dkdv", K._attention_bwd_dkdv_kernel),
                             ("dq", K._attention_bwd_dq_kernel))}
    print("\nautotuner picks:", json.dumps(picks, indent=1))
    results["autotune_picks"] = picks
    if out_path:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tune", help="time every config of each attention kernel alone")
    t.add_argument("--seq-lens", type=int, nargs="+", default=SEQ_LENS)
    t.add_argument("--kernels", nargs="+", default=["fwd", "dkdv", "dq", "bwd_autotuned"],
                   choices=["fwd", "dkdv", "dq", "bwd_autotuned"])
    t.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("tuning times GPU kernels: no CUDA GPU here")
    tune(args.seq_lens, args.kernels, args.out)


if __name__ == "__main__":
    main()
