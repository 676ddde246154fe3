"""Where this process runs: its place in a torchrun job, its device and its precision.

torchrun (single- or multi-node) tells each worker RANK, LOCAL_RANK and WORLD_SIZE in the
environment; without them the process is the whole job (rank 0 of 1). A job of more than one
rank joins a process group: NCCL when its device is a GPU, gloo on CPUs. Each rank owns one
device, cuda:LOCAL_RANK. The helpers below are no-ops in a single process, so the training
loop reads the same either way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch
import torch.distributed as dist

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(ValueError):
    """A device or precision was asked for that this machine or this torch cannot give."""


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates for the record and writes checkpoints."""
        return self.rank == 0


def detect_env(environ=os.environ) -> DistEnv:
    """The torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE), or a single process without it."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return DistEnv()
    try:
        env = DistEnv(rank=int(environ["RANK"]), local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])),
                      world_size=int(environ["WORLD_SIZE"]))
    except ValueError:
        raise DeviceError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them)") from None
    if not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise DeviceError(f"RANK={env.rank} does not fit WORLD_SIZE={env.world_size}")
    return env


def resolve_device(name: str, env: DistEnv = DistEnv()) -> torch.device:
    """"auto" -> a GPU when torch sees one, else the CPU. Under torchrun a GPU rank takes
    cuda:LOCAL_RANK whatever index was asked for."""
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(f"device {name!r} asked for a GPU, but torch ({torch.__version__}, {build}) "
                              "sees none; use --device cpu")
        index = env.local_rank if env.is_distributed else (device.index or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"cuda:{index} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", index)
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast precision: "auto" is bfloat16 on GPUs that have it, float32 otherwise."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for the forward pass; float32 runs as is."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def init_process_group(env: DistEnv, device: torch.device) -> None:
    """Join the job's process group (NCCL for GPUs, gloo for CPUs); nothing in a single process."""
    if not env.is_distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Every rank takes rank `src`'s parameters and buffers (what DDP does when it wraps a
    model), for ranks that all-reduce their gradients without DDP."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=src)


def contiguous_span(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """The one flat tensor that `tensors` tile exactly (views of consecutive slices of one
    storage, each contiguous, no gaps), or None when they are not laid out so."""
    first = tensors[0]
    storage = first.untyped_storage().data_ptr()
    if any(t.untyped_storage().data_ptr() != storage or t.dtype != first.dtype or not t.is_contiguous()
           for t in tensors):
        return None
    end = 0
    for t in sorted(tensors, key=torch.Tensor.storage_offset):
        if t.storage_offset() != end:
            return None
        end += t.numel()
    return first.new_empty(0).set_(first.untyped_storage(), 0, (end,))


def all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Average the parameters' gradients over all ranks, in place: DDP's arithmetic without DDP.

    One collective for all of them: when the gradients are slices of one buffer (as
    fastgpt.ops.autocast.cast_once_forward makes them) the buffer itself is reduced, with no
    copies; otherwise they are flattened into one buffer and copied back. Every rank must call
    it with the same parameters in the same order."""
    if not _active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if len(grads) != len(params):
        raise RuntimeError(f"{len(params) - len(grads)} of {len(params)} parameters have no gradient; every "
                           "rank must all-reduce the same gradients")
    flat = contiguous_span(grads)
    copied = flat is None
    if copied:
        flat = torch._utils._flatten_dense_tensors(grads)
    _average_(flat)
    if copied:
        torch._foreach_copy_(grads, list(torch._utils._unflatten_dense_tensors(flat, grads)))


def average_in_fp32(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean over all ranks of `grads` (any float dtype, e.g. the bf16 gradients of
    fastgpt.ops.autocast.ParameterCopies), as fp32 views of one new buffer shaped as them.

    The gradients are cast into the buffer by one multi-tensor copy and the buffer is averaged by
    one collective, in fp32 as all_reduce_gradients averages the fp32 gradients of the cast step
    (a bf16 collective would round every partial sum to bf16). Without several ranks: the
    gradients themselves."""
    if not _active():
        return grads
    flat = torch.empty(sum(g.numel() for g in grads), dtype=torch.float32, device=grads[0].device)
    views = [piece.view(g.shape) for piece, g in zip(flat.split([g.numel() for g in grads]), grads)]
    torch._foreach_copy_(views, grads)
    _average_(flat)
    return views


def _average_(flat: torch.Tensor) -> None:
    """flat <- its mean over all ranks, in place. NCCL averages inside the collective
    (ReduceOp.AVG); gloo sums, then the sum is divided by the world size."""
    if dist.get_backend() == dist.Backend.NCCL:
        dist.all_reduce(flat, op=dist.ReduceOp.AVG)
    else:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over all ranks (in place), e.g. losses for the record."""
    if _active():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (all ranks must call it together)."""
    if not _active():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not _active():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def replicas_in_sync(model: torch.nn.Module) -> bool:
    """True when every rank holds the same parameters (DDP keeps them bitwise equal; a rank
    that resumed with the wrong optimizer state or RNG would drift)."""
    if not _active():
        return True
    with torch.no_grad():
        fingerprint = torch.stack([p.double().sum() for p in model.parameters()]).cpu()
    gathered = all_gather_object(fingerprint)
    return all(torch.equal(fingerprint, other) for other in gathered)
