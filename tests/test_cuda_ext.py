"""The optional CUDA extension (csrc/, fastgpt/_cuda.py, setup.py; issue 6).

Without a GPU: loading returns None cleanly, the `cuda` backend says how to build it, setup.py
skips the extension with one line (and fails when FASTGPT_BUILD_CUDA=1), and the op schemas and
fake implementations pass torch.library.opcheck on a CPU stand-in library with the same schemas.
On a GPU: opcheck on the real ops, parity of every output against float64 references (fp32,
fp16, bf16; odd and large row lengths; misaligned pointers), bit-identical parameter gradients
across runs, outputs over poisoned memory, clear errors for bad input, and torch.compile.
The compile check of every .cu file runs in CI as `bash csrc/compile_check.sh`.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fastgpt
from fastgpt import _cuda, backend
from fastgpt.backend import BackendError
from fastgpt.testing import REL_TOL, assert_rel_close, poison_

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="the CUDA extension runs on a GPU only (none here)")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ---- float64 references ----

def add_layernorm_reference(x, residual, weight, bias, eps):
    s = x.double() if residual is None else x.double() + residual.double()
    mean = s.mean(-1)
    rstd = (s.var(-1, unbiased=False) + eps).rsqrt()
    y = F.layer_norm(s, (s.shape[-1],), weight.double(), None if bias is None else bias.double(), eps)
    return y, s, mean, rstd


@torch.enable_grad()
def add_layernorm_bwd_reference(dy, ds, s, weight, has_bias, eps=1e-5):
    s64 = s.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    b64 = torch.zeros_like(w64, requires_grad=True)
    y = F.layer_norm(s64, (s.shape[-1],), w64, b64, eps)
    ds64, dw, db = torch.autograd.grad(y, (s64, w64, b64), dy.double())
    if ds is not None:
        ds64 = ds64 + ds.double()
    return ds64, dw, db if has_bias else None


def gelu_reference(u):
    return F.gelu(u, approximate="tanh")


@torch.enable_grad()
def bias_gelu_bwd_reference(dh, a, bias):
    u = (a.double() + bias.double()).requires_grad_()
    (du,) = torch.autograd.grad(gelu_reference(u), u, dh.double())
    return du, du.sum(0)


def add_layernorm_bwd_closed_form(dy, ds, s, weight, has_bias, eps=1e-5):
    """The same gradients without autograd (autograd does not record inside an op's kernel)."""
    s64, dy64 = s.double(), dy.double()
    xhat = (s64 - s64.mean(-1, keepdim=True)) * (s64.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
    rstd = (s64.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
    g = weight.double() * dy64
    dx = rstd * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))
    if ds is not None:
        dx = dx + ds.double()
    return dx, (dy64 * xhat).sum(0), dy64.sum(0) if has_bias else None


def bias_gelu_bwd_closed_form(dh, a, bias):
    u = a.double() + bias.double()
    k = (2.0 / torch.pi) ** 0.5
    t = torch.tanh(k * (u + 0.044715 * u ** 3))
    du = dh.double() * (0.5 * (1 + t) + 0.5 * u * (1 - t * t) * k * (1 + 3 * 0.044715 * u * u))
    return du, du.sum(0)


# ---- without a GPU ----

def test_closed_form_gradients_agree_with_autograd():
    N, C = 9, 13
    s, dy, ds = (torch.randn(N, C, dtype=torch.float64) for _ in range(3))
    w = torch.randn(C, dtype=torch.float64)
    for got, want in zip(add_layernorm_bwd_closed_form(dy, ds, s, w, True),
                         add_layernorm_bwd_reference(dy, ds, s, w, True)):
        torch.testing.assert_close(got, want)
    a, bias = torch.randn(N, C, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
    for got, want in zip(bias_gelu_bwd_closed_form(dy, a, bias), bias_gelu_bwd_reference(dy, a, bias)):
        torch.testing.assert_close(got, want)



def test_load_without_building_returns_none_or_ops():
    ops = _cuda.load(build=False)
    if ops is None:
        assert _cuda.last_error()
    else:
        assert callable(ops.add_layernorm_fwd) and callable(ops.bias_gelu_bwd)


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only behaviour")
def test_load_on_a_cpu_machine_is_none_and_says_why(monkeypatch):
    monkeypatch.delenv("FASTGPT_BUILD_CUDA", raising=False)
    assert _cuda.load() is None                       # would JIT-build on a GPU machine
    assert _cuda.load(build=True) is None             # nothing to build with: None, not an error
    assert "GPU" in _cuda.last_error() or "CUDA" in _cuda.last_error()
    assert _cuda.jit_problem() is not None


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only behaviour")
def test_cuda_backend_without_extension_gives_the_build_hint():
    with fastgpt.use_backend("cuda"), pytest.raises(BackendError) as info:
        backend.resolve(None)
    assert "fastgpt._C" in str(info.value)
    assert "pip install --no-build-isolation -e ." in str(info.value)
    assert "load(build=True)" in _cuda.BUILD_HINT


def test_build_directory_is_versioned(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTGPT_CUDA_BUILD_DIR", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    directory = _cuda.build_directory()
    assert directory.parent == tmp_path and "torch" in directory.name
    monkeypatch.setenv("FASTGPT_CUDA_BUILD_DIR", str(tmp_path / "mine"))
    assert _cuda.build_directory() == tmp_path / "mine"


def test_every_build_compiles_the_same_sources():
    on_disk = sorted(str(p.relative_to(ROOT / "csrc")) for p in (ROOT / "csrc" / "fastgpt").glob("*.c*")
                     if p.suffix in (".cu", ".cpp"))
    assert sorted(_cuda.SOURCES) == on_disk
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for source in _cuda.SOURCES:
        if source != "fastgpt/module.cpp":           # the Python module is setup.py / JIT only
            assert f"csrc/{source}" in cmake, source
    registered = re.findall(r'm\.def\("([^"]+)"(?:\s*"([^"]*)")?', (ROOT / "csrc/fastgpt/ops.cpp").read_text())
    assert sorted(a + b for a, b in registered) == sorted(_cuda.SCHEMAS.values())


def test_cublaslt_flags_prefer_torchs_nvidia_cublas_wheel_then_the_toolkit(tmp_path, monkeypatch):
    wheel = tmp_path / "site" / "nvidia" / "cu13"
    toolkit = tmp_path / "cuda"
    for root, lib in ((wheel, "lib"), (toolkit, "lib64")):
        (root / "include").mkdir(parents=True)
        (root / lib).mkdir()
        (root / "include" / "cublasLt.h").write_text("")
        (root / lib / "libcublasLt.so.13").write_text("")
    find_spec = importlib.util.find_spec
    with monkeypatch.context() as no_wheel:   # as where torch's CUDA wheels are not installed
        no_wheel.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nvidia" else find_spec(name, *a))
        assert _cuda.cublaslt_build_flags(str(toolkit)) == (
            [str(toolkit / "include")], [f"-L{toolkit / 'lib64'}", "-l:libcublasLt.so.13",
                                         f"-Wl,-rpath,{toolkit / 'lib64'}"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))       # "nvidia" becomes a namespace package
    monkeypatch.delitem(sys.modules, "nvidia", raising=False)
    # the real nvidia packages (torch's CUDA wheels, where installed) come later on the path
    includes, flags = _cuda.cublaslt_build_flags(str(toolkit))
    assert includes == [str(wheel / "include")] and f"-L{wheel / 'lib'}" in flags
    assert _cuda.cublaslt_build_flags(str(tmp_path / "nowhere"))[0] == [str(wheel / "include")]


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the skip on a torch without CUDA")
@pytest.mark.parametrize("required", [False, True])
def test_setup_skips_the_extension_with_one_line_or_fails_when_required(required, tmp_path):
    env = dict(os.environ, FASTGPT_BUILD_CUDA="1" if required else "")
    result = subprocess.run([sys.executable, str(ROOT / "setup.py"), "build_ext",
                             "--build-temp", str(tmp_path), "--build-lib", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("fastgpt:") or "FASTGPT_BUILD_CUDA=1" in line]
    if required:
        assert result.returncode != 0
        assert "FASTGPT_BUILD_CUDA=1 but the CUDA extension cannot be built" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert len(lines) == 1 and "without CUDA" in lines[0], result.stderr


# The schemas and fake implementations, checked on CPU through a stand-in library whose ops
# have the extension's schemas and float64-reference CPU kernels.
_REFERENCE_NAMESPACE = "fastgpt_cuda_cpu_reference"
_reference_library = None


def _reference_ops():
    global _reference_library
    if _reference_library is None:
        lib = torch.library.Library(_REFERENCE_NAMESPACE, "DEF")
        for schema in _cuda.SCHEMAS.values():
            lib.define(schema)

        def fwd(x, residual, weight, bias, eps):
            y, s, mean, rstd = add_layernorm_reference(x, residual, weight, bias, eps)
            return y.to(x.dtype), s.to(x.dtype), mean.float(), rstd.float()

        def bwd(dy, ds, s, weight, mean, rstd, has_bias):
            dx, dw, db = add_layernorm_bwd_closed_form(dy, ds, s, weight, has_bias)
            return dx.to(dy.dtype), dw.to(weight.dtype), db.to(weight.dtype) if has_bias else weight.new_empty(0)

        def gelu_fwd(a, bias):
            return gelu_reference(a.double() + bias.double()).to(a.dtype)

        def gelu_bwd(dh, a, bias):
            da, db = bias_gelu_bwd_closed_form(dh, a, bias)
            return da.to(a.dtype), db.to(bias.dtype)

        def linear_gelu(x, weight, bias):
            pre = x.double() @ weight.double().t() + bias.double()
            return gelu_reference(pre).to(x.dtype), pre.to(x.dtype)

        def matmul_gelu_grad(dy, weight, pre):
            dpre, dbias = bias_gelu_bwd_closed_form(dy.double() @ weight.double(), pre, torch.zeros_like(pre[0]))
            return dpre.to(dy.dtype), dbias.to(dy.dtype)

        def dgelu(dy, weight, pre):
            return matmul_gelu_grad(dy, weight, pre)[0]

        def weight_grad(dy, x):
            return (dy.double().t() @ x.double()).to(dy.dtype), dy.double().sum(0).to(dy.dtype)

        for name, fn in (("add_layernorm_fwd", fwd), ("add_layernorm_bwd", bwd),
                         ("bias_gelu_fwd", gelu_fwd), ("bias_gelu_bwd", gelu_bwd),
                         ("linear_bias_gelu", linear_gelu), ("matmul_gelu_grad_bias_grad", matmul_gelu_grad),
                         ("matmul_gelu_grad", dgelu), ("weight_grad_bias_grad", weight_grad)):
            lib.impl(name, fn, "CPU")
        _cuda._register_fakes(_REFERENCE_NAMESPACE)
        _reference_library = lib
    return getattr(torch.ops, _REFERENCE_NAMESPACE)


def _op_samples(device, dtype=torch.float32, N=5, C=12):
    """(op name, args) covering the optional arguments, for opcheck."""
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    x, r, w, b = randn(N, C), randn(N, C), randn(C), randn(C)
    s = x + r
    mean = s.float().mean(-1)
    rstd = (s.float().var(-1, unbiased=False) + 1e-5).rsqrt()
    return [
        ("add_layernorm_fwd", (x, r, w, b, 1e-5)),
        ("add_layernorm_fwd", (x, None, w, None, 1e-6)),
        ("add_layernorm_bwd", (randn(N, C), randn(N, C), s, w, mean, rstd, True)),
        ("add_layernorm_bwd", (randn(N, C), None, s, w, mean, rstd, False)),
        ("bias_gelu_fwd", (randn(N, 3 * C), randn(3 * C))),
        ("bias_gelu_bwd", (randn(N, 3 * C), randn(N, 3 * C), randn(3 * C))),
        # the cuBLASLt GEMMs (sizes multiples of 8: K = 16, M = 48)
        ("linear_bias_gelu", (randn(N, 16), randn(48, 16), randn(48))),
        ("matmul_gelu_grad_bias_grad", (randn(N, 16), randn(16, 48), randn(N, 48))),
        ("matmul_gelu_grad", (randn(N, 16), randn(16, 48), randn(N, 48))),
        ("weight_grad_bias_grad", (randn(N, 48), randn(N, 16))),
    ]


GEMM_OPS = ("linear_bias_gelu", "matmul_gelu_grad_bias_grad", "matmul_gelu_grad", "weight_grad_bias_grad")
N_SAMPLES = len(_op_samples("cpu"))


@pytest.mark.parametrize("index", range(N_SAMPLES))
def test_schemas_and_fakes_pass_opcheck_on_the_cpu_stand_in(index):
    ops = _reference_ops()
    name, args = _op_samples("cpu")[index]
    torch.library.opcheck(getattr(ops, name).default, args)


# ---- on a GPU ----

@pytest.fixture(scope="module")
def ext():
    if not HAS_CUDA:
        pytest.skip("the CUDA extension runs on a GPU only (none here)")
    ops = _cuda.load(build=True)
    assert ops is not None, _cuda.last_error()
    return ops


def _poison_allocator(*shapes, dtype):
    """Fill freed cached blocks of these sizes with NaN, so the op's outputs (allocated by it)
    start as NaN and an element it fails to write fails the comparison."""
    blocks = [poison_(torch.empty(shape, device="cuda", dtype=dtype)) for shape in shapes]
    del blocks


def _randn(*shape, dtype, shift=0.0, scale=1.0, offset=0):
    """Random CUDA tensor; offset > 0 places it `offset` elements into its storage (misaligned)."""
    flat = torch.randn(offset + int(torch.tensor(shape).prod()), device="cuda", dtype=torch.float32)
    t = (flat * scale + shift).to(dtype)[offset:]
    return t.view(*shape)


@needs_gpu
def test_registered_schemas_are_the_documented_ones(ext):
    for name, schema in _cuda.SCHEMAS.items():
        assert str(getattr(torch.ops.fastgpt_cuda, name).default._schema) == f"fastgpt_cuda::{schema}"


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(N_SAMPLES))
def test_opcheck(ext, dtype, index):
    name, args = _op_samples("cuda", dtype)[index]
    if name in GEMM_OPS and (dtype == torch.float32 or not ext.gemm_epilogues):
        pytest.skip("the cuBLASLt GEMMs: fp16 and bf16, in an extension built with cublasLt.h")
    torch.library.opcheck(getattr(torch.ops.fastgpt_cuda, name).default, args)


LAYERNORM_CASES = [  # (N, C, residual, bias, ds, offset)
    (37, 1, True, True, True, 0), (37, 7, True, True, True, 0), (37, 768, True, True, True, 0),
    (37, 1000, True, True, True, 0), (37, 4096, True, True, True, 0), (1, 768, False, False, False, 0),
    (5000, 768, True, True, True, 0), (8, 16384, True, True, False, 0), (300, 768, True, False, True, 1),
    (64, 3000, False, True, False, 0),
]


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, has_residual, has_bias, has_ds, offset", LAYERNORM_CASES)
def test_add_layernorm_matches_float64(ext, dtype, N, C, has_residual, has_bias, has_ds, offset):
    tol, eps = REL_TOL[dtype], 1e-5
    x = _randn(N, C, dtype=dtype, shift=0.5, offset=offset)
    residual = _randn(N, C, dtype=dtype, offset=offset) if has_residual else None
    weight = _randn(C, dtype=dtype, shift=1.0, scale=0.5, offset=offset)
    bias = _randn(C, dtype=dtype, scale=0.5, offset=offset) if has_bias else None
    _poison_allocator((N, C), (N, C), (N,), (N,), dtype=dtype)
    y, s, mean, rstd = ext.add_layernorm_fwd(x, residual, weight, bias, eps)
    y_ref, s_ref, mean_ref, rstd_ref = add_layernorm_reference(x, residual, weight, bias, eps)
    assert y.dtype == s.dtype == dtype and mean.dtype == rstd.dtype == torch.float32
    if residual is None:
        assert s.data_ptr() != x.data_ptr()
    assert_rel_close(s, s_ref, tol, "s")
    assert_rel_close(y, y_ref, tol, "y")
    assert_rel_close(mean, mean_ref, max(tol, REL_TOL[torch.float32]), "mean")
    assert_rel_close(rstd, rstd_ref, tol, "rstd")

    dy = _randn(N, C, dtype=dtype, offset=offset)
    ds = _randn(N, C, dtype=dtype, offset=offset) if has_ds else None
    _poison_allocator((N, C), (C,), (C,), dtype=dtype)
    dx, dweight, dbias = ext.add_layernorm_bwd(dy, ds, s, weight, mean, rstd, has_bias)
    dx_ref, dw_ref, db_ref = add_layernorm_bwd_reference(dy, ds, s, weight, has_bias, eps)
    assert dx.dtype == dtype and dweight.dtype == weight.dtype
    assert_rel_close(dx, dx_ref, tol, "dx")
    assert_rel_close(dweight, dw_ref, tol, "dweight")
    if has_bias:
        assert dbias.dtype == weight.dtype
        assert_rel_close(dbias, db_ref, tol, "dbias")
    else:
        assert dbias is None


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, M, offset", [(37, 1, 0), (37, 7, 0), (37, 768, 0), (1000, 1000, 0),
                                          (1031, 3072, 0), (257, 3072, 1), (1, 4096, 0)])
def test_bias_gelu_matches_float64(ext, dtype, N, M, offset):
    tol = REL_TOL[dtype]
    a = _randn(N, M, dtype=dtype, scale=1.5, offset=offset)
    bias = _randn(M, dtype=dtype, scale=0.5, offset=offset)
    _poison_allocator((N, M), dtype=dtype)
    h = ext.bias_gelu_fwd(a, bias)
    assert h.dtype == dtype
    assert_rel_close(h, gelu_reference(a.double() + bias.double()), tol, "h")
    dh = _randn(N, M, dtype=dtype, offset=offset)
    _poison_allocator((N, M), (M,), dtype=dtype)
    da, dbias = ext.bias_gelu_bwd(dh, a, bias)
    da_ref, db_ref = bias_gelu_bwd_reference(dh, a, bias)
    assert da.dtype == dbias.dtype == dtype
    assert_rel_close(da, da_ref, tol, "da")
    assert_rel_close(dbias, db_ref, tol, "dbias")


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_parameter_gradients_are_bit_identical_across_runs(ext, dtype):
    N, C = 8192, 768
    x, w, b = _randn(N, C, dtype=dtype), _randn(C, dtype=dtype, shift=1.0), _randn(C, dtype=dtype)
    y, s, mean, rstd = ext.add_layernorm_fwd(x, None, w, b, 1e-5)
    dy = _randn(N, C, dtype=dtype)
    first = ext.add_layernorm_bwd(dy, None, s, w, mean, rstd, True)
    a, bias, dh = _randn(N, 4 * C, dtype=dtype), _randn(4 * C, dtype=dtype), _randn(N, 4 * C, dtype=dtype)
    first_gelu = ext.bias_gelu_bwd(dh, a, bias)
    for _ in range(3):
        again = ext.add_layernorm_bwd(dy, None, s, w, mean, rstd, True)
        assert torch.equal(again[1], first[1]) and torch.equal(again[2], first[2])
        assert torch.equal(ext.bias_gelu_bwd(dh, a, bias)[1], first_gelu[1])


@needs_gpu
def test_empty_batch_gives_zero_parameter_gradients(ext):
    x, w, b = torch.empty(0, 64, device="cuda"), torch.randn(64, device="cuda"), torch.randn(64, device="cuda")
    y, s, mean, rstd = ext.add_layernorm_fwd(x, None, w, b, 1e-5)
    assert y.shape == (0, 64) and mean.shape == (0,)
    dx, dw, db = ext.add_layernorm_bwd(x, None, s, w, mean, rstd, True)
    assert dx.shape == (0, 64) and torch.equal(dw, torch.zeros_like(w)) and torch.equal(db, torch.zeros_like(b))
    da, dbias = ext.bias_gelu_bwd(x, x, b)
    assert da.shape == (0, 64) and torch.equal(dbias, torch.zeros_like(b))


# Bad input: (call, the message it must raise). `x` (4, 8) and `w` (8,) are float32 CUDA tensors;
# `ops` is either the Python wrappers (fastgpt._cuda, which check in Python) or the raw
# torch.ops.fastgpt_cuda.* ops (ops.cpp's TORCH_CHECKs). Each case runs in its own interpreter:
# a crash in C++ then fails that case, with its exit status and stderr, instead of the session.
BAD_INPUT_CASES = [
    ("add_layernorm_fwd(x.cpu(), None, w, None, 1e-5)", "x must be a CUDA tensor"),
    ("add_layernorm_fwd(x.double(), None, w.double(), None, 1e-5)", "float32, float16 or bfloat16"),
    ("add_layernorm_fwd(x, None, w.half(), None, 1e-5)", "weight must have dtype"),
    ("add_layernorm_fwd(x, None, torch.randn(9, device='cuda'), None, 1e-5)", "weight must have shape"),
    ("add_layernorm_fwd(x.t(), None, torch.randn(4, device='cuda'), None, 1e-5)", "contiguous"),
    ("add_layernorm_fwd(x, torch.randn(4, 9, device='cuda'), w, None, 1e-5)", "residual must have shape"),
    ("add_layernorm_fwd(x.view(2, 2, 8), None, w, None, 1e-5)", "must be 2-D"),
    ("add_layernorm_fwd(torch.randn(2, 16385, device='cuda'), None, torch.randn(16385, device='cuda'), None, 1e-5)",
     "16384"),
    ("add_layernorm_fwd(x, None, w, w.cpu(), 1e-5)", "bias must be a CUDA tensor"),
    ("bias_gelu_fwd(x, torch.randn(7, device='cuda'))", "bias must have shape"),
    ("bias_gelu_bwd(x, x.cpu(), w)", "a must be a CUDA tensor"),
    ("add_layernorm_bwd(x, None, x, w, torch.randn(4, device='cuda').half(), torch.randn(4, device='cuda'), True)",
     "mean must have dtype"),
]

_BAD_INPUT_SCRIPT = """
import sys, types, torch
from fastgpt import _cuda
ext = _cuda.load(build=True)
assert ext is not None, _cuda.last_error()
raw = types.SimpleNamespace(**{{name: getattr(torch.ops.fastgpt_cuda, name).default for name in _cuda.SCHEMAS}})
x, w = torch.randn(4, 8, device="cuda"), torch.randn(8, device="cuda")
for via, ops in (("wrapper", ext), ("torch.ops", raw)):
    print(via + ": calling", flush=True)
    try:
        ops.{call}
    except RuntimeError as e:
        print(via + ": " + type(e).__name__ + ": " + str(e).splitlines()[0], flush=True)
    else:
        print(via + ": no error", flush=True)
"""


@pytest.fixture(scope="module")
def bad_input_results(ext):
    """Run every bad-input case in its own `python -X faulthandler -c` at once; {call: (rc, stdout, stderr)}."""
    procs = {call: subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", _BAD_INPUT_SCRIPT.format(call=call)],
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for call, _ in BAD_INPUT_CASES}
    results = {}
    for call, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[call] = (proc.returncode, out, err)
    return results


@needs_gpu
@pytest.mark.parametrize("call, message", BAD_INPUT_CASES, ids=[m for _, m in BAD_INPUT_CASES])
def test_bad_input_gives_clear_errors(bad_input_results, call, message):
    rc, out, err = bad_input_results[call]
    report = f"`{call}` exited with status {rc}\n--- stdout\n{out}\n--- stderr (last 4000 chars)\n{err[-4000:]}"
    assert rc == 0, "crashed: " + report          # -11: SIGSEGV, -6: SIGABRT (std::terminate)
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.endswith(": calling"))
    for via in ("wrapper", "torch.ops"):
        assert via in lines and message in lines[via] and "Error" in lines[via], report
    assert lines["wrapper"].startswith("InputError"), report


def test_wrappers_reject_bad_input_before_calling_into_cpp():
    """Without a GPU: the wrappers' Python checks raise (a ValueError that is also a RuntimeError)
    before torch.ops.fastgpt_cuda is touched (it does not exist here)."""
    x, w = torch.randn(4, 8), torch.randn(8)
    cases = [(lambda: _cuda.add_layernorm_fwd(x, None, w, None, 1e-5), "x must be a CUDA tensor, got one on cpu"),
             (lambda: _cuda.add_layernorm_fwd("x", None, w, None, 1e-5), "x must be a tensor, got str"),
             (lambda: _cuda.add_layernorm_bwd(x, None, x, w, w, w, True), "dy must be a CUDA tensor"),
             (lambda: _cuda.bias_gelu_fwd(x, w), "a must be a CUDA tensor"),
             (lambda: _cuda.bias_gelu_bwd(x, x, w), "dh must be a CUDA tensor")]
    for call, message in cases:
        with pytest.raises(_cuda.InputError, match=re.escape(message)) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)


def test_python_channel_limit_is_the_kernels_limit():
    kernels_h = (ROOT / "csrc/fastgpt/kernels.h").read_text()
    assert re.search(r"kMaxChannels\s*=\s*(\d+)", kernels_h).group(1) == str(_cuda.MAX_CHANNELS)


@needs_gpu
def test_extension_reports_the_channel_limit(ext):
    assert ext.module.max_channels == _cuda.MAX_CHANNELS


@needs_gpu
def test_ops_run_inside_torch_compile(ext):
    def block(x, residual, w, b, a, bias):
        y, s, _, _ = ext.add_layernorm_fwd(x, residual, w, b, 1e-5)
        return y, s, ext.bias_gelu_fwd(a, bias)

    args = (_randn(64, 768, dtype=torch.bfloat16), _randn(64, 768, dtype=torch.bfloat16),
            _randn(768, dtype=torch.bfloat16, shift=1.0), _randn(768, dtype=torch.bfloat16),
            _randn(64, 3072, dtype=torch.bfloat16), _randn(3072, dtype=torch.bfloat16))
    compiled = torch.compile(block, fullgraph=True)
    for got, want in zip(compiled(*args), block(*args)):
        assert torch.equal(got, want)
