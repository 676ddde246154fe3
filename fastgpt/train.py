"""fastgpt-train: train a GPT on a text corpus, on a CPU, a GPU, or many GPUs through torchrun.

    fastgpt-train                                    # Tiny Shakespeare; GPU default or CPU default
    fastgpt-train --preset gpt2 --backend triton     # GPT-2 small, BPE, block 512
    fastgpt-train --data my_texts/ --max-iters 5000 --out-dir runs/mine
    fastgpt-train --config run.toml --learning-rate 3e-4    # flags win over the file
    fastgpt-train --resume --out-dir runs/mine              # continue exactly where it stopped
    torchrun --nproc_per_node 8 -m fastgpt.train --preset gpt2   # 8 GPUs (see README for multi-node)

Settings are one `TrainConfig`, taken from a preset (default: shakespeare-char when a GPU is
there, cpu-char otherwise), then a TOML/YAML file (--config), then flags. With --resume the
checkpoint's settings replace the preset, and the model it holds must match what the settings
build. The loop is nanoGPT's: AdamW with warmup + cosine decay, gradient clipping and
accumulation, bf16 autocast on GPUs, evaluation of train/val loss every eval_interval steps
(then a checkpoint), a generated sample at the end. Ctrl-C (or SIGTERM) finishes the current
step, writes a checkpoint and exits; --resume then continues with the same batches, random
state and schedule, so on a CPU the losses equal those of an uninterrupted run exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from fastgpt import distributed as dist
from fastgpt.backend import CHOICES as BACKEND_CHOICES
from fastgpt.backend import BackendError, resolve, use_backend
from fastgpt.checkpoint import (CHECKPOINT_NAME, CheckpointError, check_model_config, ensure_writable_folder,
                                load_checkpoint, rng_state, save_checkpoint, set_rng_state, unwrap_model)
from fastgpt.cli import (ConfigError, add_dataclass_arguments, convert, dataclass_values, load_config_file,
                         run_command, setting)
from fastgpt.config import GPT_PRESETS, GPTConfig, gpt_preset
from fastgpt.cuda_graph import GraphedTrainStep, portable_optimizer_state
from fastgpt.data import BatchSampler, DataError, prepare_dataset
from fastgpt.distributed import DeviceError
from fastgpt.model import GPT
from fastgpt.sample import generate_text
from fastgpt.tokenizer import TOKENIZERS, Tokenizer, TokenizerError

# bf16 dense peak of one GPU, for MFU; matched against torch.cuda.get_device_name()
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
                   "L4": 121e12, "A10G": 70e12, "RTX 4090": 165e12, "RTX 3090": 71e12}
EVAL_SEED_OFFSET = 1_000_003   # eval batches come from their own random stream, not training's
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the cpu-char preset."""

    # model
    model: str = setting("cpu-char", "model preset (GPTConfig)", tuple(GPT_PRESETS))
    n_layer: int | None = setting(None, "override the model preset's layer count")
    n_head: int | None = setting(None, "override the model preset's head count")
    n_embd: int | None = setting(None, "override the model preset's width")
    block_size: int | None = setting(None, "override the model preset's context length")
    dropout: float | None = setting(None, "override the model preset's dropout")
    bias: bool | None = setting(None, "override the model preset's use of biases")
    # data
    data: str | None = setting(None, "UTF-8 text file or folder of them (default: the shipped Tiny Shakespeare)",
                               metavar="PATH")
    tokenizer: str = setting("char", "char (vocabulary from the corpus) or gpt2 (BPE)", TOKENIZERS)
    cache_dir: str | None = setting(None, "where tokenized data is kept (default: $FASTGPT_CACHE or "
                                          "~/.cache/fastgpt)", metavar="PATH")
    # optimisation
    batch_size: int = setting(16, "sequences per micro-step on each rank")
    gradient_accumulation_steps: int = setting(1, "micro-steps per optimizer step on each rank")
    max_iters: int = setting(3000, "optimizer steps in all")
    learning_rate: float = setting(2e-3, "peak learning rate")
    min_lr: float = setting(2e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = setting(100, "steps of linear warmup")
    lr_decay_iters: int | None = setting(None, "step where the cosine decay ends (none: max_iters)")
    weight_decay: float = setting(0.1, "AdamW weight decay of the matrices")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.99, "AdamW beta2")
    grad_clip: float = setting(1.0, "clip the gradient norm to this (0: no clipping)")
    # evaluation, logging, output
    eval_interval: int = setting(500, "evaluate (and write a checkpoint) every this many steps")
    eval_iters: int = setting(200, "batches per split averaged by each evaluation")
    log_interval: int = setting(50, "log the training loss every this many steps")
    metrics_file: str | None = setting(None, "also write each log line, and the run's summary, as JSON lines "
                                             "to this file (rank 0; replaced at the start)", metavar="PATH")
    out_dir: str = setting("out", "folder of the checkpoint ckpt.pt", metavar="PATH")
    sample_tokens: int = setting(500, "characters/tokens of the sample printed at the end (0: none)")
    progress: bool = setting(True, "show a progress bar")
    # system
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", metavar="DEVICE")
    dtype: str = setting("auto", "autocast precision (auto: bfloat16 on GPUs, float32 on CPUs)",
                         ("auto", "float32", "bfloat16", "float16"))
    backend: str = setting("auto", "which kernels run the model", BACKEND_CHOICES)
    compile: bool = setting(False, "torch.compile the model")
    cuda_graph: bool | None = setting(None, "replay each training step as one CUDA graph (default: on where the run "
                                            "allows it: CUDA, no float16, no --compile; under "
                                            "torchrun it averages the gradients itself, without DDP)")
    optimizer_writes_copies: bool | None = setting(
        None, "run the graphed step's model on bf16 parameter copies that the AdamW step writes, with no "
              "casts and no clipping pass (default: on where it applies: a CUDA-graphed step, bfloat16, no "
              "gradient accumulation)")
    seed: int = setting(1337, "seed of the model's initialisation, the batches and dropout")
    peak_flops: float | None = setting(None, "one GPU's peak FLOP/s for MFU (default: its bf16 peak, "
                                             "when known)")

    def validate(self) -> None:
        positive = ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ConfigError(f"need 0 <= min_lr <= learning_rate, got {self.min_lr} and {self.learning_rate}")
        for field in dataclasses.fields(self):   # choices also bind values set in Python
            if field.metadata.get("choices"):
                convert(getattr(self, field.name), str, False, field.name, field.metadata["choices"])


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # nanoGPT's CPU demo shape (4x128, block 64, char-level, no dropout), with the batch, steps
    # and learning rate tuned on 2 CPU cores to pass val loss 1.90 well inside 10 minutes:
    # the default without a GPU
    "cpu-char": TrainConfig(),   # the dataclass defaults
    # nanoGPT's config/train_shakespeare_char.py: the default with a GPU
    "shakespeare-char": TrainConfig(model="shakespeare-char", batch_size=64, max_iters=5000, learning_rate=1e-3,
                                    min_lr=1e-4, eval_interval=250, log_interval=10),
    # GPT-2 small on BPE tokens at block 512: the GPU benchmark run
    "gpt2": TrainConfig(model="gpt2", tokenizer="gpt2", batch_size=32, gradient_accumulation_steps=4,
                        max_iters=1000, learning_rate=6e-4, min_lr=6e-5, beta2=0.95,
                        eval_interval=250, eval_iters=20, log_interval=10, sample_tokens=200),
    "gpt2-medium": TrainConfig(model="gpt2-medium", tokenizer="gpt2", batch_size=8,
                               gradient_accumulation_steps=16, max_iters=1000, learning_rate=3e-4,
                               min_lr=3e-5, beta2=0.95, eval_interval=250, eval_iters=20, log_interval=10,
                               sample_tokens=200),
}


def train_preset(name: str) -> TrainConfig:
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[name]


def default_preset(device: str) -> str:
    """shakespeare-char when training will run on a GPU, cpu-char otherwise."""
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "shakespeare-char" if on_gpu else "cpu-char"


def model_config(cfg: TrainConfig, tokenizer: Tokenizer) -> GPTConfig:
    overrides = {f: getattr(cfg, f) for f in MODEL_FIELDS if getattr(cfg, f) is not None}
    try:
        return gpt_preset(cfg.model, vocab_size=tokenizer.model_vocab_size, **overrides)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def initial_model_and_optimizer(cfg: TrainConfig, mc: GPTConfig,
                                device: torch.device) -> tuple[GPT, torch.optim.Optimizer]:
    """A run's model before its first step (seeded by cfg.seed: every rank builds the same one)
    and its AdamW (fused on CUDA)."""
    torch.manual_seed(cfg.seed)
    model = GPT(mc).to(device)
    return model, model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                            device.type)


def optimizer_writes_copies(cfg: TrainConfig, optimizer: torch.optim.Optimizer, n_micro: int, precision) -> bool:
    """Whether a graphed step of this run puts its model on parameter copies that the AdamW step
    writes: cfg.optimizer_writes_copies, None meaning where it applies (GraphedTrainStep.copies_problem);
    asked for where it does not apply, a one-line ConfigError."""
    problem = GraphedTrainStep.copies_problem(optimizer, n_micro, precision)
    if problem is not None and cfg.optimizer_writes_copies:
        raise ConfigError(f"--optimizer-writes-copies: {problem}")
    return problem is None and cfg.optimizer_writes_copies is not False


def learning_rate_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, cosine decay to min_lr at lr_decay_iters, then min_lr."""
    decay_iters = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else cfg.max_iters
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay_iters:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n_micro: int, lr: float,
               grad_clip: float, precision) -> torch.Tensor:
    """One optimizer step over `n_micro` micro-batches; returns their mean loss (detached).

    Under DDP the gradients are all-reduced only in the backward of the last micro-step
    (no_sync on the others), so each step costs one all-reduce whatever the accumulation.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = torch.zeros((), device=next(model.parameters()).device)
    for i, (x, y) in enumerate(micro_batches):
        defer_sync = isinstance(model, DistributedDataParallel) and i < n_micro - 1
        with model.no_sync() if defer_sync else contextlib.nullcontext():
            with precision:
                _, loss = model(x, y)
            scaler.scale(loss / n_micro).backward()
        total += loss.detach().float()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total / n_micro


def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device):
    if device.type == "cuda":   # pinned host memory lets the copy overlap the GPU's work
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)
    return tuple(t.to(device) for t in batch)


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, samplers: dict[str, BatchSampler], eval_iters: int,
                  device: torch.device, precision) -> dict[str, float]:
    """Mean loss of each split over the same eval_iters batches every time, averaged over ranks."""
    was_training = model.training
    model.eval()
    means = []
    for sampler in samplers.values():
        losses = torch.zeros(eval_iters, device=device)
        for k in range(eval_iters):
            x, y = to_device(sampler.batch(k), device)
            with precision:
                _, loss = model(x, y)
            losses[k] = loss.float()
        means.append(losses.mean())
    model.train(was_training)
    return dict(zip(samplers, dist.all_reduce_mean(torch.stack(means)).tolist()))


class GracefulStop:
    """Turn SIGINT/SIGTERM into a request to stop after the current step (then checkpoint).

    A repeat more than 2 s after the first forces an immediate KeyboardInterrupt; repeats
    within 2 s are the same request (torchrun forwards the terminal's Ctrl-C to its workers).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log=print):
        self.signum: int | None = None
        self.first_at = 0.0
        self.log = log
        self.previous = {}

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum, self.first_at = signum, time.monotonic()
            self.log(f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
                     "(again to quit at once)")
        elif time.monotonic() - self.first_at > 2.0:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        return False


@dataclasses.dataclass
class TrainResult:
    steps: int                                  # optimizer steps done when the run ended
    losses: dict[int, float]                    # step -> training loss (mean over ranks and micro-steps)
    evals: dict[int, dict[str, float]]          # step -> {"train": loss, "val": loss}
    checkpoint: Path | None
    train_seconds: float
    sample: str | None = None
    stopped_by: int | None = None               # the signal that stopped the run early


class Trainer:
    """One training run: the model, optimizer, data and loop of a TrainConfig on this rank."""

    def __init__(self, cfg: TrainConfig, resume: dict | None = None, log=tqdm.write):
        cfg.validate()
        self.cfg = cfg
        self.env = dist.detect_env()
        self.device = dist.resolve_device(cfg.device, self.env)
        resolve(self.device)   # a backend that cannot run here fails now, with its reason
        self.dtype = dist.resolve_dtype(cfg.dtype, self.device)
        self.precision = dist.autocast(self.device, self.dtype)
        dist.init_process_group(self.env, self.device)
        self.say = say = log if self.env.is_main else (lambda *a, **k: None)   # rank 0 speaks for the job
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.ckpt_path = Path(cfg.out_dir).expanduser() / CHECKPOINT_NAME
        self.metrics = MetricsLog(cfg.metrics_file if self.env.is_main else None)
        if self.env.is_main:
            ensure_writable_folder(self.ckpt_path.parent)
            if resume is None and self.ckpt_path.exists():
                say(f"note: {self.ckpt_path} (an earlier run) will be replaced at the first evaluation; "
                    "--resume continues it instead")

        # data: one process per node tokenizes, the others then read its cache
        if self.env.local_rank == 0:
            self.dataset = prepare_dataset(cfg.data, cfg.tokenizer, cfg.cache_dir, log=say)
        dist.barrier()
        if self.env.local_rank != 0:
            self.dataset = prepare_dataset(cfg.data, cfg.tokenizer, cfg.cache_dir, log=lambda *a: None)
        self.tokenizer = self.dataset.tokenizer
        self.model_config = model_config(cfg, self.tokenizer)
        block = self.model_config.block_size
        rank, world = self.env.rank, self.env.world_size
        self.sampler = BatchSampler(self.dataset.train, cfg.batch_size, block, cfg.seed, "train", rank, world)
        self.eval_samplers = {split: BatchSampler(self.dataset.split(split), cfg.batch_size, block,
                                                  cfg.seed + EVAL_SEED_OFFSET, split, rank, world)
                              for split in ("train", "val")}

        # model and optimizer: the same initialisation on every rank
        self.model, self.optimizer = initial_model_and_optimizer(cfg, self.model_config, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.step, self.best_val_loss, self.last_eval_step = 0, math.inf, None
        torch.manual_seed(cfg.seed + rank)     # each rank its own dropout stream
        if resume is not None:
            self._restore(resume)
        # forward_model evaluates; train_model trains: the same model, wrapped in DDP under torchrun
        # unless the CUDA-graphed step (which averages the gradients itself) runs
        self.forward_model = torch.compile(self.model) if cfg.compile else self.model
        self.train_model = self.forward_model
        self.graphed_step = self._graphed_step()
        if self.env.is_distributed and self.graphed_step is None:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.forward_model, device_ids=device_ids)

    def _graphed_step(self) -> GraphedTrainStep | None:
        """The CUDA-graphed step where cfg.cuda_graph asks for it (None: where the run allows it).
        Under torchrun it averages the gradients over the ranks itself, in place of DDP."""
        cfg = self.cfg
        if cfg.cuda_graph is False:
            if cfg.optimizer_writes_copies:
                raise ConfigError("--optimizer-writes-copies needs the CUDA-graphed step (--cuda-graph is off)")
            return None
        problem = GraphedTrainStep.problem(self.forward_model, self.precision)
        if problem is None and cfg.compile:
            problem = "--compile is on (torch.compile's mode='reduce-overhead' makes its own CUDA graphs)"
        if problem is not None:
            if cfg.cuda_graph:
                raise ConfigError(f"--cuda-graph: cannot capture the training step as a CUDA graph: {problem}")
            if cfg.optimizer_writes_copies:
                raise ConfigError(f"--optimizer-writes-copies needs the CUDA-graphed step, which cannot run: {problem}")
            return None
        dist.broadcast_parameters(self.model)     # as DDP does when it wraps a model
        return GraphedTrainStep(self.forward_model, self.optimizer, cfg.gradient_accumulation_steps,
                                cfg.grad_clip, self.precision, average_over_ranks=self.env.is_distributed,
                                optimizer_writes_copies=optimizer_writes_copies(
                                    cfg, self.optimizer, cfg.gradient_accumulation_steps, self.precision))

    # ---- checkpoints ----

    def _restore(self, state: dict) -> None:
        check_model_config(state, self.model_config, f"checkpoint {str(self.ckpt_path)!r}")
        if state["tokenizer"] != self.tokenizer.to_dict():
            raise CheckpointError(f"checkpoint {str(self.ckpt_path)!r} was trained with another tokenizer or "
                                  "vocabulary than this data gives; resume with the original --data and --tokenizer")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.best_val_loss = state["best_val_loss"]
        self.last_eval_step = state["last_eval_step"]
        self.sampler.load_state_dict(state["sampler"])
        if state["world_size"] == self.env.world_size:
            set_rng_state(state["rng"][self.env.rank], self.device)
        else:
            self.say(f"resuming a {state['world_size']}-rank checkpoint on {self.env.world_size} rank(s): "
                     "training continues, but not with the batches and dropout of the original job")

    def save(self) -> Path:
        """Write the checkpoint (rank 0); every rank must call it, as it gathers their RNG states."""
        rng = dist.all_gather_object(rng_state(self.device))
        if self.env.is_main:
            save_checkpoint({
                "model": unwrap_model(self.model).state_dict(),
                "model_config": dataclasses.asdict(self.model_config),
                "train_config": dataclasses.asdict(self.cfg),
                "optimizer": portable_optimizer_state(self.optimizer),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "best_val_loss": self.best_val_loss,
                "last_eval_step": self.last_eval_step,
                "sampler": self.sampler.state_dict(),
                "rng": rng,
                "tokenizer": self.tokenizer.to_dict(),
                "data": self.dataset.meta,
                "world_size": self.env.world_size,
            }, self.ckpt_path)
        dist.barrier()
        return self.ckpt_path

    # ---- the loop ----

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step of the whole job."""
        cfg = self.cfg
        return cfg.batch_size * self.model_config.block_size * cfg.gradient_accumulation_steps * self.env.world_size

    @property
    def peak(self) -> float | None:
        """One device's peak FLOP/s for MFU: --peak-flops, else a known GPU's bf16 peak."""
        if self.cfg.peak_flops is not None or self.device.type != "cuda":
            return self.cfg.peak_flops
        name = torch.cuda.get_device_name(self.device)
        return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)

    def evaluate(self) -> dict[str, float]:
        t0 = time.perf_counter()
        losses = estimate_loss(self.forward_model, self.eval_samplers, self.cfg.eval_iters, self.device, self.precision)
        self.last_eval_step = self.step
        self.best_val_loss = min(self.best_val_loss, losses["val"])
        self.say(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
                 f"({time.perf_counter() - t0:.1f} s)")
        return losses

    def describe(self) -> None:
        cfg, mc = self.cfg, self.model_config
        n_params = self.model.num_params()
        self.say(f"model {cfg.model}: {mc.n_layer} layers, {mc.n_head} heads, {mc.n_embd} wide, block "
                 f"{mc.block_size}, vocab {mc.vocab_size}, dropout {mc.dropout}: {n_params / 1e6:.2f}M parameters")
        data = self.dataset.meta
        self.say(f"data {data['source']}: {data['train_tokens']:,} train / {data['val_tokens']:,} val "
                 f"{self.tokenizer.name} tokens")
        self.say(f"device {self.device} x {self.env.world_size} rank(s), {str(self.dtype).removeprefix('torch.')}, "
                 f"backend {resolve(self.device)}; global batch {cfg.batch_size} x {mc.block_size} tokens x "
                 f"{cfg.gradient_accumulation_steps} accumulation x {self.env.world_size} rank(s) = "
                 f"{self.tokens_per_step:,} tokens/step; "
                 f"{self.step_kind} training step")

    @property
    def step_kind(self) -> str:
        if self.graphed_step is None:
            return "eager DDP" if self.env.is_distributed else "eager"
        notes = []
        if self.graphed_step.copies is not None:
            notes.append("on bf16 parameter copies written by the AdamW step")
        if self.env.is_distributed:
            notes.append("gradients all-reduced inside the graph")
        return "CUDA-graphed" + (f" ({'; '.join(notes)})" if notes else "")

    def run(self) -> TrainResult:
        cfg = self.cfg
        n_micro = cfg.gradient_accumulation_steps
        start_step = self.step
        losses: dict[int, float] = {}
        evals: dict[int, dict[str, float]] = {}
        pending: list[torch.Tensor] = []        # losses of steps not yet logged (no GPU sync per step)
        timer = StepTimer()
        if start_step >= cfg.max_iters and start_step > 0:
            self.say(f"the checkpoint is at step {start_step} >= max_iters {cfg.max_iters}: raise --max-iters "
                     "to train further")
        bar = tqdm(total=cfg.max_iters, initial=start_step, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.env.is_main))
        stop = GracefulStop(log=self.say)
        with stop, bar:
            while True:
                if (self.step % cfg.eval_interval == 0 or self.step >= cfg.max_iters) \
                        and self.last_eval_step != self.step:
                    evals[self.step] = self.evaluate()
                    if self.step > start_step:
                        self.save()
                    timer.restart()   # evaluations are not training time
                if self.step >= cfg.max_iters:
                    break
                micro_batches = (to_device(next(self.sampler), self.device) for _ in range(n_micro))
                lr = learning_rate_at(self.step, cfg)
                if self.graphed_step is not None:
                    pending.append(self.graphed_step(micro_batches, lr))
                else:
                    pending.append(train_step(self.train_model, self.optimizer, self.scaler, micro_batches,
                                              n_micro, lr, cfg.grad_clip, self.precision))
                self.step += 1
                timer.steps += 1
                bar.update(1)
                at_log = self.step % cfg.log_interval == 0 or self.step == cfg.max_iters
                # ranks agree on stopping at log steps, where they synchronise anyway
                stopping = (at_log and dist.any_rank(stop.signum is not None, self.device)
                            if self.env.is_distributed else stop.signum is not None)
                if at_log or stopping:
                    # one sync per log: the pending losses, averaged over ranks
                    values = dist.all_reduce_mean(torch.stack(pending)).tolist()
                    losses.update(zip(range(self.step - len(values) + 1, self.step + 1), values))
                    pending.clear()
                    self.log_step(values[-1], lr, timer.lap(), bar, print_line=at_log)
                if stopping:
                    self.save()
                    break
                if self.step == start_step + 1 and not at_log:
                    self.report_first_step(timer)
        if not dist.replicas_in_sync(self.model):
            raise RuntimeError("the ranks' model replicas differ: DDP training went out of sync")
        self.summarise(losses, evals, timer.total)
        if stop.signum is not None:
            self.say(f"stopped at step {self.step}; checkpoint {self.ckpt_path}; continue with: fastgpt-train "
                     f"--resume --out-dir {cfg.out_dir}")
        return TrainResult(self.step, losses, evals, self.ckpt_path if self.step > start_step else None,
                           timer.total, stopped_by=stop.signum)

    def report_first_step(self, timer: "StepTimer") -> None:
        """The run's first step compiles and autotunes the kernels (and on a GPU captures the CUDA
        graph): seconds to a minute that would otherwise read as a slow first log interval. Say how
        long it took and leave it out of the next interval's rate (it stays in the training time)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = timer.lap()
        work = "kernel compilation and autotuning" + (", CUDA-graph capture" if self.graphed_step is not None else "")
        self.say(f"first step: {seconds:.1f} s ({work}; not counted in the rates below)")

    def log_step(self, loss: float, lr: float, seconds_per_step: float, bar, print_line: bool) -> None:
        """Loss, learning rate, the job's tokens/s, (on GPUs of known peak) MFU and rank 0's peak
        GPU memory so far; the same as a JSON line in --metrics-file."""
        tokens_per_s = self.tokens_per_step / seconds_per_step
        bar.set_postfix_str(f"loss {loss:.4f}, {tokens_per_s:,.0f} tok/s", refresh=False)
        record = {"step": self.step, "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s,
                  "ms_per_step": 1000 * seconds_per_step}
        line = (f"step {self.step}/{self.cfg.max_iters} | loss {loss:.4f} | lr {lr:.2e} | "
                f"{tokens_per_s:,.0f} tok/s | {1000 * seconds_per_step:.1f} ms/step")
        if self.peak:
            tokens_per_rank = self.tokens_per_step // self.env.world_size
            record["mfu"] = self.model.estimate_mfu(tokens_per_rank, seconds_per_step, self.peak)
            line += f" | mfu {100 * record['mfu']:.1f}%"
        if self.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            line += f" | {record['peak_memory_gib']:.2f} GiB peak"
        self.metrics.write(record)
        if print_line:
            self.say(line)

    def summarise(self, losses: dict[int, float], evals: dict[int, dict[str, float]], train_seconds: float) -> None:
        """The run's summary (every rank must call it: it gathers each rank's peak GPU memory)."""
        on_gpu = self.device.type == "cuda"
        peaks = dist.all_gather_object(torch.cuda.max_memory_allocated(self.device) / 2**30 if on_gpu else None)
        if on_gpu:
            self.say("peak GPU memory per rank: " + ", ".join(f"{p:.2f}" for p in peaks) + " GiB")
        self.metrics.write({
            "summary": True, "steps": self.step, "world_size": self.env.world_size,
            "device": torch.cuda.get_device_name(self.device) if on_gpu else "cpu",
            "backend": resolve(self.device), "step_kind": self.step_kind, "tokens_per_step": self.tokens_per_step,
            "train_seconds": train_seconds, "losses": losses, "evals": evals,
            "peak_memory_gib_per_rank": peaks if on_gpu else None,
            "torch": torch.__version__, "train_config": dataclasses.asdict(self.cfg)})


class MetricsLog:
    """JSON lines, one record each, written through at once (a run cut short keeps its lines);
    a no-op without a path (--metrics-file unset, or not rank 0)."""

    def __init__(self, path: str | None):
        self.path = Path(path).expanduser() if path else None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("")
            except OSError as e:
                raise ConfigError(f"cannot write the metrics file {str(self.path)!r}: {e.strerror or e}") from None

    def write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@dataclasses.dataclass
class StepTimer:
    """Wall time of training steps between logs, evaluations left out."""
    start: float = dataclasses.field(default_factory=time.perf_counter)
    steps: int = 0
    total: float = 0.0

    def restart(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def lap(self) -> float:
        """Seconds per step since the last restart (counted into total); restarts."""
        elapsed = time.perf_counter() - self.start
        self.total += elapsed
        per_step = elapsed / max(1, self.steps)
        self.restart()
        return per_step


def train(cfg: TrainConfig, resume: dict | None = None, log=tqdm.write) -> TrainResult:
    """Train per `cfg` (continuing checkpoint `resume` if given); print a sample at the end."""
    with use_backend(cfg.backend):
        trainer = Trainer(cfg, resume, log)
        trainer.describe()
        result = trainer.run()
        if result.stopped_by is None and cfg.sample_tokens and trainer.env.is_main:
            result.sample = generate_text(unwrap_model(trainer.model), trainer.tokenizer, "\n", cfg.sample_tokens,
                                          seed=cfg.seed, dtype=trainer.dtype)[0]
    return result


# ---- the command line ----

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgpt-train", description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS,
        epilog=f"presets: {', '.join(TRAIN_PRESETS)}. Flags win over --config, which wins over the preset.")
    parser.add_argument("--preset", metavar="{" + ",".join(TRAIN_PRESETS) + "}",
                        help="named TrainConfig (default: shakespeare-char with a GPU, cpu-char without)")
    parser.add_argument("--config", metavar="FILE", help="TOML or YAML file of settings (same names as the flags)")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out-dir")
    add_dataclass_arguments(parser, TrainConfig)
    return parser


def resolve_config(args: dict) -> tuple[TrainConfig, dict | None]:
    """The run's TrainConfig (preset or checkpoint, then config file, then flags) and the
    checkpoint to resume, if --resume."""
    args = dict(args)
    resume = args.pop("resume", False)
    file_values = load_config_file(args.pop("config")) if "config" in args else {}
    preset = args.pop("preset", None) or file_values.pop("preset", None)
    overrides = {**dataclass_values(TrainConfig, file_values, "config file"), **args}
    state = None
    if resume:
        out_dir = overrides.get("out_dir", TrainConfig.out_dir)
        state = load_checkpoint(Path(out_dir).expanduser() / CHECKPOINT_NAME)
    if preset is not None:
        base = train_preset(convert(preset, str, False, "preset"))
    elif state is not None:   # the interrupted run's own settings
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in state["train_config"].items() if k in known})
    else:
        base = train_preset(default_preset(overrides.get("device", "auto")))
    cfg = dataclasses.replace(base, **overrides)
    if cfg.data is not None:   # the checkpoint's copy must find the data from any folder
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).expanduser().resolve()))
    return cfg, state


def _main(argv: Sequence[str] | None) -> int:
    started = time.perf_counter()
    cfg, state = resolve_config(vars(build_parser().parse_args(argv)))
    result = train(cfg, state)
    if result.stopped_by is not None:
        return 128 + result.stopped_by
    if dist.detect_env().is_main:
        if result.evals:
            final = result.evals[max(result.evals)]
            print(f"final: step {result.steps}, train loss {final['train']:.4f}, val loss {final['val']:.4f}; "
                  f"{result.train_seconds:.1f} s training")
        if result.checkpoint:
            print(f"checkpoint: {result.checkpoint}")
        if result.sample is not None:
            print("sample:\n" + result.sample)
        print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


USER_ERRORS = (ConfigError, DataError, CheckpointError, DeviceError, BackendError, TokenizerError)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("fastgpt-train", _main, argv, USER_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
