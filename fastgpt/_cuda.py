"""Loader for the optional compiled extension `fastgpt._C` (sources in csrc/, see issue 6).

`load()` returns an object whose attributes are the extension's ops, or None when it cannot be
had here. The ops (all tensors contiguous CUDA tensors of one dtype: float32, float16, bfloat16):

  add_layernorm_fwd(x, residual, weight, bias, eps) -> (y, s, mean, rstd)
      x, residual (N, C) (residual may be None); weight (C,); bias (C,) or None; 1 <= C <= 16384.
      s = x + residual (a new tensor; a copy of x when residual is None), y = LayerNorm(s) *
      weight + bias, both in x's dtype; mean, rstd (N,) float32.
  add_layernorm_bwd(dy, ds, s, weight, mean, rstd, has_bias) -> (dx, dweight, dbias)
      ds (N, C) or None is an extra gradient flowing into s; dx is the total gradient of s;
      dweight, dbias in weight's dtype (dbias None unless has_bias), fp32 accumulation,
      deterministic (no atomics: bit-identical across runs on one GPU).
  bias_gelu_fwd(a, bias) -> h                   h = gelu_tanh(a + bias), a (N, M), bias (M,)
  bias_gelu_bwd(dh, a, bias) -> (da, dbias)     da = dh * gelu_tanh'(a + bias), dbias = da.sum(0)
                                                (fp32, deterministic) in bias's dtype

They are thin wrappers over the torch.library ops torch.ops.fastgpt_cuda.* (registered by
csrc/fastgpt/ops.cpp; fake implementations below, so torch.compile can trace them). Each wrapper
checks its arguments in Python first (device, dtype, shape, contiguity; InputError, a ValueError
that is also a RuntimeError like torch's own checks) so bad input never reaches C++; ops.cpp
repeats the checks as TORCH_CHECKs for callers of torch.ops.fastgpt_cuda.* directly.

Where the extension comes from, first that works:
  1. the prebuilt module fastgpt._C (`pip install --no-build-isolation -e .` on a machine with
     nvcc and a CUDA-enabled torch builds it);
  2. a JIT build with torch.utils.cpp_extension.load (ninja), cached in a build directory
     (FASTGPT_CUDA_BUILD_DIR, else $TORCH_EXTENSIONS_DIR/fastgpt_<tag>, else
     ~/.cache/fastgpt/torch_extensions/<tag>) so later runs only load it. `load()` builds on
     first use when a GPU, nvcc and the csrc/ sources are present (FASTGPT_BUILD_CUDA=0 turns
     this off); `load(build=False)` never builds; `load(build=True)` builds and raises on a
     compile error.
Importing this module never raises and never builds.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import threading
import types
import warnings
from pathlib import Path

import torch

BUILD_HINT = ("Build it on a machine with nvcc and a CUDA-enabled torch: "
              "FASTGPT_BUILD_CUDA=1 pip install --no-build-isolation -e . "
              "(or JIT-build it into a cache: python -c 'import fastgpt._cuda as c; c.load(build=True)').")

NAMESPACE = "fastgpt_cuda"
# The schemas ops.cpp registers (tests/test_cuda_ext.py checks the two agree).
SCHEMAS = {
    "add_layernorm_fwd": "add_layernorm_fwd(Tensor x, Tensor? residual, Tensor weight, Tensor? bias, float eps)"
                         " -> (Tensor, Tensor, Tensor, Tensor)",
    "add_layernorm_bwd": "add_layernorm_bwd(Tensor dy, Tensor? ds, Tensor s, Tensor weight, Tensor mean,"
                         " Tensor rstd, bool has_bias) -> (Tensor, Tensor, Tensor)",
    "bias_gelu_fwd": "bias_gelu_fwd(Tensor a, Tensor bias) -> Tensor",
    "bias_gelu_bwd": "bias_gelu_bwd(Tensor dh, Tensor a, Tensor bias) -> (Tensor, Tensor)",
    "linear_bias_gelu": "linear_bias_gelu(Tensor x, Tensor weight, Tensor bias) -> (Tensor, Tensor)",
    "matmul_gelu_grad_bias_grad": "matmul_gelu_grad_bias_grad(Tensor dy, Tensor weight, Tensor pre)"
                                  " -> (Tensor, Tensor)",
    "matmul_gelu_grad": "matmul_gelu_grad(Tensor dy, Tensor weight, Tensor pre) -> Tensor",
    "weight_grad_bias_grad": "weight_grad_bias_grad(Tensor dy, Tensor x) -> (Tensor, Tensor)",
}

CSRC = Path(__file__).resolve().parent.parent / "csrc"
# Paths relative to csrc/; setup.py, the JIT build and CMakeLists.txt compile the same files.
SOURCES = ("fastgpt/ops.cpp", "fastgpt/module.cpp", "fastgpt/layernorm.cu", "fastgpt/mlp.cu")
CXX_FLAGS = ["-O3"]
NVCC_FLAGS = ["-O3", "--use_fast_math", "-lineinfo"]
# Hopper (the target) and Ampere; used when TORCH_CUDA_ARCH_LIST is not set.
DEFAULT_ARCH_LIST = "8.0;9.0"


def cublaslt_installs(cuda_home: str | None) -> list[tuple[Path | None, Path]]:
    """(include folder or None when it has no cublasLt.h, library) of each cuBLASLt found: the
    nvidia-cublas wheels torch's CUDA builds depend on first, then the CUDA toolkit's. Used by the
    build below and by kernels/gemm.py, which loads the library."""
    installs = []
    spec = importlib.util.find_spec("nvidia")
    roots = [Path(root) for root in (spec.submodule_search_locations or [])] if spec is not None else []
    dirs = [(package / "include", package / "lib") for root in roots for package in sorted(root.glob("*"))]
    if cuda_home is not None:
        dirs.append((Path(cuda_home) / "include", Path(cuda_home) / "lib64"))
    for include, lib in dirs:
        libs = sorted(lib.glob("libcublasLt.so*"))
        if libs:
            installs.append((include if (include / "cublasLt.h").is_file() else None, libs[0]))
    return installs


def cublaslt_build_flags(cuda_home: str | None) -> tuple[list[str], list[str]]:
    """(include folders, linker flags) for the cuBLASLt half of csrc/fastgpt/mlp.cu: the first of
    cublaslt_installs with its header (the wheel's: the header and library torch runs with, else
    the CUDA toolkit's); ([], []) when none has cublasLt.h, and mlp.cu then builds without those
    GEMMs (fastgpt._C.gemm_epilogues is False)."""
    candidates = [(include, library) for include, library in cublaslt_installs(cuda_home) if include is not None]
    if not candidates:
        return [], []
    include, library = candidates[0]
    return [str(include)], [f"-L{library.parent}", f"-l:{library.name}", f"-Wl,-rpath,{library.parent}"]

class _LoaderState:
    """What this process learned about the extension: loaded once, a JIT build tried once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops: types.SimpleNamespace | None = None
        self.jit_failed = False
        self.last_error: str | None = None
        self.faked: set[str] = set()   # namespaces whose fake implementations are registered


_state = _LoaderState()


def last_error() -> str | None:
    """Why the last `load()` returned None (or what the failed build said), if it did."""
    return _state.last_error


def build_directory() -> Path:
    """Where the JIT build keeps its objects, keyed by Python, torch and CUDA versions."""
    if os.environ.get("FASTGPT_CUDA_BUILD_DIR"):
        return Path(os.environ["FASTGPT_CUDA_BUILD_DIR"])
    tag = (f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}"
           f"_cu{torch.version.cuda}").replace("+", "_")
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]) / f"fastgpt_{tag}"
    return Path.home() / ".cache" / "fastgpt" / "torch_extensions" / tag


def jit_problem() -> str | None:
    """Why a JIT build cannot run here, or None when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    missing = [s for s in SOURCES if not (CSRC / s).is_file()]
    if missing:
        return f"the CUDA sources are not installed (missing {CSRC / missing[0]}; use an editable install)"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None or shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    return None


def load(build: bool | None = None) -> types.SimpleNamespace | None:
    """The extension's ops, or None when they cannot be had (see the module docstring).

    build=None builds (JIT, once per process) when the prebuilt module is missing and a GPU and
    nvcc are present; build=False only imports; build=True builds and raises on compile errors.
    """
    if _state.ops is not None:
        return _state.ops
    with _state.lock:
        if _state.ops is not None:
            return _state.ops
        module = _import_prebuilt()
        if module is None and build is not False:
            module = _jit_build(raise_errors=build is True)
        if module is None:
            return None
        _register_fakes(NAMESPACE)
        _state.ops = types.SimpleNamespace(
            add_layernorm_fwd=add_layernorm_fwd, add_layernorm_bwd=add_layernorm_bwd,
            bias_gelu_fwd=bias_gelu_fwd, bias_gelu_bwd=bias_gelu_bwd,
            linear_bias_gelu=linear_bias_gelu, matmul_gelu_grad_bias_grad=matmul_gelu_grad_bias_grad,
            matmul_gelu_grad=matmul_gelu_grad, weight_grad_bias_grad=weight_grad_bias_grad,
            gemm_epilogues=bool(getattr(module, "gemm_epilogues", False)), module=module)
        _state.last_error = None
        return _state.ops


def _import_prebuilt():
    if importlib.util.find_spec("fastgpt._C") is None:
        _state.last_error = "fastgpt._C is not built"
        return None
    try:
        return importlib.import_module("fastgpt._C")
    except ImportError as e:  # built against another torch, or a CUDA library is missing
        _state.last_error = f"fastgpt._C is present but does not import ({e}); rebuild it"
        return None


def _jit_build(raise_errors: bool):
    if not raise_errors and (_state.jit_failed or os.environ.get("FASTGPT_BUILD_CUDA") == "0"):
        return None
    problem = jit_problem()
    if problem is not None:
        _state.last_error = f"cannot JIT-build the CUDA extension: {problem}"
        return None
    from torch.utils import cpp_extension

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    cublaslt_includes, cublaslt_ldflags = cublaslt_build_flags(cpp_extension.CUDA_HOME)
    print(f"fastgpt: JIT-building the CUDA extension in {directory} (compiles only the first time)",
          file=sys.stderr)
    try:
        return cpp_extension.load(
            name="fastgpt_C_jit", sources=[str(CSRC / s) for s in SOURCES],
            extra_include_paths=[str(CSRC), *cublaslt_includes], extra_cflags=CXX_FLAGS,
            extra_cuda_cflags=NVCC_FLAGS, extra_ldflags=cublaslt_ldflags,
            build_directory=str(directory), is_python_module=True, verbose=False)
    except Exception as e:  # compiler errors come as RuntimeError with the ninja log
        _state.jit_failed = True
        _state.last_error = f"the JIT build of the CUDA extension failed: {e}"
        if raise_errors:
            raise
        warnings.warn(_state.last_error + "\n" + BUILD_HINT, RuntimeWarning, stacklevel=3)
        return None


# ---- argument checks (the same as ops.cpp's, in Python: bad input never reaches C++) ----

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_CHANNELS = 16384       # kMaxChannels in csrc/fastgpt/kernels.h (tests check the two agree)
_INT32_MAX = 2**31 - 1


class InputError(ValueError, RuntimeError):
    """Bad input to an extension op: a ValueError, and a RuntimeError like torch's own checks."""


def _check_input(op: str, name: str, t) -> None:
    """`t` is the (rows, features) input an op starts from: a contiguous 2-D CUDA tensor."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if not t.is_cuda:
        raise InputError(f"{op}: {name} must be a CUDA tensor, got one on {t.device}")
    if t.dtype not in DTYPES:
        raise InputError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if t.dim() != 2:
        raise InputError(f"{op}: {name} must be 2-D (rows, features), got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise InputError(f"{op}: {name} must be contiguous (call .contiguous() first)")


def _check_tensor(op: str, name: str, t, like: torch.Tensor, dtype: torch.dtype, shape: tuple) -> None:
    """`t` is a contiguous CUDA tensor on `like`'s device with the given dtype and shape."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if not t.is_cuda:
        raise InputError(f"{op}: {name} must be a CUDA tensor, got one on {t.device}")
    if t.device != like.device:
        raise InputError(f"{op}: {name} is on {t.device} but the input is on {like.device}; "
                         "put all tensors on one device")
    if t.dtype != dtype:
        raise InputError(f"{op}: {name} must have dtype {dtype}, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise InputError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise InputError(f"{op}: {name} must be contiguous (call .contiguous() first)")


def _check_channels(op: str, C: int) -> None:
    if not 1 <= C <= MAX_CHANNELS:
        raise InputError(f"{op}: the normalised dimension must be in [1, {MAX_CHANNELS}], got {C}")


def _check_columns(op: str, name: str, M: int) -> None:
    if not 1 <= M <= _INT32_MAX:
        raise InputError(f"{op}: {name} must have between 1 and 2**31 - 1 columns, got {M}")


# ---- the ops, as the rest of fastgpt calls them (valid once load() returned non-None) ----

def add_layernorm_fwd(x, residual, weight, bias, eps):
    op = "fastgpt_cuda::add_layernorm_fwd"
    _check_input(op, "x", x)
    C = x.shape[1]
    _check_channels(op, C)
    if not eps >= 0.0:
        raise InputError(f"{op}: eps must be >= 0, got {eps}")
    if residual is not None:
        _check_tensor(op, "residual", residual, x, x.dtype, x.shape)
    _check_tensor(op, "weight", weight, x, x.dtype, (C,))
    if bias is not None:
        _check_tensor(op, "bias", bias, x, x.dtype, (C,))
    y, s, mean, rstd = torch.ops.fastgpt_cuda.add_layernorm_fwd.default(x, residual, weight, bias, float(eps))
    return y, s, mean, rstd


def add_layernorm_bwd(dy, ds, s, weight, mean, rstd, has_bias):
    op = "fastgpt_cuda::add_layernorm_bwd"
    _check_input(op, "dy", dy)
    N, C = dy.shape
    _check_channels(op, C)
    if ds is not None:
        _check_tensor(op, "ds", ds, dy, dy.dtype, dy.shape)
    _check_tensor(op, "s", s, dy, dy.dtype, dy.shape)
    _check_tensor(op, "weight", weight, dy, dy.dtype, (C,))
    _check_tensor(op, "mean", mean, dy, torch.float32, (N,))
    _check_tensor(op, "rstd", rstd, dy, torch.float32, (N,))
    dx, dweight, dbias = torch.ops.fastgpt_cuda.add_layernorm_bwd.default(dy, ds, s, weight, mean, rstd, bool(has_bias))
    return dx, dweight, dbias if has_bias else None


def bias_gelu_fwd(a, bias):
    op = "fastgpt_cuda::bias_gelu_fwd"
    _check_input(op, "a", a)
    _check_columns(op, "a", a.shape[1])
    _check_tensor(op, "bias", bias, a, a.dtype, (a.shape[1],))
    return torch.ops.fastgpt_cuda.bias_gelu_fwd.default(a, bias)


def bias_gelu_bwd(dh, a, bias):
    op = "fastgpt_cuda::bias_gelu_bwd"
    _check_input(op, "dh", dh)
    _check_columns(op, "dh", dh.shape[1])
    _check_tensor(op, "a", a, dh, dh.dtype, dh.shape)
    _check_tensor(op, "bias", bias, dh, dh.dtype, (dh.shape[1],))
    da, dbias = torch.ops.fastgpt_cuda.bias_gelu_bwd.default(dh, a, bias)
    return da, dbias


def _check_gemm_operand(op: str, name: str, t) -> None:
    _check_input(op, name, t)
    if t.dtype == torch.float32:
        raise InputError(f"{op}: {name} must be float16 or bfloat16 (the cuBLASLt epilogues' GELU input is "
                         "kept in the output's dtype), got torch.float32")
    if t.shape[1] % 8:
        raise InputError(f"{op}: {name} must have a multiple of 8 columns, got {t.shape[1]}")


def linear_bias_gelu(x, weight, bias):
    """(h, pre): pre = x @ weight^T + bias, h = gelu_tanh(pre), in one cuBLASLt GEMM."""
    op = "fastgpt_cuda::linear_bias_gelu"
    _check_gemm_operand(op, "x", x)
    _check_gemm_operand(op, "weight", weight)
    M, K = weight.shape[0], x.shape[1]
    _check_tensor(op, "weight", weight, x, x.dtype, (M, K))
    if M % 8:
        raise InputError(f"{op}: weight must have a multiple of 8 rows, got {M}")
    _check_tensor(op, "bias", bias, x, x.dtype, (M,))
    return torch.ops.fastgpt_cuda.linear_bias_gelu.default(x, weight, bias)


def _check_gelu_grad_gemm(op: str, dy, weight, pre) -> None:
    _check_gemm_operand(op, "dy", dy)
    _check_gemm_operand(op, "pre", pre)
    (N, K), M = dy.shape, pre.shape[1]
    _check_tensor(op, "weight", weight, dy, dy.dtype, (K, M))
    _check_tensor(op, "pre", pre, dy, dy.dtype, (N, M))


def matmul_gelu_grad_bias_grad(dy, weight, pre):
    """(dpre, dbias): dpre = (dy @ weight) * gelu_tanh'(pre), dbias = dpre.sum(0), in one GEMM."""
    _check_gelu_grad_gemm("fastgpt_cuda::matmul_gelu_grad_bias_grad", dy, weight, pre)
    return torch.ops.fastgpt_cuda.matmul_gelu_grad_bias_grad.default(dy, weight, pre)


def matmul_gelu_grad(dy, weight, pre):
    """dpre = (dy @ weight) * gelu_tanh'(pre) in one GEMM (cuBLASLt's DGELU), no bias gradient."""
    _check_gelu_grad_gemm("fastgpt_cuda::matmul_gelu_grad", dy, weight, pre)
    return torch.ops.fastgpt_cuda.matmul_gelu_grad.default(dy, weight, pre)


def weight_grad_bias_grad(dy, x):
    """(dweight, dbias): dweight = dy^T @ x, dbias = dy.sum(0), in one GEMM."""
    op = "fastgpt_cuda::weight_grad_bias_grad"
    _check_gemm_operand(op, "dy", dy)
    _check_gemm_operand(op, "x", x)
    _check_tensor(op, "x", x, dy, dy.dtype, (dy.shape[0], x.shape[1]))
    return torch.ops.fastgpt_cuda.weight_grad_bias_grad.default(dy, x)


# ---- fake (meta) implementations: shapes and dtypes only, for torch.compile / opcheck ----

def _register_fakes(namespace: str) -> None:
    """Register the fake implementation of every op in `namespace` (once; the ops must exist)."""
    if namespace in _state.faked:
        return

    def add_layernorm_fwd_fake(x, residual, weight, bias, eps):
        rows = x.new_empty(x.shape[0], dtype=torch.float32)
        return torch.empty_like(x), torch.empty_like(x), rows, torch.empty_like(rows)

    def add_layernorm_bwd_fake(dy, ds, s, weight, mean, rstd, has_bias):
        return (torch.empty_like(dy), torch.empty_like(weight),
                torch.empty_like(weight) if has_bias else weight.new_empty(0))

    def bias_gelu_fwd_fake(a, bias):
        return torch.empty_like(a)

    def bias_gelu_bwd_fake(dh, a, bias):
        return torch.empty_like(dh), torch.empty_like(bias)

    def linear_bias_gelu_fake(x, weight, bias):
        out = x.new_empty(x.shape[0], weight.shape[0])
        return out, torch.empty_like(out)

    def matmul_gelu_grad_bias_grad_fake(dy, weight, pre):
        return torch.empty_like(pre), pre.new_empty(pre.shape[1])

    def matmul_gelu_grad_fake(dy, weight, pre):
        return torch.empty_like(pre)

    def weight_grad_bias_grad_fake(dy, x):
        return dy.new_empty(dy.shape[1], x.shape[1]), dy.new_empty(dy.shape[1])

    fakes = {"add_layernorm_fwd": add_layernorm_fwd_fake, "add_layernorm_bwd": add_layernorm_bwd_fake,
             "bias_gelu_fwd": bias_gelu_fwd_fake, "bias_gelu_bwd": bias_gelu_bwd_fake,
             "linear_bias_gelu": linear_bias_gelu_fake,
             "matmul_gelu_grad_bias_grad": matmul_gelu_grad_bias_grad_fake,
             "matmul_gelu_grad": matmul_gelu_grad_fake,
             "weight_grad_bias_grad": weight_grad_bias_grad_fake}
    for name, fake in fakes.items():
        torch.library.register_fake(f"{namespace}::{name}")(fake)
    _state.faked.add(namespace)
