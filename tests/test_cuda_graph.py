"""fastgpt/cuda_graph.py: the CUDA-graphed training step trains exactly as the eager one (GPU), and
where it cannot run it says why (everywhere); fastgpt-train's --cuda-graph switch."""
import dataclasses

import pytest
import torch

import fastgpt
from fastgpt.cuda_graph import GraphedTrainStep, portable_optimizer_state
from fastgpt.ops.dispatch import replayed_steps
from fastgpt.model import GPT
from fastgpt.testing import rel_error
from fastgpt.train import TrainConfig, Trainer, learning_rate_at, train_step

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
TINY_MODEL = fastgpt.GPTConfig(block_size=32, vocab_size=96, n_layer=2, n_head=2, n_embd=64, dropout=0.0)


def _model_and_optimizer(device, config=TINY_MODEL):
    torch.manual_seed(0)
    model = GPT(config).to(device)
    return model, model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), device.type)


def test_problems_are_named_on_cpu():
    model, _ = _model_and_optimizer(torch.device("cpu"))
    assert "not on a CUDA device" in GraphedTrainStep.problem(model, torch.autocast("cpu"))
    with pytest.raises(ValueError, match="cannot capture the training step as a CUDA graph"):
        GraphedTrainStep(model, None, 1, 1.0, torch.autocast("cpu"))


def _one_step(model, optimizer):
    x = torch.randint(0, 96, (2, 8))
    model(x, x)[1].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_checkpointed_optimizer_state_is_that_of_an_eager_run():
    """A graphed run's AdamW has a tensor learning rate and capturable on; its checkpoint must not
    (a CPU resume would refuse capturable), while the live optimizer keeps both."""
    model, optimizer = _model_and_optimizer(torch.device("cpu"))
    _one_step(model, optimizer)                        # some state to carry
    for group in optimizer.param_groups:              # what GraphedTrainStep does to it
        group["lr"], group["capturable"] = torch.tensor(3e-4), True
    state = portable_optimizer_state(optimizer)
    assert all(isinstance(g["lr"], float) and g["lr"] == pytest.approx(3e-4) and not g["capturable"]
               for g in state["param_groups"])
    assert all(isinstance(g["lr"], torch.Tensor) and g["capturable"] for g in optimizer.param_groups)
    resumed_model, resumed = _model_and_optimizer(torch.device("cpu"))
    resumed.load_state_dict(state)
    _one_step(resumed_model, resumed)                  # no "capturable needs CUDA params" error


@requires_cuda
def test_float16_is_refused():
    model, _ = _model_and_optimizer(torch.device("cuda"))
    assert "float16" in GraphedTrainStep.problem(model, torch.autocast("cuda", dtype=torch.float16))
    assert GraphedTrainStep.problem(model, torch.autocast("cuda", dtype=torch.bfloat16)) is None


@requires_cuda
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_dropout_draws_new_masks_at_every_replay(backend):
    """With dropout the step is captured too: the attention kernels read their seed from device
    memory, drawn inside the graph, so every replay drops other elements (as the eager steps do).
    At learning rate 0 the weights stay put, so the losses of one batch differ only by the masks:
    replays must differ from each other, and without dropout they must not."""
    device = torch.device("cuda")
    x = torch.randint(0, 96, (4, 32), device=device, generator=torch.Generator(device=device).manual_seed(3))
    losses = {}
    with fastgpt.use_backend(backend):
        for dropout in (0.0, 0.2):
            model, optimizer = _model_and_optimizer(device, dataclasses.replace(TINY_MODEL, dropout=dropout))
            precision = torch.autocast("cuda", dtype=torch.bfloat16)
            assert GraphedTrainStep.problem(model, precision) is None
            step = GraphedTrainStep(model, optimizer, 1, 0.0, precision, warmup_steps=1)
            losses[dropout] = [float(step([(x, x)], 0.0)) for _ in range(5)]
            assert step.graph is not None, step.capture_error
    assert len(set(losses[0.0][1:])) == 1, losses[0.0]                 # captured and replayed: one loss
    assert len(set(losses[0.2][1:])) == 4, losses[0.2]                 # a new mask every replay
    assert all(abs(a - losses[0.0][0]) < 0.5 for a in losses[0.2])     # the same model, dropped


@requires_cuda
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_graphed_steps_train_as_the_eager_steps(backend):
    """Six steps (2 eager warm-up, the capture, 3 replays) with a changing learning rate, gradient
    accumulation and clipping: the same losses and weights as eager train_step, to float rounding
    (both with the kernels of replayed steps, fastgpt.ops.dispatch.replayed_steps, and the
    parameters cast by autocast op by op); with the one-copy parameter cast (the default), the
    same within bf16 rounding (the embeddings then run in bf16 too)."""
    device, n_micro, steps = torch.device("cuda"), 2, 6
    schedule = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=2, max_iters=steps)
    g = torch.Generator(device=device).manual_seed(1)
    batches = [[(torch.randint(0, 96, (4, 32), device=device, generator=g),
                 torch.randint(0, 96, (4, 32), device=device, generator=g)) for _ in range(n_micro)]
               for _ in range(steps)]
    precision = torch.autocast("cuda", dtype=torch.bfloat16)
    results = {}
    with fastgpt.use_backend(backend):
        for mode in ("eager", "graph", "graph-cast-once"):
            model, optimizer = _model_and_optimizer(device)
            initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if mode.startswith("graph"):
                step = GraphedTrainStep(model, optimizer, n_micro, 1.0, precision,
                                        cast_parameters_once=mode == "graph-cast-once")
            else:
                scaler = torch.amp.GradScaler("cuda", enabled=False)

                def step(mb, lr):
                    with replayed_steps():
                        return train_step(model, optimizer, scaler, mb, n_micro, lr, 1.0, precision)
            losses = [step(iter(batches[i]), learning_rate_at(i, schedule)).item() for i in range(steps)]
            results[mode] = losses, {k: v.detach().clone() for k, v in model.state_dict().items()}
    eager_losses, eager_state = results["eager"]
    for mode, loss_tol, weight_tol in (("graph", 1e-5, 1e-4), ("graph-cast-once", 1e-2, 2e-2)):
        graph_losses, graph_state = results[mode]
        assert graph_losses == pytest.approx(eager_losses, rel=loss_tol), mode
        for name in eager_state:
            if mode == "graph-cast-once" and not initial[name].any():
                continue   # zero-initialised biases: after 6 Adam steps, the sign of tiny gradients
                           # (which bf16 rounding may flip) is all they are
            assert rel_error(graph_state[name], eager_state[name]) < weight_tol, (mode, name)
            if name.endswith("weight") and "ln" not in name:     # every replay really stepped AdamW
                assert rel_error(graph_state[name], initial[name]) > 1e-4, (mode, name)


def test_copies_problems_are_named():
    model, optimizer = _model_and_optimizer(torch.device("cpu"))
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16)
    assert GraphedTrainStep.copies_problem(optimizer, 1, bf16) is None
    assert "AdamW" in GraphedTrainStep.copies_problem(torch.optim.SGD(model.parameters(), lr=0.1), 1, bf16)
    assert "bfloat16" in GraphedTrainStep.copies_problem(optimizer, 1, torch.autocast("cuda", dtype=torch.float16))
    assert "accumulation" in GraphedTrainStep.copies_problem(optimizer, 2, bf16)


@requires_cuda
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_optimizer_writing_the_copies_trains_as_the_cast_once_step(backend):
    """optimizer_writes_copies: six graphed steps (warm-up, capture, replays) with clipping, against
    the graphed step with the one-copy cast: the same bf16 weights reach the forward and AdamW's
    arithmetic is the same to fp32 rounding, so losses and weights agree to bf16 rounding."""
    device, steps = torch.device("cuda"), 6
    schedule = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=2, max_iters=steps)
    g = torch.Generator(device=device).manual_seed(1)
    batches = [(torch.randint(0, 96, (4, 32), device=device, generator=g),
                torch.randint(0, 96, (4, 32), device=device, generator=g)) for _ in range(steps)]
    precision = torch.autocast("cuda", dtype=torch.bfloat16)
    results = {}
    with fastgpt.use_backend(backend):
        for copies in (False, True):
            model, optimizer = _model_and_optimizer(device)
            initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
            step = GraphedTrainStep(model, optimizer, 1, 0.5, precision, optimizer_writes_copies=copies)
            losses = [step([batches[i]], learning_rate_at(i, schedule)).item() for i in range(steps)]
            assert step.graph is not None and step.capture_error is None
            results[copies] = losses, {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-3)
    for name, weight in results[False][1].items():
        if initial[name].any():           # zero-initialised biases: see the test above
            assert rel_error(results[True][1][name], weight) < 1e-2, name
            assert rel_error(results[True][1][name], initial[name]) > 1e-4 or "ln" in name, name


@requires_cuda
def test_deferred_column_sums_change_nothing(monkeypatch):
    """The copies step runs its backward's column sums in one launch after it (the default) or in
    place (FASTGPT_DEFER_SUMS=0): the same losses and weights, bit for bit, over warm-up steps,
    the capture and replays, every bias random so that their gradients count."""
    device, steps = torch.device("cuda"), 6
    schedule = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=2, max_iters=steps)
    g = torch.Generator(device=device).manual_seed(2)
    batches = [(torch.randint(0, 96, (4, 32), device=device, generator=g),
                torch.randint(0, 96, (4, 32), device=device, generator=g)) for _ in range(steps)]
    results = {}
    with fastgpt.use_backend("triton"):
        for deferred in ("1", "0"):
            monkeypatch.setenv("FASTGPT_DEFER_SUMS", deferred)
            model, optimizer = _model_and_optimizer(device)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith(".bias"):
                        p.normal_(0.0, 0.1)
            step = GraphedTrainStep(model, optimizer, 1, 0.5, torch.autocast("cuda", dtype=torch.bfloat16),
                                    optimizer_writes_copies=True)
            assert (step.column_sums is not None) == (deferred == "1")
            losses = [step([batches[i]], learning_rate_at(i, schedule)).item() for i in range(steps)]
            assert step.graph is not None and step.capture_error is None
            results[deferred] = losses, {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert results["1"][0] == results["0"][0]
    for name, weight in results["0"][1].items():
        assert torch.equal(results["1"][1][name], weight), name


@pytest.mark.parametrize("copies", [False, True], ids=["cast", "copies"])
def test_a_step_is_freed_when_its_last_reference_goes(copies, monkeypatch):
    """No reference cycle through the step: its graph (and, under torchrun, the NCCL work captured
    in it) goes when the trainer lets go, not when the garbage collector happens to run. A cycle
    (a closure over the step) kept the graph past destroy_process_group and the ranks hung at exit
    (run 39). On a GPU after a capture and replays; on CPU the step is only built (its CUDA check
    waived), which is where the cycle was made."""
    import gc
    import weakref
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        monkeypatch.setattr(GraphedTrainStep, "problem", staticmethod(lambda model, precision: None))
    model, optimizer = _model_and_optimizer(device)
    precision = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    step = GraphedTrainStep(model, optimizer, 1, 1.0, precision, optimizer_writes_copies=copies)
    if device.type == "cuda":
        x = torch.randint(0, 96, (2, 32), device=device)
        for _ in range(4):                               # warm-up, capture, replays
            step([(x, x)], 1e-3)
        assert step.graph is not None
    gc.disable()
    try:
        alive = weakref.ref(step)
        del step
        assert alive() is None
    finally:
        gc.enable()


@requires_cuda
def test_new_batch_shape_is_a_clear_error():
    model, optimizer = _model_and_optimizer(torch.device("cuda"))
    step = GraphedTrainStep(model, optimizer, 1, 0.0, torch.autocast("cuda", dtype=torch.bfloat16))
    x = torch.randint(0, 96, (2, 32), device="cuda")
    step([(x, x)], 1e-3)
    with pytest.raises(ValueError, match=r"keeps its batch shape \(2, 32\)"):
        step([(x[:1], x[:1])], 1e-3)


def test_trainer_refuses_a_graph_it_cannot_capture(tmp_path, corpus):
    """--cuda-graph asked for where it cannot run: a one-line reason; unasked, it is just off."""
    from fastgpt.cli import ConfigError
    settings = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=2, max_iters=1, progress=False,
                    data=str(corpus), cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"),
                    device="cpu", sample_tokens=0)
    assert Trainer(TrainConfig(**settings)).graphed_step is None
    with pytest.raises(ConfigError, match="--cuda-graph: cannot capture .* not on a CUDA device"):
        Trainer(TrainConfig(**settings, cuda_graph=True))
    with pytest.raises(ConfigError, match="--optimizer-writes-copies needs the CUDA-graphed step, .* not on a CUDA"):
        Trainer(TrainConfig(**settings, optimizer_writes_copies=True))
    with pytest.raises(ConfigError, match=r"--optimizer-writes-copies needs the CUDA-graphed step \(--cuda-graph is off"):
        Trainer(TrainConfig(**settings, cuda_graph=False, optimizer_writes_copies=True))


@requires_cuda
def test_trainer_runs_on_the_copies_where_it_can(tmp_path, corpus):
    """The graphed step writes the parameter copies by default on one GPU in bf16; gradient
    accumulation turns that off unasked, and asked for it is a one-line error."""
    from fastgpt.cli import ConfigError
    settings = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=2, max_iters=1, progress=False,
                    data=str(corpus), cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"),
                    device="cuda", dtype="bfloat16", sample_tokens=0)
    trainer = Trainer(TrainConfig(**settings))
    assert trainer.graphed_step.copies is not None and "parameter copies" in trainer.step_kind
    assert Trainer(TrainConfig(**settings, optimizer_writes_copies=False)).graphed_step.copies is None
    assert Trainer(TrainConfig(**settings, gradient_accumulation_steps=2)).graphed_step.copies is None
    with pytest.raises(ConfigError, match="--optimizer-writes-copies: gradient accumulation"):
        Trainer(TrainConfig(**settings, gradient_accumulation_steps=2, optimizer_writes_copies=True))


@requires_cuda
def test_a_step_that_cannot_be_captured_warns_and_stays_eager(monkeypatch):
    model, optimizer = _model_and_optimizer(torch.device("cuda"))
    forward = model.forward

    def syncing_forward(idx, targets=None):
        logits, loss = forward(idx, targets)
        loss.item()                                    # a host sync: not allowed while capturing
        return logits, loss

    monkeypatch.setattr(model, "forward", syncing_forward)
    step = GraphedTrainStep(model, optimizer, 1, 0.0, torch.autocast("cuda", dtype=torch.bfloat16),
                            warmup_steps=1)
    x = torch.randint(0, 96, (2, 32), device="cuda")
    step([(x, x)], 1e-3)
    with pytest.warns(RuntimeWarning, match="could not capture the training step"):
        loss = step([(x, x)], 1e-3)
    assert step.graph is None and step.capture_error is not None and torch.isfinite(loss)
    assert torch.isfinite(step([(x, x)], 1e-3))      # later steps run eagerly, without a new try
    # the failed capture left the device's random number generator usable
    assert torch.nn.functional.dropout(torch.ones(1000, device="cuda"), 0.5).count_nonzero() > 0
