"""One optimizer step of GPT-2 124M, every way of running it, side by side in one run.

fastgpt.gpt_preset("gpt2") (block 512, n_embd 768, 12 layers, vocab 50304), batch 32, bf16
autocast, AdamW(fused=True) via model.configure_optimizer, random tokens (torch.randint: the
step's cost does not depend on the data). One step = forward + loss, backward, optimizer step,
zero_grad. Configurations:
    reference-eager     fastgpt.use_backend("torch"): the PyTorch reference of every op
    reference-compile   the same, torch.compile(model, fullgraph=True)
    triton              fastgpt's Triton kernels
    triton-compile      the same, torch.compile(model, fullgraph=True)
    cuda                the compiled CUDA extension (skipped where it is not built); its MLP
                        as MLPOptions(cuda_gemm="auto") picks: cuBLASLt GEMMs with the bias +
                        GELU, GELU-gradient and bias-gradient epilogues where the extension was
                        built with cublasLt.h ("cublaslt_dgelu"; before run 24 the forward's
                        epilogue only, "cublaslt_forward")
    cuda-cublas-*       the same with the MLP on cuBLAS + the extension's passes ("cublas")
    cuda-cublaslt-*     the same with every MLP pass in a cuBLASLt epilogue ("cublaslt"; skipped
                        where the extension was built without cublasLt.h); cuda-cublaslt_dgelu-*:
                        the dh GEMM's DGELU epilogue without the bias gradient ("cublaslt_dgelu")
    bias gradients      fastgpt's backends by default take c_attn's bias gradient from the attention
                        backward's dQ and dO tiles (fuse_qkv_bias_grad) and the c_proj biases' from
                        the next LayerNorm (Block.proj_bias_grad_in_layernorm); the reference
                        configurations run nanoGPT's arrangement (each bias in its own GEMM and
                        column sum), as do *-biassum-* (the session-6 step); *-qkvbias-*: c_attn's
                        from the attention, c_proj's by column sums
    *-adamwcopy-*       the graphed step with optimizer_writes_copies: the model runs on persistent
                        bf16 copies that the AdamW step (fastgpt.ops.adamw) reads the gradients of
                        and writes, so neither the parameters nor the gradients are cast; what
                        fastgpt-train runs without gradient accumulation (session 8)
    *-prekept-*         the MLP keeping its pre-activation in bf16 for the backward, as before session
                        23 (MLPOptions(gelu_grad_code="never")); the default keeps gelu'(pre) as 8-bit codes
    *-compile-cudagraphs  the compiled models with mode="reduce-overhead" (CUDA graph replay)
    *-cudagraph         the eager model, the whole step (forward, backward, AdamW) captured as one
                        CUDA graph by fastgpt.cuda_graph.GraphedTrainStep: what fastgpt-train
                        runs by default on a GPU (with gradient accumulation or on several
                        GPUs; for fastgpt's backends with its one-copy parameter cast and
                        bias-gradient kernels; the reference's capture runs the model as a user
                        would write it)
fullgraph=True makes a graph break an error rather than a slower, unfair compiled baseline.

extra_info of each benchmark: median_ms (do_bench median over 0.3 s, ms/step), tokens_per_s, mfu
(nanoGPT's estimate_mfu against PEAK_FLOPS, the H100 SXM bf16 dense peak); sustained_ms and
sustained_tokens_per_s, the step run back to back for SUSTAIN_S seconds (timing.sustained: the
median ~1 s slice of the second half, with the GPU's SM clock, power and temperature meanwhile:
the step holds an H100 at its power cap, and a 0.3 s window after a warm-up runs faster than the
step keeps up, by more for the denser step: run 191); and peak_mem_gib
(torch.cuda.max_memory_allocated over the whole measurement, less what was allocated before the
configuration began: its weights, AdamW state, activations; benchmarks/timing.peak_memory_gib).
With FASTGPT_BENCH_OUT set, each configuration also writes <dir>/train_step/<config>.json and
rewrites <dir>/train_step.md, the table of every row there (results.train_step_table).

    pytest benchmarks/bench_train_step.py --benchmark-only --benchmark-json=out.json
    python benchmarks/plot_train_step.py out.json -o train_step.png
"""
import gc
import json
import os
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import fastgpt
from fastgpt.backend import cuda_extension_available
from fastgpt.cuda_graph import GraphedTrainStep
from fastgpt.ops.mlp import MLPOptions
from timing import environment, measure

BATCH = 32
PEAK_FLOPS = 989e12                       # H100 SXM, bf16 dense
# seconds each configuration also runs back to back for its sustained rate (0: not measured);
# run 192 saw the GPU's temperature settle within ~20 s, the step's time within ~10
SUSTAIN_S = float(os.environ.get("FASTGPT_BENCH_SUSTAIN_S", "20"))


class Config(NamedTuple):
    backend: str                      # fastgpt backend the model runs on
    compile_mode: str | None = None   # torch.compile(model, mode=...) or eager
    cuda_graph: bool = False          # the whole step as one CUDA graph (GraphedTrainStep)
    mlp: MLPOptions | None = None     # every block's MLPOptions (None: the default)
    # where the bias gradients are computed (None: fastgpt's default on its backends, nanoGPT's
    # arrangement for the reference): c_attn's from the attention backward, c_proj's by the next
    # add+LayerNorm
    fuse_qkv_bias_grad: bool | None = None
    proj_bias_grad_in_layernorm: bool | None = None
    optimizer_writes_copies: bool = False  # GraphedTrainStep's AdamW step writing the bf16 copies


CONFIGS = {
    "reference-eager": Config("torch"),
    "reference-compile": Config("torch", "default"),
    "reference-cudagraph": Config("torch", cuda_graph=True),
    # the compiled models replayed as CUDA graphs by torch.compile itself
    "reference-compile-cudagraphs": Config("torch", "reduce-overhead"),
    "triton": Config("triton"),
    "triton-cudagraph": Config("triton", cuda_graph=True),
    "triton-compile": Config("triton", "default"),
    "triton-compile-cudagraphs": Config("triton", "reduce-overhead"),
    "cuda": Config("cuda"),
    "cuda-cudagraph": Config("cuda", cuda_graph=True),
    # the cuda backend's other MLPs (the default, "auto", is "cublaslt_dgelu" where the extension
    # has cuBLASLt): cuBLAS + the extension's passes, every pass in a cuBLASLt epilogue
    "cuda-cublas-cudagraph": Config("cuda", cuda_graph=True, mlp=MLPOptions(cuda_gemm="cublas")),
    "cuda-cublaslt-cudagraph": Config("cuda", cuda_graph=True, mlp=MLPOptions(cuda_gemm="cublaslt")),
    "cuda-cublaslt_dgelu-cudagraph": Config("cuda", cuda_graph=True, mlp=MLPOptions(cuda_gemm="cublaslt_dgelu")),
    # the bias gradients placed otherwise than by default: every one a column sum (session 6's
    # step), and c_attn's alone from the attention backward (session 7's first measurement)
    "triton-biassum-cudagraph": Config("triton", cuda_graph=True, fuse_qkv_bias_grad=False,
                                       proj_bias_grad_in_layernorm=False),
    "cuda-biassum-cudagraph": Config("cuda", cuda_graph=True, fuse_qkv_bias_grad=False,
                                     proj_bias_grad_in_layernorm=False),
    "triton-qkvbias-cudagraph": Config("triton", cuda_graph=True, fuse_qkv_bias_grad=True,
                                       proj_bias_grad_in_layernorm=False),
    "cuda-qkvbias-cudagraph": Config("cuda", cuda_graph=True, fuse_qkv_bias_grad=True,
                                     proj_bias_grad_in_layernorm=False),
    # the AdamW step reading the bf16 gradients and writing the bf16 parameter copies (no casts)
    "triton-adamwcopy-cudagraph": Config("triton", cuda_graph=True, optimizer_writes_copies=True),
    "cuda-adamwcopy-cudagraph": Config("cuda", cuda_graph=True, optimizer_writes_copies=True),
    # the MLP's GELU GEMMs: c_fc's forward alone on kernels/mlp_gluon.py's warp-specialised
    # ping-pong kernel (session 10), and the backward's dh GEMM too (gelu' and the c_fc bias
    # partials in its epilogue: the default since session 11, as in triton-adamwcopy-cudagraph)
    "triton-gluonfc-adamwcopy-cudagraph": Config("triton", cuda_graph=True, optimizer_writes_copies=True,
                                                 mlp=MLPOptions(fc="gluon", gelu_grad="cublas")),
    "triton-gluon-adamwcopy-cudagraph": Config("triton", cuda_graph=True, optimizer_writes_copies=True,
                                               mlp=MLPOptions(fc="gluon", gelu_grad="gluon")),
    # session 10's default MLP: the Triton c_fc GEMM, cuBLAS dh + one elementwise pass
    "triton-tritonmlp-adamwcopy-cudagraph": Config("triton", cuda_graph=True, optimizer_writes_copies=True,
                                                   mlp=MLPOptions(fc="triton", gelu_grad="cublas")),
    # the default before session 23: the MLP keeps pre in bf16, not gelu'(pre)'s 8-bit codes
    "triton-prekept-adamwcopy-cudagraph": Config("triton", cuda_graph=True, optimizer_writes_copies=True,
                                                 mlp=MLPOptions(gelu_grad_code="never")),
}
CONFIG_ORDER = list(CONFIGS)              # tables and the plot list configurations in this order
HAS_CUDA = torch.cuda.is_available()


def build(setup: Config):
    """Model, optimizer and one step's callable for a configuration."""
    torch.manual_seed(0)
    config = fastgpt.gpt_preset("gpt2")
    model = fastgpt.GPT(config).cuda()
    model.fuse_bias_gradients(setup.backend != "torch")     # the reference: nanoGPT's arrangement
    for block in model.transformer.h:
        if setup.mlp is not None:
            block.mlp.options = setup.mlp
        if setup.fuse_qkv_bias_grad is not None:
            block.attn.fuse_qkv_bias_grad = setup.fuse_qkv_bias_grad
        if setup.proj_bias_grad_in_layernorm is not None:
            block.proj_bias_grad_in_layernorm = setup.proj_bias_grad_in_layernorm
    optimizer = model.configure_optimizer(weight_decay=0.1, learning_rate=6e-4, betas=(0.9, 0.95),
                                          device_type="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    idx = torch.randint(0, 50257, (BATCH, config.block_size), device="cuda", generator=g)
    targets = torch.randint(0, 50257, (BATCH, config.block_size), device="cuda", generator=g)
    backend, compile_mode = setup.backend, setup.compile_mode
    # fastgpt's graphed step casts the parameters in one copy, as fastgpt-train's does
    # (fastgpt.ops.autocast.cast_once_forward); the reference runs as a user would write it
    fastgpt_path = backend != "torch"
    if setup.cuda_graph:
        graphed = GraphedTrainStep(model, optimizer, n_micro=1, grad_clip=0.0,
                                   precision=torch.autocast("cuda", dtype=torch.bfloat16),
                                   cast_parameters_once=fastgpt_path,
                                   optimizer_writes_copies=setup.optimizer_writes_copies)

        def graphed_step():
            with fastgpt.use_backend(backend):
                graphed([(idx, targets)], 6e-4)
        return model, graphed_step
    forward = model if compile_mode is None else torch.compile(model, fullgraph=True, mode=compile_mode)

    def step():
        with fastgpt.use_backend(backend), torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = forward(idx, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, step


def write_row(name: str, extra: dict) -> None:
    out = os.environ.get("FASTGPT_BENCH_OUT")
    if not out:
        return
    keys = ("device", "median_ms", "tokens_per_s", "mfu", "peak_mem_gib", "batch", "block_size", "sustained_ms",
            "sustained_tokens_per_s", "sustained_first_half_ms", "sustained_s", "sm_clock_mhz", "power_w",
            "temperature_c")
    row = {"config": name, **{k: extra[k] for k in keys if k in extra}}
    folder = Path(out) / "train_step"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(row, indent=1) + "\n")
    from results import train_step_table     # results imports this module (CONFIG_ORDER): here, not at the top
    (Path(out) / "train_step.md").write_text(train_step_table(folder))     # every row so far, as RESULTS.md has them


@pytest.fixture(autouse=True)
def _release():
    yield
    torch._dynamo.reset()
    gc.collect()
    if HAS_CUDA:
        torch.cuda.empty_cache()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_train_step(benchmark, name):
    setup = CONFIGS[name]
    backend, compile_mode = setup.backend, setup.compile_mode
    compiled = compile_mode is not None
    if backend == "cuda" and not cuda_extension_available():
        pytest.skip("the CUDA extension fastgpt._C is not built")
    if setup.mlp is not None and setup.mlp.cuda_gemm.startswith("cublaslt"):
        from fastgpt import _cuda
        if not _cuda.load().gemm_epilogues:
            pytest.skip("the CUDA extension was built without cublasLt.h")
    model, step = build(setup)
    cfg = model.config
    tokens = BATCH * cfg.block_size
    ms = measure(benchmark, step, rounds=10, graph=False, sustain_s=SUSTAIN_S, config=name, backend=backend,
                 compiled=compiled, compile_mode=compile_mode, cuda_graph=setup.cuda_graph,
                 batch=BATCH, block_size=cfg.block_size, tokens_per_step=tokens)
    extra = benchmark.extra_info
    extra["tokens_per_s"] = tokens / (ms * 1e-3)
    extra["mfu"] = model.estimate_mfu(tokens, ms * 1e-3, PEAK_FLOPS)
    if "sustained_ms" in extra:
        extra["sustained_tokens_per_s"] = tokens / (extra["sustained_ms"] * 1e-3)
    extra["peak_flops"] = PEAK_FLOPS
    extra.setdefault("device", environment()["device"])
    write_row(name, extra)
