"""DDP through torchrun on 2 CPU processes (gloo): training equals one process trained on the
concatenated global batch, gradient accumulation defers the all-reduce (no_sync), and a 2-rank
checkpoint resumes on 2 ranks (every rank restored: the replicas stay in sync) and on 1.

Run with the torch backend and with our Triton kernels (in the interpreter: slow, so fewer
steps), so the fused ops' autograd Functions are checked under DDP too.

With 2 GPUs, the same equality for the CUDA-graphed step, which averages the gradients over the
ranks itself (fastgpt.distributed.all_reduce_gradients, NCCL, inside the graph), and for eager
DDP over NCCL; the gradient average itself is checked on 2 CPU processes."""
import re
import subprocess
import sys

import pytest
import torch

from fastgpt import distributed
from fastgpt.backend import use_backend
from fastgpt.checkpoint import load_checkpoint
from fastgpt.data import BatchSampler, prepare_dataset
from fastgpt.testing import REL_TOL, assert_rel_close
from fastgpt.train import initial_model_and_optimizer, learning_rate_at, main, model_config, train_step
from test_train import tiny_config, tiny_flags

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is missing")

WORLD, ACCUMULATION = 2, 2
STEPS = {"torch": 6, "triton": 2}   # optimizer steps in all; the first half, then a resume


def torchrun(args, timeout=120):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "fastgpt.train", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def logged_losses(stdout: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in re.findall(r"^step (\d+)/\d+ \| loss ([\d.]+)", stdout, re.M)}


def single_process_reference(cfg, steps, device=torch.device("cpu")):
    """One process, each step on the ranks' micro-batches concatenated: what DDP must equal."""
    dataset = prepare_dataset(cfg.data, cfg.tokenizer, cfg.cache_dir, log=lambda *a: None)
    mc = model_config(cfg, dataset.tokenizer)
    samplers = [BatchSampler(dataset.train, cfg.batch_size, mc.block_size, cfg.seed, "train", rank, WORLD)
                for rank in range(WORLD)]
    model, optimizer = initial_model_and_optimizer(cfg, mc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    losses, n_micro = {}, cfg.gradient_accumulation_steps
    with use_backend(cfg.backend):
        for step in range(steps):
            micro = [tuple(torch.cat(parts).to(device)
                           for parts in zip(*(s.batch(step * n_micro + m) for s in samplers)))
                     for m in range(n_micro)]
            loss = train_step(model, optimizer, scaler, iter(micro), n_micro, learning_rate_at(step, cfg),
                              cfg.grad_clip, distributed.autocast(device, distributed.resolve_dtype(cfg.dtype, device)))
            losses[step + 1] = loss.item()
    return model, losses


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="CPU ranks run Triton in the interpreter, which tests/conftest.py "
    "turns on only where there is no GPU (the GPU's triton runs in tests/test_train.py)"))])
def test_two_ranks_equal_one_process_on_the_global_batch_and_resume(tmp_path, corpus, backend):  # noqa: F811
    steps = STEPS[backend]
    settings = dict(max_iters=steps // 2, lr_decay_iters=steps, gradient_accumulation_steps=ACCUMULATION,
                    eval_interval=steps, sample_tokens=0, device="cpu", backend=backend)
    first = torchrun(tiny_flags(tmp_path, corpus, **settings))
    assert "x 2 rank(s) = 256 tokens/step" in first      # 4 sequences x 16 tokens x 2 micro-steps x 2 ranks
    assert f"backend {backend}" in first
    state = load_checkpoint(tmp_path / "out")
    assert state["step"] == steps // 2 and state["world_size"] == WORLD and len(state["rng"]) == WORLD
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])   # per-rank dropout streams

    resumed = torchrun(["--resume", "--out-dir", tmp_path / "out", "--max-iters", steps])
    assert f"step {steps // 2}/" not in resumed and f"step {steps}/{steps}" in resumed
    final = load_checkpoint(tmp_path / "out")
    assert final["step"] == steps

    model, ref_losses = single_process_reference(tiny_config(tmp_path, corpus, **settings), steps)
    ddp_losses = {**logged_losses(first), **logged_losses(resumed)}
    assert sorted(ddp_losses) == list(range(1, steps + 1))
    for step, loss in ddp_losses.items():
        assert loss == pytest.approx(ref_losses[step], abs=1e-4), step   # the log prints 4 decimals
    for name, ref in model.state_dict().items():
        torch.testing.assert_close(final["model"][name], ref, rtol=1e-5, atol=1e-6, msg=name)


def test_a_two_rank_checkpoint_continues_in_one_process(tmp_path, corpus, capsys):  # noqa: F811
    torchrun(tiny_flags(tmp_path, corpus, max_iters=2, sample_tokens=0, device="cpu"))
    assert main(["--resume", "--out-dir", str(tmp_path / "out"), "--max-iters", "3"]) == 0
    assert "resuming a 2-rank checkpoint on 1 rank(s)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "out")["step"] == 3


# ---- the gradient average without DDP (what the multi-GPU CUDA-graphed step calls) ----

def _average_gradients_on_rank(rank: int, store: str, layout: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        shapes = [(3, 5), (7,), (2, 2, 2)]
        params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
        values = [torch.randn(shape, generator=torch.Generator().manual_seed(10 * rank + i))
                  for i, shape in enumerate(shapes)]
        if layout == "one buffer":   # slices of one buffer, as cast_once_forward leaves them
            flat = torch.cat([v.flatten() for v in values])
            for p, piece in zip(params, flat.split([v.numel() for v in values])):
                p.grad = piece.view(p.shape)
        else:
            for p, v in zip(params, values):
                p.grad = v.clone()
        before = [p.grad.data_ptr() for p in params]
        distributed.all_reduce_gradients(params)
        for i, (p, shape) in enumerate(zip(params, shapes)):
            expected = sum(torch.randn(shape, generator=torch.Generator().manual_seed(10 * r + i))
                           for r in range(WORLD)) / WORLD
            torch.testing.assert_close(p.grad, expected, rtol=1e-6, atol=1e-7)
        assert [p.grad.data_ptr() for p in params] == before      # in place, whatever the layout
        if layout == "one buffer":
            assert distributed.contiguous_span([p.grad for p in params]) is not None
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("layout", ["one buffer", "separate tensors"])
def test_all_reduce_gradients_averages_over_ranks_in_place(tmp_path, layout):
    torch.multiprocessing.spawn(_average_gradients_on_rank, args=(str(tmp_path / "store"), layout), nprocs=WORLD)


def _average_in_fp32_on_rank(rank: int, store: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        shapes = [(3, 5), (7,), (2, 2, 2)]

        def grads_of(r):   # bf16 gradients, as the parameter copies have them
            return [torch.randn(shape, generator=torch.Generator().manual_seed(10 * r + i)).bfloat16()
                    for i, shape in enumerate(shapes)]
        mine = grads_of(rank)
        kept = [g.clone() for g in mine]
        averaged = distributed.average_in_fp32(mine)
        assert distributed.contiguous_span(averaged) is not None          # views of one buffer
        for i, (g, shape) in enumerate(zip(averaged, shapes)):
            assert g.dtype == torch.float32 and g.shape == shape
            expected = sum(grads_of(r)[i].double() for r in range(WORLD)) / WORLD   # exact in fp32
            torch.testing.assert_close(g.double(), expected, rtol=0, atol=0)
        assert all(torch.equal(g, k) for g, k in zip(mine, kept))     # the bf16 gradients untouched
    finally:
        torch.distributed.destroy_process_group()


def test_average_in_fp32_averages_bf16_gradients_in_fp32(tmp_path):
    """The multi-GPU step on parameter copies: the ranks' bf16 gradients averaged in fp32 (the
    mean of two bf16 values is exact in fp32), into fp32 views of one buffer."""
    torch.multiprocessing.spawn(_average_in_fp32_on_rank, args=(str(tmp_path / "store"),), nprocs=WORLD)
    alone = [torch.ones(2, dtype=torch.bfloat16)]
    assert distributed.average_in_fp32(alone) is alone       # one process: the gradients themselves


def test_contiguous_span_only_for_gap_free_slices_of_one_storage():
    flat = torch.arange(10.0)
    a, b, c = flat[:3], flat[3:7].view(2, 2), flat[7:]
    assert torch.equal(distributed.contiguous_span([c, a, b]), flat)     # any order
    assert distributed.contiguous_span([a, c]) is None                   # a gap
    assert distributed.contiguous_span([a, torch.zeros(7)]) is None      # two storages
    assert distributed.contiguous_span([flat[:4], flat[4:8].view(2, 2).t()]) is None   # not contiguous


# ---- 2 GPUs: NCCL ----

@pytest.mark.skipif(torch.cuda.device_count() < WORLD, reason=f"needs {WORLD} GPUs")
@pytest.mark.parametrize("cuda_graph, dtype, accumulation",
                         [(True, "bfloat16", 1), (True, "float32", ACCUMULATION), (True, "bfloat16", ACCUMULATION),
                          (False, "float32", ACCUMULATION)],
                         ids=["graphed-bf16-copies", "graphed-fp32", "graphed-bf16", "eager-ddp-fp32"])
def test_two_gpus_equal_one_gpu_on_the_global_batch(tmp_path, corpus, cuda_graph, dtype, accumulation):  # noqa: F811
    """bf16 without accumulation: the model on the parameter copies, their bf16 gradients averaged
    in fp32 (distributed.average_in_fp32) for the AdamW step that writes them; bf16 with
    accumulation: the gradients lie in one buffer (cast_once_forward), reduced in place; fp32: the
    flatten-and-copy-back path.

    Not bitwise, unlike on CPUs: cuBLAS rounds GEMMs of other shapes (B vs 2B rows; TF32 in fp32)
    differently, and AdamW's first steps move each weight by about +-lr whatever its gradient's
    size, so a gradient element at rounding level may move its weight either way. The learning
    rate is kept small (3e-4) so those flips move the loss by far less than the tolerance (at 2e-3
    they moved step 2's loss by 0.26% in fp32); the CPU test above is the bitwise one."""
    steps = 6   # 2 eager warm-up steps, then captured ones
    settings = dict(max_iters=steps, gradient_accumulation_steps=accumulation, eval_interval=steps,
                    sample_tokens=0, dropout=0.0, learning_rate=3e-4, min_lr=3e-5, device="cuda", dtype=dtype,
                    backend="triton", cuda_graph=cuda_graph)
    tol = REL_TOL[distributed.DTYPES[dtype]]
    out = torchrun(tiny_flags(tmp_path, corpus, **settings), timeout=300)
    copies = "on bf16 parameter copies written by the AdamW step; " if accumulation == 1 else ""
    kind = f"CUDA-graphed ({copies}gradients all-reduced inside the graph)" if cuda_graph else "eager DDP"
    assert f"{kind} training step" in out and "peak GPU memory per rank: " in out
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True       # as fastgpt-train sets it on GPUs
    try:
        model, ref_losses = single_process_reference(tiny_config(tmp_path, corpus, **settings), steps,
                                                     torch.device("cuda"))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    ddp_losses = logged_losses(out)
    assert sorted(ddp_losses) == list(range(1, steps + 1))
    for step, loss in ddp_losses.items():
        assert loss == pytest.approx(ref_losses[step], rel=tol / 2), step
    # all weights as one vector: GEMMs of other shapes round differently, and AdamW's first steps
    # move each element by about +-lr whatever its gradient's size, so an element whose gradient
    # is ~0 may move either way (a zero-initialised bias alone can differ by O(1) relatively)
    final = load_checkpoint(tmp_path / "out")["model"]
    names = list(model.state_dict())
    assert_rel_close(torch.cat([final[n].flatten() for n in names]),
                     torch.cat([t.flatten() for t in model.state_dict().values()]), tol, "weights")
