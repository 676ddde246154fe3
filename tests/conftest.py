"""Test set-up: without a GPU, Triton kernels run in the interpreter on CPU tensors; on a GPU each
autotuned kernel runs one pinned tile (FASTGPT_AUTOTUNE=0, unless set otherwise).

TRITON_INTERPRET must be set before triton is imported, and FASTGPT_AUTOTUNE before a kernel
family is imported, so both are set here, first. The tests check results, which do not depend on
the tile; autotuning every test shape (every rank of a torchrun test too: subprocesses inherit
the environment) costs minutes on a GPU.
"""
import os
from pathlib import Path

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("FASTGPT_AUTOTUNE", "0")

import pytest  # noqa: E402


@pytest.fixture
def device() -> torch.device:
    return torch.device("cuda" if HAS_CUDA else "cpu")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_tf32():
    """fastgpt-train turns TF32 on for the process (fastgpt/train.py, as nanoGPT): a test that builds
    a Trainer on a GPU must not leave fp32 matmuls at TF32 precision for the tests after it in the
    same worker (a 1e-4 fp32 comparison then sees TF32's ~5e-4)."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The first 20,000 characters of the shipped Tiny Shakespeare, as a text file."""
    shipped = Path(__file__).resolve().parents[1] / "fastgpt" / "data" / "tinyshakespeare.txt"
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(shipped.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return path
