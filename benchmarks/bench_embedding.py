"""The embedding family against PyTorch, side by side, at GPT-2 124M's token table (16384 tokens,
50304 x 768, bf16).

    backward   the table's gradient alone: kernels/embedding.embedding_bwd (and tile variants)
               against PyTorch's embedding_dense_backward (what F.embedding's backward runs): its
               floor is writing the (V, C) gradient and reading the (N, C) dy once, over the copy
               bandwidth measured in the same run (copy_gbps).
    fwd_bwd    fused_embedding (triton backend) against F.embedding: the lookup and the table's
               gradient.
    gpt        what a GPT does with its tables (fused_tied_embedding, triton backend, against
               PyTorch as nanoGPT writes it): the token lookup plus the position table, forward
               alone ("fwd") and with the gradients of both tables given the LM head's gradient
               of the tied token table ("fwd_bwd": PyTorch adds the two table gradients).
Two index sets: "uniform" (random tokens, as bench_train_step.py's) and "shakespeare" (the
first 16384 GPT-2 tokens of the shipped Tiny Shakespeare: the skew of real text, whose most
frequent tokens are each looked up hundreds of times).

    pytest benchmarks/bench_embedding.py --benchmark-only --benchmark-json=out.json
"""
import pytest
import torch
import torch.nn.functional as F

import fastgpt
from fastgpt.data import shipped_corpus
from fastgpt.ops.embedding import fused_embedding, fused_tied_embedding
from fastgpt.tokenizer import GPT2Tokenizer
from timing import measure, step

TOKENS, VOCAB, WIDTH = 16384, GPT2Tokenizer.model_vocab_size, 768
DTYPE = torch.bfloat16
# The kernel's tile (kernels/embedding._TILE: BLOCK_P, SHORT, BLOCK_T, BLOCK_C, num_warps) around
# the default, so one GPU run says which wins.
VARIANTS = {
    "triton-t128c128w8": (32, 4, 128, 128, 8),
    "triton-t256c128w8": (32, 4, 256, 128, 8),
    "triton-t512c64w8": (32, 4, 512, 64, 8),
    "triton-s8t256c64w4": (32, 8, 256, 64, 4),
}


def indices(kind: str) -> torch.Tensor:
    if kind == "uniform":
        return torch.randint(0, GPT2Tokenizer.vocab_size, (TOKENS,), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    ids = GPT2Tokenizer().encode(shipped_corpus().read_text(encoding="utf-8")[:200_000])[:TOKENS]
    assert len(ids) == TOKENS
    return torch.tensor(ids, device="cuda")


@pytest.mark.parametrize("kind", ["uniform", "shakespeare"])
@pytest.mark.parametrize("impl", ["torch", "triton", *VARIANTS, "sort-only"])
def test_backward(benchmark, copy_gbps, impl, kind, monkeypatch):
    from fastgpt.kernels import embedding as kernels
    from fastgpt.kernels.embedding import embedding_bwd

    if impl in VARIANTS:
        monkeypatch.setattr(kernels, "_TILE", VARIANTS[impl])
    idx = indices(kind)
    dy = torch.randn(TOKENS, WIDTH, device="cuda", dtype=DTYPE)
    if impl == "torch":
        fn = lambda: torch.ops.aten.embedding_dense_backward(dy, idx, VOCAB, -1, False)  # noqa: E731
    elif impl == "sort-only":       # the launcher's sort and run starts alone, to attribute its time
        fn = lambda: kernels.runs(idx, VOCAB)  # noqa: E731
    else:
        fn = lambda: embedding_bwd(dy, idx, VOCAB)  # noqa: E731
    bytes_moved = (VOCAB + TOKENS) * WIDTH * dy.element_size()
    floor_ms = bytes_moved / (copy_gbps * 1e9) * 1e3
    ms = measure(benchmark, fn, bytes_moved=bytes_moved, tokens=TOKENS, vocab=VOCAB, width=WIDTH,
                 indices=kind, impl=impl, copy_gbps=copy_gbps, floor_ms=floor_ms,
                 max_run=int(torch.bincount(idx).max()))
    benchmark.extra_info["vs_floor"] = ms / floor_ms


@pytest.mark.parametrize("kind", ["uniform", "shakespeare"])
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_fwd_bwd(benchmark, impl, kind):
    idx = indices(kind).view(32, TOKENS // 32)
    weight = (torch.randn(VOCAB, WIDTH, device="cuda") * 0.02).to(DTYPE).requires_grad_()
    dy = torch.randn(32, TOKENS // 32, WIDTH, device="cuda", dtype=DTYPE)

    def forward(weight):
        if impl == "torch":
            return F.embedding(idx, weight)
        with fastgpt.use_backend("triton"):
            return fused_embedding(idx, weight)
    measure(benchmark, step(forward, (weight,), (weight,), dy, "fwd_bwd"), tokens=TOKENS, vocab=VOCAB,
            width=WIDTH, indices=kind, impl=impl)


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_gpt(benchmark, impl, mode):
    T = 512
    idx = indices("uniform").view(TOKENS // T, T)
    weight = (torch.randn(VOCAB, WIDTH, device="cuda") * 0.02).to(DTYPE).requires_grad_()
    positions = (torch.randn(T, WIDTH, device="cuda") * 0.02).to(DTYPE).requires_grad_()
    dy = torch.randn(TOKENS // T, T, WIDTH, device="cuda", dtype=DTYPE)
    dhead = torch.randn(VOCAB, WIDTH, device="cuda", dtype=DTYPE)      # the LM head's gradient

    def forward(weight, positions):
        if impl == "torch":
            return F.embedding(idx, weight) + positions, weight
        with fastgpt.use_backend("triton"):
            return fused_tied_embedding(idx, weight, positions)
    if mode == "fwd":
        fn = step(lambda w, p: forward(w, p)[0], (weight, positions), None, None, "fwd")
    else:
        fn = step(forward, (weight, positions), (weight, positions), (dy, dhead), "fwd_bwd")
    measure(benchmark, fn, tokens=TOKENS, vocab=VOCAB, width=WIDTH, impl=impl, mode=mode)
