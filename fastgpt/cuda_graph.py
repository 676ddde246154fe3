"""A whole training step (forward, backward, gradient clipping, AdamW) captured as one CUDA graph
and replayed.

Why. Eagerly, every op of a step costs host time: Python, the autograd engine, the dispatcher,
Triton's launcher. On the H100 that was measured at 0.5-1.4 ms per fused op's forward+backward
(benchmarks/host_profile.py), so the eager GPT-2 step is host-bound (the GPU idles between
kernels) and a 10M-parameter model trains at under 5% MFU. A CUDA graph records the step's
kernels once and replays them with one launch: the step then costs what its kernels cost.

How (PyTorch's whole-network capture recipe, torch.cuda.graphs):
- the first `warmup_steps` steps run eagerly on a side stream: they are real training steps,
  and they also autotune the Triton kernels, create cuBLAS handles and the optimizer state;
- the next step is captured: micro-batches are read from static input buffers (each step's
  batches are copied into them first), gradients are set to None before the capture so the
  backward allocates them in the graph's memory pool and each replay overwrites them, and the
  learning rate is a device tensor (AdamW capturable=True) so the schedule goes on changing it;
- every later step copies its batches in, sets the learning rate and replays the graph; the
  step's loss is a static output, cloned so that the caller may keep it.
Before the graph is instantiated, its small memset nodes (cuBLAS zeroes a word before most GEMMs)
become one-block kernel nodes (fastgpt.graph_memsets): a memset node leaves the GPU idle around it
(run 122: 0.42 ms of a GPT-2 step's 0.60 ms of gaps).

Several GPUs (torchrun): each rank captures its own step, and the step averages the gradients
over the ranks itself (`average_over_ranks`): one NCCL all-reduce of the buffer that holds all
gradients, after the last backward, inside the graph. A model wrapped in DDP is not captured:
PyTorch documents a recipe for capturing DDP (built on a side stream, 11 eager warm-up steps,
NCCL's async error handling off); doing without DDP has fewer preconditions and the same
arithmetic, at the price of DDP's overlap of its bucketed all-reduces with the backward. The
all-reduce of GPT-2's 124M fp32 gradients moves ~0.5 GB: ~1.5 ms at the ~330 GB/s bus bandwidth
of two NVLinked H100s, beside a ~31 ms step (benchmarks/scaling.py measures the whole).

optimizer_writes_copies=True (fastgpt-train's default where it applies; timed in
benchmarks/results/runs/run34-train_step, the `*-adamwcopy-*` rows): the model runs on
persistent bf16 copies of its parameters (fastgpt.ops.autocast.ParameterCopies), and the AdamW
step reads their bf16 gradients and writes them (fastgpt.ops.adamw), clipping folded in as a
gradient scale: no parameter cast, no gradient cast, no clipping pass. On several GPUs the
copies' bf16 gradients are cast into one fp32 buffer, which one all-reduce averages, and the step
reads that (fastgpt.distributed.average_in_fp32). No gradient accumulation (it would sum the
copies' gradients in bf16), bf16 autocast, torch.optim.AdamW (copies_problem says which is missing).
There each copy's gradient is its leaf's first and uncast, so the backward's column sums (bias and
LayerNorm gradients, kernels/common.sum_partials: 49 launches in a GPT-2 step) are deferred and
run in one launch after it (kernels/common.DeferredColumnSums; FASTGPT_DEFER_SUMS=0: in place).

Limits (GraphedTrainStep.problem says which one applies): a CUDA device, no DDP wrapper (see
above), fixed batch shape, no fp16 loss scaling (GradScaler synchronises with the host),
not combined with torch.compile (use its mode="reduce-overhead" instead). A step that turns out
not to be capturable (an op in it synchronises with the host) warns once and trains eagerly.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from typing import Callable, Iterable, Sequence

import torch

from fastgpt import graph_memsets
from fastgpt.distributed import all_reduce_gradients, average_in_fp32
from fastgpt.ops.adamw import step_with_copies
from fastgpt.ops.autocast import ParameterCopies, cast_once_forward
from fastgpt.ops.dispatch import deferred_column_sums, replayed_steps


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() as an eager run has it: the learning rate a float, capturable off.
    GraphedTrainStep turns both for its capture; a checkpoint saved so resumes anywhere (on a CPU
    too, where capturable AdamW refuses to run), and a graphed resume turns them back."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:       # state_dict() copies the groups: the live ones stay
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = group["lr"].item()
            group["capturable"] = False
    return state


def _forward_on_copies(copies: ParameterCopies, model: torch.nn.Module, *args):
    """GraphedTrainStep's forward on the parameter copies (`model` is the copies' own)."""
    return copies.forward(*args)


def _release_generator(device: torch.device) -> None:
    """Undo what a failed capture leaves in the device's random number generator.

    A capture registers the default CUDA generator and ends it in capture_end, after
    cudaStreamEndCapture; when that call fails (the capture was invalidated, e.g. by a host
    sync) the generator is never told, and every later random op on the device (dropout,
    torch.randn, sampling) raises "Offset increment outside graph capture encountered
    unexpectedly". A copy of its state (same seed and offset, not capturing) replaces it."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    generator = torch.cuda.default_generators[index]
    generator.graphsafe_set_state(generator.clone_state())


def _rewrite_memsets(graph: torch.cuda.CUDAGraph, device: torch.device) -> int:
    """fastgpt.graph_memsets.rewrite on a graph kept uninstantiated; how many memsets it replaced.
    Should the driver refuse an edit, the graph is replayed as it stands (each replacement adds the
    kernel and its edges before removing the memset, so in every state of the graph each word is
    zeroed before the GEMM that reads it) and a warning says why."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        if not graph_memsets.hoisting():
            return graph_memsets.rewrite(graph.raw_cuda_graph(), index)
        return graph_memsets.rewrite(graph.raw_cuda_graph(), index, graph_memsets.fastgpt_kernel_names(),
                                     graph_memsets.reusable_ranges(index))
    except (OSError, RuntimeError, AttributeError) as err:
        warnings.warn(f"the captured step keeps its memset nodes ({err})", RuntimeWarning, stacklevel=3)
        return 0


class GraphedTrainStep:
    """Callable: step(micro_batches, lr) -> mean loss of the step (a 0-dim CUDA tensor).

    `micro_batches` yields n_micro (inputs, targets) pairs of one shape on the model's device.
    The same object must serve every step of a run (it holds the graph and its buffers).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, n_micro: int,
                 grad_clip: float, precision: contextlib.AbstractContextManager, warmup_steps: int = 2,
                 cast_parameters_once: bool = True, average_over_ranks: bool = False,
                 optimizer_writes_copies: bool = False):
        problem = self.problem(model, precision)
        if problem is not None:
            raise ValueError(f"cannot capture the training step as a CUDA graph: {problem}")
        if optimizer_writes_copies:
            problem = self.copies_problem(optimizer, n_micro, precision)
            if problem is not None:
                raise ValueError(f"optimizer_writes_copies: {problem}")
        self.model, self.optimizer, self.n_micro = model, optimizer, n_micro
        self.grad_clip, self.precision = grad_clip, precision
        self.warmup_steps = warmup_steps
        self.average_over_ranks = average_over_ranks   # all-reduce the gradients (torchrun, no DDP)
        # fastgpt.ops.autocast.cast_once_forward (one cast kernel for all parameters), or a plain
        # model call (benchmarks capture the reference as a user would run it)
        self.forward = cast_once_forward if cast_parameters_once else (lambda m, *args: m(*args))
        # optimizer_writes_copies: the model runs on persistent bf16 copies that the AdamW step
        # writes (fastgpt.ops.adamw), so neither the parameters nor the gradients are cast
        self.copies = ParameterCopies(model, precision.fast_dtype) if optimizer_writes_copies else None
        if self.copies is not None:
            # bound to the copies, not to self: a closure over self would be a reference cycle that
            # keeps this step and its graph alive after its last user lets go, until the garbage
            # collector runs; under torchrun that was after the process group was destroyed, and
            # the processes hung at exit (run 39)
            self.forward = functools.partial(_forward_on_copies, self.copies)
        # the backward's column sums in one launch after it (the module's header); one object for
        # every step: the captured step replays the table its flush copied in
        self.column_sums = None
        if self.copies is not None and os.environ.get("FASTGPT_DEFER_SUMS", "1") not in ("0", ""):
            from fastgpt.kernels.common import DeferredColumnSums     # imports triton
            self.column_sums = DeferredColumnSums()
        self.params = [p for p in model.parameters() if p.requires_grad]
        device = self.params[0].device
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        for group in optimizer.param_groups:     # the schedule writes self.lr; the graph reads it
            group["lr"] = self.lr
            group["capturable"] = True
        self.inputs: torch.Tensor | None = None   # (n_micro, B, T) static buffers, made on first use
        self.targets: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None     # the graph's output
        self.capture_error: str | None = None     # why the capture failed (then steps stay eager)
        self.memsets_rewritten = 0                # memset nodes made kernel nodes (fastgpt.graph_memsets)
        self.steps = 0

    @staticmethod
    def copies_problem(optimizer, n_micro: int, precision) -> str | None:
        """Why the optimizer cannot write the parameter copies in this step, or None."""
        if not isinstance(optimizer, torch.optim.AdamW):
            return f"needs a torch.optim.AdamW, got {type(optimizer).__name__}"
        if not (isinstance(precision, torch.autocast) and precision.fast_dtype == torch.bfloat16):
            return "needs bfloat16 autocast (the copies are in its dtype)"
        if n_micro != 1:
            return "gradient accumulation would sum the copies' gradients in bfloat16"
        return None

    @staticmethod
    def problem(model: torch.nn.Module, precision) -> str | None:
        """Why this model cannot be captured, or None."""
        params = [p for p in model.parameters() if p.requires_grad]
        if not params or params[0].device.type != "cuda":
            return "the model is not on a CUDA device"
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return ("a model wrapped in DistributedDataParallel is not captured; pass the plain model "
                    "with average_over_ranks=True")
        if isinstance(precision, torch.autocast) and precision.fast_dtype == torch.float16:
            return "float16 needs loss scaling, which synchronises with the host every step; use bfloat16"
        return None

    def __call__(self, micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], lr: float) -> torch.Tensor:
        self._load(list(micro_batches))
        self.lr.fill_(lr)
        if self.graph is None and self.steps >= self.warmup_steps and self.capture_error is None:
            with replayed_steps():
                self._capture()
        self.steps += 1
        if self.graph is None:
            # the warm-up steps run the kernels the capture will record, so that those are compiled
            # and loaded before it; after a failed capture, plain eager steps
            with replayed_steps() if self.capture_error is None else contextlib.nullcontext():
                loss = self._on_side_stream(self._eager_step)
        else:
            self.graph.replay()
            loss = self.loss
        return loss.clone()

    # ---- internals ----

    def _load(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if len(batches) != self.n_micro:
            raise ValueError(f"expected {self.n_micro} micro-batches, got {len(batches)}")
        x0 = batches[0][0]
        if self.inputs is None:
            self.inputs = x0.new_empty((self.n_micro, *x0.shape))
            self.targets = torch.empty_like(self.inputs)
        if tuple(x0.shape) != tuple(self.inputs.shape[1:]):
            raise ValueError(f"a CUDA-graphed step keeps its batch shape {tuple(self.inputs.shape[1:])}; "
                             f"got {tuple(x0.shape)}")
        for i, (x, y) in enumerate(batches):
            self.inputs[i].copy_(x, non_blocking=True)
            self.targets[i].copy_(y, non_blocking=True)

    def _forward_backward(self) -> torch.Tensor:
        """The captured work: every micro-step, clipping and the optimizer step; the mean loss."""
        total = torch.zeros((), dtype=torch.float32, device=self.lr.device)
        if self.column_sums is not None:
            self.column_sums.discard()      # whatever a failed capture recorded
        with deferred_column_sums(self.column_sums):
            for i in range(self.n_micro):
                with self.precision:
                    _, loss = self.forward(self.model, self.inputs[i], self.targets[i])
                (loss / self.n_micro).backward()
                total += loss.detach().float()
        if self.column_sums is not None:
            self.column_sums.flush(self.copies.grads())
        if self.copies is not None:
            # several GPUs: the copies' bf16 gradients averaged over the ranks in fp32
            grads = average_in_fp32(self.copies.grads()) if self.average_over_ranks else None
            step_with_copies(self.optimizer, self.copies, self.grad_clip, grads)
            return total / self.n_micro
        if self.average_over_ranks:
            all_reduce_gradients(self.params)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.optimizer.step()
        return total / self.n_micro

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.copies is not None:
            self.copies.zero_grad()

    def _eager_step(self) -> torch.Tensor:
        self._zero_grad()
        loss = self._forward_backward()
        self._zero_grad()
        return loss

    @staticmethod
    def _on_side_stream(fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(stream)
        return out

    def _capture(self) -> None:
        """Record the step; if something in it cannot be captured, say so once and stay eager
        (nothing ran during the capture, so the model and optimizer are as they were)."""
        self._zero_grad()                 # the backward allocates the gradients in the graph's pool
        edit = graph_memsets.enabled() and graph_memsets.supported()
        graph = torch.cuda.CUDAGraph(keep_graph=True) if edit else torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss = self._forward_backward()
        except Exception as e:  # noqa: BLE001 - reported; training goes on eagerly
            self.capture_error = f"{type(e).__name__}: {e}"
            _release_generator(self.lr.device)
            self._zero_grad()
            warnings.warn(f"could not capture the training step as a CUDA graph ({self.capture_error}); "
                          "training continues without it", RuntimeWarning, stacklevel=3)
            return
        if edit:    # cuBLAS's small memsets as kernel nodes, then the instantiation capture_end left
            self.memsets_rewritten = _rewrite_memsets(graph, self.lr.device)
            graph.instantiate()
        self.graph, self.loss = graph, loss
