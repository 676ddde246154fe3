"""The plain GEMMs of the triton backend (no epilogue of ours) on cuBLASLt, with each shape's
algorithm chosen by timing rather than taken from cuBLAS's heuristic.

What and why. The step's cuBLAS GEMMs (c_attn, c_proj, the MLP's second layer, every dX and dW
of the backward, the LM head's dX and dW) are ~13 ms of a ~26 ms step on the H100. PyTorch runs
each on the algorithm cuBLAS's heuristic ranks first, and that is not always the fastest one the
library has: run 111 (benchmarks/results/runs/logs/run111-*) timed cuBLASLt's heuristic list (8
algorithms a shape) for each of the step's shapes, back to back, and found faster ones for most,
3-12% a GEMM, ~0.5 ms a step predicted. In the graphed step it is less: -0.11 to -0.18 ms
(runs 113, 114, 119, 121: alternating processes, ~0.5%), and each GEMM replayed alone in a CUDA
graph (benchmarks/bench_gemm.py, run 121) is within that benchmark's noise of PyTorch's. So, per
problem (sizes, layouts, dtypes, bias, accumulate), the first call times PyTorch's own call and
each algorithm cuBLASLt offers, interleaved, on the call's own operands and output, and keeps
the fastest for the process, as Triton's autotuner keeps a kernel's tile. PyTorch's call stays a
candidate, and a cuBLASLt algorithm must beat it by 1% to be kept.

How. cuBLASLt through ctypes (the library torch itself links; no build step): descriptors are
made once per problem; a call sets the bias pointer (when there is one) and runs
cublasLtMatmul on the current stream with a workspace per stream, as large as the chosen
algorithms ask (most ask none; an algorithm may ask at most 32 MiB). Row-major
C[M, N] = A[M, K] @ B[K, N] is cuBLASLt's column-major C^T = B^T A^T. cuBLASLt's calls are
capturable, so the choice replays in CUDA graphs; a problem first met while a graph is being
captured (nothing may be timed then) runs PyTorch's call until it is met outside a capture.

Limits. CUDA tensors; A and B float16 / bfloat16 of one dtype, each with a unit stride in one
dimension (row-major or a transposed view) and 16-byte aligned leading dimensions and base; the
output in the operands' dtype or float32, rows contiguous; a bias (N,) only with an output in
the operands' dtype; beta (accumulate into `out`) 0 or 1; an addend (M, N) (cuBLAS's C, read
while the result goes to `out`, its D: a residual add in the epilogue) laid out as the output.
Everything else, and CPU tensors, torch.compile tracing, FASTGPT_AUTOTUNE=0 (tests: one pinned
configuration everywhere) and FASTGPT_CUBLASLT=0 (the comparison switch), runs PyTorch's call: the
same arithmetic (fp32 accumulation) by another kernel, so results agree to fp32 summation order,
not bitwise.

Launcher (tensor in, tensor out):
    matmul(a, b, bias=None, out=None, beta=0.0, out_dtype=None, *, addend=None, tuned=False)
        -> a @ b (+ bias) (+ beta * out) (+ addend); PyTorch's call unless tuned (launches free:
        graphed steps)
"""
from __future__ import annotations

import ctypes
import os
import statistics
import threading
from dataclasses import dataclass

import torch

from fastgpt import _cuda
from fastgpt.backend import autotuning

# cuBLASLt's enum values (cublasLt.h, cublas_api.h, library_types.h; stable since CUDA 11)
_COMPUTE_32F = 68
_R_32F, _R_16F, _R_16BF = 0, 2, 14
_OP_N, _OP_T = 0, 1
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE, _DESC_BIAS_POINTER, _DESC_BIAS_DATA_TYPE = 3, 4, 7, 8, 26
_EPILOGUE_BIAS = 4
_PREF_MAX_WORKSPACE_BYTES = 1
_PREF_MIN_ALIGNMENT = (5, 6, 7, 8)         # A, B, C, D
_SUCCESS = 0
_CUDA_TYPES = {torch.float32: _R_32F, torch.float16: _R_16F, torch.bfloat16: _R_16BF}

WORKSPACE_BYTES = 32 << 20    # the most an algorithm may ask (PyTorch gives cuBLAS this much on Hopper)
MAX_ALGORITHMS = 8            # cuBLASLt's heuristic offered at most 8 for each of the step's shapes (run 111)
KEEP_MARGIN = 0.99            # a cuBLASLt algorithm is kept only if it takes under 99% of PyTorch's time
TIMING_ROUNDS = 9
SLEEP_CYCLES_PER_CALL = 200_000  # ~100 us of GPU clock a candidate: more than a call's host time


class _Algo(ctypes.Structure):                  # cublasLtMatmulAlgo_t
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class _Heuristic(ctypes.Structure):             # cublasLtMatmulHeuristicResult_t
    _fields_ = [("algo", _Algo), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


def enabled() -> bool:
    """Whether matmul may use cuBLASLt: off under FASTGPT_CUBLASLT=0 (PyTorch's call everywhere,
    for comparisons) and FASTGPT_AUTOTUNE=0 (no timing anywhere: GPU test runs)."""
    return os.environ.get("FASTGPT_CUBLASLT", "1") not in ("0", "") and autotuning()


def _library_paths() -> list[str]:
    """The cuBLASLt library: the soname torch's CUDA build links (already loaded with torch, so
    this is the same library), then where the extension's build looks (fastgpt._cuda)."""
    soname = [f"libcublasLt.so.{torch.version.cuda.split('.')[0]}"] if torch.version.cuda else []
    return soname + [str(library) for _, library in _cuda.cublaslt_installs(os.environ.get("CUDA_HOME"))]


class _CublasLt:
    """The library, one handle, and the functions this module calls, typed."""

    def __init__(self):
        self.lib = None
        for path in _library_paths():
            try:
                self.lib = ctypes.CDLL(path)
                break
            except OSError:
                continue
        if self.lib is None:
            raise OSError("libcublasLt not found")
        lib, p, i64, u64 = self.lib, ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64
        pp = ctypes.POINTER(ctypes.c_void_p)
        signatures = {
            "cublasLtCreate": [pp],
            "cublasLtMatmulDescCreate": [pp, ctypes.c_int, ctypes.c_int],
            "cublasLtMatmulDescSetAttribute": [p, ctypes.c_int, p, ctypes.c_size_t],
            "cublasLtMatrixLayoutCreate": [pp, ctypes.c_int, u64, u64, i64],
            "cublasLtMatmulPreferenceCreate": [pp],
            "cublasLtMatmulPreferenceSetAttribute": [p, ctypes.c_int, p, ctypes.c_size_t],
            "cublasLtMatmulPreferenceDestroy": [p],
            "cublasLtMatmulAlgoGetHeuristic": [p, p, p, p, p, p, p, ctypes.c_int, ctypes.POINTER(_Heuristic),
                                               ctypes.POINTER(ctypes.c_int)],
            "cublasLtMatmul": [p, p, p, p, p, p, p, p, p, p, p, p, ctypes.POINTER(_Algo), p, ctypes.c_size_t, p],
        }
        for name, argtypes in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        self.handle = ctypes.c_void_p()
        self.check(lib.cublasLtCreate(ctypes.byref(self.handle)), "cublasLtCreate")

    @staticmethod
    def check(status: int, call: str) -> None:
        if status != _SUCCESS:
            raise RuntimeError(f"{call} returned cuBLAS status {status}")

    def set_attribute(self, setter, obj, attribute: int, value: ctypes._SimpleCData) -> None:
        self.check(setter(obj, attribute, ctypes.byref(value), ctypes.sizeof(value)), setter.__name__)


@dataclass
class _Problem:
    """One GEMM's cuBLASLt descriptors (column-major D^T = B^T A^T) and its timed choice."""
    desc: ctypes.c_void_p
    layouts: tuple                   # (B^T's, A^T's, C^T's)
    algos: list                      # cuBLASLt's candidates, heuristic order
    workspace_sizes: list            # the bytes of workspace each needs
    choice: int | None = None        # index into algos, -1 for PyTorch's call, None until timed
    times: dict | None = None        # {index: median ms} from the timing (-1: PyTorch's call)


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.lt: _CublasLt | None = None
        self.unavailable: str | None = None
        self.problems: dict[tuple, _Problem] = {}
        self.workspaces: dict[tuple, list[torch.Tensor]] = {}

    def library(self) -> _CublasLt | None:
        if self.lt is None and self.unavailable is None:
            try:
                self.lt = _CublasLt()
            except (OSError, AttributeError, RuntimeError) as err:
                self.unavailable = str(err)
        return self.lt


_state = _State()


def _torch_matmul(a, b, bias, out, beta, out_dtype, addend=None):
    """What matmul computes, as PyTorch runs it (the fallback, and one of the timed candidates)."""
    kwargs = {} if out_dtype == a.dtype else {"out_dtype": out_dtype}
    if out is not None:
        kwargs["out"] = out
    if addend is not None:      # PyTorch copies the addend into the output, then accumulates
        result = torch.addmm(addend, a, b, **kwargs)
        return result if bias is None else result.add_(bias)
    if beta != 0:
        return torch.addmm(out, a, b, beta=beta, **kwargs)
    if bias is not None:
        return torch.addmm(bias, a, b, **kwargs)
    return torch.mm(a, b, **kwargs)


def _operand(t: torch.Tensor):
    """(op, ld) of a 2-D operand for cuBLASLt's column-major view of it, or None: rows contiguous
    is a column-major matrix of its transpose (op N), columns contiguous a transposed one (op T)."""
    if t.stride(1) == 1 and t.stride(0) >= max(1, t.shape[1]):
        return _OP_N, t.stride(0)
    if t.stride(0) == 1 and t.stride(1) >= max(1, t.shape[0]):
        return _OP_T, t.stride(1)
    return None


def _alignment(*tensors) -> int:
    """The largest of 256, 128, ..., 16 bytes that every base pointer and leading dimension has
    (cuBLASLt's heuristic takes it as a promise), 0 when one is not 16-byte aligned."""
    align = 256
    for t in tensors:
        ld_bytes = max(t.stride()) * t.element_size()
        while align >= 16 and (t.data_ptr() % align or ld_bytes % align):
            align //= 2
    return align if align >= 16 else 0


def _applies(a, b, bias, out, beta, out_dtype, addend=None) -> bool:
    if torch.compiler.is_compiling():     # traced: PyTorch's call (pointers are not real then)
        return False
    if not (a.is_cuda and a.dim() == 2 and b.dim() == 2 and a.dtype in (torch.float16, torch.bfloat16)
            and b.dtype == a.dtype and b.device == a.device and out_dtype in (a.dtype, torch.float32)):
        return False
    if beta not in (0, 1) or (beta and out is None) or a.shape[0] == 0 or b.shape[1] == 0 or a.shape[1] == 0:
        return False
    if bias is not None and (bias.dtype != out_dtype or out_dtype != a.dtype or not bias.is_contiguous()
                             or bias.data_ptr() % 16):
        return False
    if out is not None and (out.dtype != out_dtype or out.stride(1) != 1 or out.stride(0) < out.shape[1]):
        return False
    if addend is not None and (beta or addend.dtype != out_dtype or addend.device != a.device
                               or addend.stride() != _out_strides(a, b, out)):
        return False
    if _operand(a) is None or _operand(b) is None:
        return False
    return _alignment(*_gemm_tensors(a, b, out, addend)) >= 16


def _out_strides(a, b, out) -> tuple[int, int]:
    """The output's strides: out's, or those of the (M, N) tensor matmul allocates."""
    return (b.shape[1], 1) if out is None else out.stride()


def _gemm_tensors(a, b, out, addend) -> tuple[torch.Tensor, ...]:
    """The matrices cuBLASLt reads or writes whose addresses the alignment promise covers."""
    return tuple(t for t in (a, b, out, addend) if t is not None)


def _key(a, b, bias, out, beta, out_dtype, addend=None):
    """What a problem is: sizes, strides, dtypes, the output's row stride, bias, beta (1 with an
    addend: cuBLAS's C is then the addend), alignment."""
    return (a.device.index, a.shape, a.stride(), b.shape, b.stride(), a.dtype, out_dtype, _out_strides(a, b, out),
            bias is not None, 1 if addend is not None else beta, _alignment(*_gemm_tensors(a, b, out, addend)))


def _make_problem(lt: _CublasLt, a, b, out_ld, bias_type, out_dtype, align) -> _Problem:
    lib = lt.lib
    (op_a, ld_a), (op_b, ld_b) = _operand(a), _operand(b)
    M, K, N = a.shape[0], a.shape[1], b.shape[1]
    desc = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), _COMPUTE_32F, _R_32F), "cublasLtMatmulDescCreate")
    set_desc = lib.cublasLtMatmulDescSetAttribute
    lt.set_attribute(set_desc, desc, _DESC_TRANSA, ctypes.c_int32(op_b))    # cuBLASLt's A is B^T
    lt.set_attribute(set_desc, desc, _DESC_TRANSB, ctypes.c_int32(op_a))
    if bias_type is not None:
        lt.set_attribute(set_desc, desc, _DESC_EPILOGUE, ctypes.c_int32(_EPILOGUE_BIAS))
        lt.set_attribute(set_desc, desc, _DESC_BIAS_DATA_TYPE, ctypes.c_int32(bias_type))
    layouts = []
    for dtype, rows, cols, ld in ((b.dtype, N if op_b == _OP_N else K, K if op_b == _OP_N else N, ld_b),
                                  (a.dtype, K if op_a == _OP_N else M, M if op_a == _OP_N else K, ld_a),
                                  (out_dtype, N, M, out_ld)):
        layout = ctypes.c_void_p()
        lt.check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(layout), _CUDA_TYPES[dtype], rows, cols, ld),
                 "cublasLtMatrixLayoutCreate")
        layouts.append(layout)
    pref = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "cublasLtMatmulPreferenceCreate")
    set_pref = lib.cublasLtMatmulPreferenceSetAttribute
    lt.set_attribute(set_pref, pref, _PREF_MAX_WORKSPACE_BYTES, ctypes.c_uint64(WORKSPACE_BYTES))
    for attribute in _PREF_MIN_ALIGNMENT:
        lt.set_attribute(set_pref, pref, attribute, ctypes.c_uint32(align))
    results = (_Heuristic * MAX_ALGORITHMS)()
    found = ctypes.c_int(0)
    status = lib.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, layouts[0], layouts[1], layouts[2], layouts[2],
                                                pref, MAX_ALGORITHMS, results, ctypes.byref(found))
    lib.cublasLtMatmulPreferenceDestroy(pref)
    usable = [results[i] for i in range(found.value)
              if status == _SUCCESS and results[i].state == _SUCCESS and results[i].workspace_size <= WORKSPACE_BYTES]
    # the matmul and layout descriptors live as long as the process's problem table (a few a shape)
    return _Problem(desc, tuple(layouts), [r.algo for r in usable], [r.workspace_size for r in usable])


def _problem(lt: _CublasLt, a, b, bias, out, beta, out_dtype, addend=None) -> _Problem:
    """These operands' problem from the process's table, made (descriptors, candidates) at first."""
    key = _key(a, b, bias, out, beta, out_dtype, addend)
    if key not in _state.problems:
        out_ld = b.shape[1] if out is None else out.stride(0)
        _state.problems[key] = _make_problem(lt, a, b, out_ld, None if bias is None else _CUDA_TYPES[bias.dtype],
                                             out_dtype, key[-1])
    return _state.problems[key]


def _workspace(device: torch.device, stream: int, nbytes: int) -> torch.Tensor:
    """A workspace of at least nbytes for cuBLASLt on (device, stream) (GEMMs on two streams must
    not share one), grown only to what the chosen algorithms need (most need none). A replaced
    buffer is kept: a CUDA graph captured with it may still replay it."""
    key = (device.index, stream)
    held = _state.workspaces.get(key)
    if held is None or held[-1].numel() < nbytes:
        held = (held or []) + [torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device)]
        _state.workspaces[key] = held
    return held[-1]


def _run_algo(lt: _CublasLt, problem: _Problem, index: int, a, b, bias, out, beta,
              workspace: torch.Tensor | None = None, addend: torch.Tensor | None = None) -> None:
    lib = lt.lib
    if bias is not None:
        lt.set_attribute(lib.cublasLtMatmulDescSetAttribute, problem.desc, _DESC_BIAS_POINTER,
                         ctypes.c_void_p(bias.data_ptr()))
    # C: the addend (read; D = out written) or out itself (read only with beta 1)
    c = out if addend is None else addend
    alpha, beta_value = ctypes.c_float(1.0), ctypes.c_float(1.0 if addend is not None else float(beta))
    stream = torch.cuda.current_stream(a.device).cuda_stream
    if workspace is None:
        workspace = _workspace(a.device, stream, problem.workspace_sizes[index])
    layout_b, layout_a, layout_c = problem.layouts
    lt.check(lib.cublasLtMatmul(lt.handle, problem.desc, ctypes.byref(alpha), ctypes.c_void_p(b.data_ptr()),
                                layout_b, ctypes.c_void_p(a.data_ptr()), layout_a, ctypes.byref(beta_value),
                                ctypes.c_void_p(c.data_ptr()), layout_c, ctypes.c_void_p(out.data_ptr()),
                                layout_c, ctypes.byref(problem.algos[index]), ctypes.c_void_p(workspace.data_ptr()),
                                workspace.numel(), ctypes.c_void_p(stream)), "cublasLtMatmul")


def _median_times(calls: dict) -> dict:
    """{key: median ms} of each callable, each call timed alone, the candidates interleaved round
    by round so that clock drift does not favour the later ones. No L2 flush: run 113 timed the
    step's 768 x 768 GEMMs at ~64 us after a flush, ~31 us in the step's own profile, where their
    operands were just written (a flush ranks them by DRAM reads the step does not make). Each
    round starts behind a GPU sleep (torch.cuda._sleep) long enough for the host to queue the
    round: otherwise a 30 us GEMM's events also time the host's launch of it (run 120: 55-79 us
    against 35 replayed)."""
    for fn in calls.values():
        fn()
    torch.cuda.synchronize()
    events = {key: [] for key in calls}
    for _ in range(TIMING_ROUNDS):
        torch.cuda._sleep(SLEEP_CYCLES_PER_CALL * len(calls))
        for key, fn in calls.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            events[key].append((start, end))
    torch.cuda.synchronize()
    return {key: statistics.median(s.elapsed_time(e) for s, e in pairs) for key, pairs in events.items()}


def _choose(lt: _CublasLt, problem: _Problem, a, b, bias, out, beta, out_dtype, addend=None) -> int:
    """Times PyTorch's call and every cuBLASLt candidate on these operands, and returns the
    fastest's index (-1: PyTorch's). They write into `out`, which the real call overwrites next;
    an accumulating call (beta = 1) is timed on `out` too, its values kept in host memory
    meanwhile, so tuning allocates no GPU memory beyond the candidates' workspace."""
    saved = out.cpu() if beta else None
    workspace = torch.empty(max(problem.workspace_sizes, default=0) + 1, dtype=torch.uint8, device=a.device)
    calls = {-1: lambda: _torch_matmul(a, b, bias, out, beta, out_dtype, addend)}
    for index in range(len(problem.algos)):
        try:
            _run_algo(lt, problem, index, a, b, bias, out, beta, workspace, addend)
        except RuntimeError:            # an algorithm that refuses these operands at run time
            continue
        calls[index] = (lambda i: lambda: _run_algo(lt, problem, i, a, b, bias, out, beta, workspace, addend))(index)
    problem.times = _median_times(calls)
    if saved is not None:
        out.copy_(saved)
    best = min(problem.times, key=problem.times.get)
    return best if best != -1 and problem.times[best] < KEEP_MARGIN * problem.times[-1] else -1


def choice(a, b, bias=None, out=None, beta=0.0, out_dtype=None, addend=None) -> int | None:
    """The algorithm matmul runs for these operands: -1 for PyTorch's call, i >= 0 for cuBLASLt's
    i-th candidate, None when not yet timed (or cuBLASLt does not apply). For tests and probes."""
    out_dtype = out_dtype or (out.dtype if out is not None else a.dtype)
    if not _applies(a, b, bias, out, beta, out_dtype, addend):
        return None
    problem = _state.problems.get(_key(a, b, bias, out, beta, out_dtype, addend))
    return None if problem is None else problem.choice


def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None,
           beta: float = 0.0, out_dtype: torch.dtype | None = None, *, addend: torch.Tensor | None = None,
           tuned: bool = False, algorithm: int | None = None) -> torch.Tensor:
    """a @ b (+ bias) (+ beta * out) (+ addend), fp32 accumulation and one rounding, into `out` if
    given, else a new tensor.

    a (M, K), b (K, N): 2-D, float16 / bfloat16 (other dtypes and devices: PyTorch's call);
    bias (N,) in the output dtype; out (M, N) with contiguous rows; beta 0 or 1 (1 needs out);
    out_dtype the operands' dtype (default, or out's) or torch.float32.
    addend: (M, N) in the output dtype with the output's strides (beta 0), not modified: a
    residual added in the GEMM's epilogue (cuBLAS's C, the result its D), so no pass of its own
    reads the product back. PyTorch's call copies it into the output first (torch.addmm).
    tuned: run the problem's timed choice (timing it at its first call outside a capture), for
    callers whose launches are free (CUDA-graphed steps: not fastgpt.ops.dispatch.launch_bound());
    False is PyTorch's call with nothing else on the host: eager steps are host-bound, and this
    module's checks and ctypes call cost ~10-40 us a call there (run 117: the eager triton step
    50.6 ms with PyTorch's calls, 61.7 with the tuned ones).
    algorithm: force a candidate (-1 PyTorch's call, i >= 0 cuBLASLt's i-th; for tests).
    """
    out_dtype = out_dtype or (out.dtype if out is not None else a.dtype)
    if addend is not None and beta:
        raise ValueError("matmul: an addend and beta (accumulating into out) do not go together")
    if algorithm is None and not (tuned and enabled()):
        return _torch_matmul(a, b, bias, out, beta, out_dtype, addend)
    if not _applies(a, b, bias, out, beta, out_dtype, addend):
        return _torch_matmul(a, b, bias, out, beta, out_dtype, addend)
    lt = _state.library()
    if lt is None:
        return _torch_matmul(a, b, bias, out, beta, out_dtype, addend)
    with _state.lock:
        problem = _problem(lt, a, b, bias, out, beta, out_dtype, addend)
        if out is None:
            out = torch.empty(a.shape[0], b.shape[1], dtype=out_dtype, device=a.device)
        index = algorithm
        if index is None:
            if problem.choice is None and not torch.cuda.is_current_stream_capturing():
                problem.choice = _choose(lt, problem, a, b, bias, out, beta, out_dtype, addend)
            index = -1 if problem.choice is None else problem.choice
        if index == -1 or index >= len(problem.algos):
            return _torch_matmul(a, b, bias, out, beta, out_dtype, addend)
        _run_algo(lt, problem, index, a, b, bias, out, beta, addend=addend)
        return out


def candidates(a, b, bias=None, out=None, beta=0.0, out_dtype=None, addend=None) -> int:
    """How many cuBLASLt algorithms matmul may choose among for these operands (0 where cuBLASLt
    does not apply or is not found). For tests: each is checked against PyTorch's result."""
    out_dtype = out_dtype or (out.dtype if out is not None else a.dtype)
    lt = _state.library() if _applies(a, b, bias, out, beta, out_dtype, addend) else None
    if lt is None:
        return 0
    with _state.lock:
        return len(_problem(lt, a, b, bias, out, beta, out_dtype, addend).algos)


def tuned_problems() -> list[dict]:
    """Every problem this process has met: its key's parts, the choice and the candidates' timed
    medians in ms (-1: PyTorch's call). For benchmarks' logs."""
    rows = []
    for key, problem in _state.problems.items():
        device, a_shape, a_stride, b_shape, b_stride, dtype, out_dtype, out_strides, bias, beta, align = key
        rows.append(dict(M=a_shape[0], K=a_shape[1], N=b_shape[1], a_stride=a_stride, b_stride=b_stride,
                         dtype=str(dtype), out_dtype=str(out_dtype), bias=bias, beta=beta, align=align,
                         candidates=len(problem.algos), choice=problem.choice, times=problem.times))
    return rows
