"""fastgpt/graph_memsets.py: a captured graph's small memsets as kernel nodes write the same bytes
(GPU: replays against eager results, bitwise; the graphed training step with and without), and
which memsets qualify (everywhere)."""
import importlib

import pytest
import torch

import fastgpt
from fastgpt import graph_memsets
from fastgpt.cuda_graph import GraphedTrainStep
from fastgpt.model import GPT

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
Params = graph_memsets._MemsetParams


@pytest.mark.parametrize("element_size, value, width, word", [
    (4, 0, 1, 0), (4, 0xDEADBEEF, 3, 0xDEADBEEF), (1, 0xAB, 4096, 0xABABABAB), (2, 0x1234, 2, 0x12341234),
    (1, 0x1FF, 8, 0xFFFFFFFF)])   # a value wider than the element keeps its low bytes, as cuMemset does
def test_word_runs_are_filled_with_the_memsets_pattern(element_size, value, width, word):
    fill = graph_memsets.fill_word(Params(dst=0x7F0000001000, pitch=0, value=value, element_size=element_size,
                                          width=width, height=1))
    assert fill == (word, element_size * width // 4)


@pytest.mark.parametrize("dst, element_size, width, height", [
    (0x1002, 4, 1, 1),                        # unaligned destination
    (0x1000, 1, 3, 1),                        # not whole words
    (0x1000, 4, 4, 2),                        # a 2-D memset
    (0x1000, 4, graph_memsets.MAX_BYTES // 4 + 1, 1),   # past MAX_BYTES
    (0x1000, 8, 1, 1)])                       # no such element size
def test_other_memsets_stay(dst, element_size, width, height):
    assert graph_memsets.fill_word(Params(dst=dst, pitch=0, value=0, element_size=element_size, width=width,
                                          height=height)) is None


def _gemms_and_sort():
    """Work whose capture holds memsets: cuBLAS zeroes a word before large-M GEMMs (H100, run 123)
    and CUB's radix sort clears its histograms."""
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(16384, 768, device="cuda", dtype=torch.bfloat16, generator=g)
    w = torch.randn(768, 768, device="cuda", dtype=torch.bfloat16, generator=g)
    keys = torch.randint(0, 50257, (16384,), device="cuda", dtype=torch.int32, generator=g)

    def work():
        y = torch.relu(a @ w) @ w.t()
        sorted_keys, order = torch.sort(keys, stable=True)
        return y, sorted_keys, order
    return work


@requires_cuda
def test_rewritten_graph_replays_the_captured_work():
    if not graph_memsets.supported():
        pytest.skip("this torch cannot keep a captured graph for editing")
    work = _gemms_and_sort()
    expected = work()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):          # cuBLAS handles and workspaces exist before the capture
        work()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph(keep_graph=True)
    with torch.cuda.graph(graph):
        outputs = work()
    replaced = graph_memsets.rewrite(graph.raw_cuda_graph(), torch.cuda.current_device())
    graph.instantiate()
    assert replaced > 0
    for _ in range(2):
        for out in outputs:                 # poison: a replay must write every element again
            out.fill_(float("nan") if out.is_floating_point() else -1)
        graph.replay()
        torch.cuda.synchronize()
        for out, ref in zip(outputs, expected):
            assert torch.equal(out, ref)


@requires_cuda
def test_graphed_step_trains_the_same_with_its_memsets_rewritten(monkeypatch):
    """The graphed training step (triton backend, parameter copies) over five steps with the rewrite
    (fills beside the kernels before them where allowed), with each fill in its memset's place, and
    as captured: bitwise the same losses (the same kernels on the same data; only the zeroing differs)."""
    if not graph_memsets.supported():
        pytest.skip("this torch cannot keep a captured graph for editing")
    config = fastgpt.GPTConfig(block_size=64, vocab_size=96, n_layer=2, n_head=2, n_embd=128, dropout=0.0)
    g = torch.Generator(device="cuda").manual_seed(1)
    # 16384 tokens a step: at 512 the graph held no memset to rewrite (H100, run 137: 0, here 6)
    batches = [(torch.randint(0, 96, (256, 64), device="cuda", generator=g),
                torch.randint(0, 96, (256, 64), device="cuda", generator=g)) for _ in range(5)]
    losses, rewritten = {}, {}
    for setting in ("1", "inline", "0"):
        monkeypatch.setenv("FASTGPT_GRAPH_MEMSETS", setting)
        torch.manual_seed(0)
        model = GPT(config).cuda()
        optimizer = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cuda")
        step = GraphedTrainStep(model, optimizer, 1, 1.0, torch.autocast("cuda", dtype=torch.bfloat16),
                                optimizer_writes_copies=True)
        with fastgpt.use_backend("triton"):
            losses[setting] = [step([batch], 1e-3).item() for batch in batches]
        assert step.graph is not None
        rewritten[setting] = step.memsets_rewritten
    assert rewritten["0"] == 0 and rewritten["1"] == rewritten["inline"] > 0
    assert losses["1"] == losses["inline"] == losses["0"]


def test_fastgpt_kernels_are_named_for_hoisting():
    importlib.import_module("fastgpt.kernels.layernorm")   # the names come from imported kernel modules
    names = graph_memsets.fastgpt_kernel_names()
    assert {"_add_layernorm_fwd_kernel", "_add_layernorm_bwd_kernel", "sum_partials_kernel"} <= names
    assert not any(name.startswith("nvjet") for name in names)


@pytest.mark.parametrize("name, gemm", [("nvjet_sm90_tst_128x128_64x6_2x1_v_bz_NNT", True),
                                        ("sm90_xmma_gemm_bf16bf16_bf16f32", True),
                                        ("_add_layernorm_fwd_kernel", False), (None, False)])
def test_cublas_gemms_are_told_by_name(name, gemm):
    assert graph_memsets._cublas_gemm(name) == gemm
