"""Session 20, run 155: cuBLASLt's configurations beyond its heuristic's 8 for the graphed GPT-2
step's plain GEMMs. Run 154 found every candidate to be algorithm 66 (nvjet) and the per-id
heuristic search offering nothing more. Here each of the 8 heuristic configurations is varied one
attribute at a time (split-K 1-8 with the out-of-place reduction, cluster shape id 0-15, custom
option 0-15, and the tile id of each other candidate), each variant kept if
cublasLtMatmulAlgoCheck accepts it, and all timed as kernels/gemm.py times its candidates
(_median_times, best of two rounds of 9), beside the step's choice."""
import collections
import ctypes

import torch

from fastgpt.kernels import gemm as G
from bench_train_step import CONFIGS, build

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(2):
    step()
torch.cuda.synchronize()
lt = G._state.library()
lib = lt.lib
P = ctypes.c_void_p
lib.cublasLtMatmulAlgoConfigGetAttribute.argtypes = [ctypes.POINTER(G._Algo), ctypes.c_int, P, ctypes.c_size_t,
                                                      ctypes.POINTER(ctypes.c_size_t)]
lib.cublasLtMatmulAlgoConfigSetAttribute.argtypes = [ctypes.POINTER(G._Algo), ctypes.c_int, P, ctypes.c_size_t]
lib.cublasLtMatmulAlgoCheck.argtypes = [P, P, P, P, P, P, ctypes.POINTER(G._Algo), ctypes.POINTER(G._Heuristic)]
ATTRS = {"tile": (1, ctypes.c_uint32), "splitk": (2, ctypes.c_uint32), "reduction": (3, ctypes.c_uint32),
         "swizzle": (4, ctypes.c_uint32), "custom": (5, ctypes.c_uint32), "stages": (6, ctypes.c_uint32),
         "cluster": (8, ctypes.c_uint16)}


def get(algo, name):
    attr, ctype = ATTRS[name]
    v, n = ctype(0), ctypes.c_size_t(0)
    lib.cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), attr, ctypes.byref(v), ctypes.sizeof(v), ctypes.byref(n))
    return v.value


def describe(algo):
    return {name: get(algo, name) for name in ATTRS}


def variant(algo, **changes):
    new = G._Algo.from_buffer_copy(bytes(algo))
    for name, value in changes.items():
        attr, ctype = ATTRS[name]
        v = ctype(value)
        if lib.cublasLtMatmulAlgoConfigSetAttribute(ctypes.byref(new), attr, ctypes.byref(v), ctypes.sizeof(v)) != 0:
            return None
    return new


total_saving = 0.0
for key, problem in list(G._state.problems.items()):
    device, a_shape, a_stride, b_shape, b_stride, dtype, out_dtype, out_strides, has_bias, beta, align = key
    a = torch.empty_strided(a_shape, a_stride, dtype=dtype, device="cuda").normal_()
    b = torch.empty_strided(b_shape, b_stride, dtype=dtype, device="cuda").normal_()
    out = torch.empty_strided((a_shape[0], b_shape[1]), out_strides, dtype=out_dtype, device="cuda").normal_()
    bias = torch.randn(b_shape[1], dtype=out_dtype, device="cuda") if has_bias else None
    if bias is not None:
        lt.set_attribute(lib.cublasLtMatmulDescSetAttribute, problem.desc, G._DESC_BIAS_POINTER,
                         ctypes.c_void_p(bias.data_ptr()))
    base = list(problem.algos)
    tiles = sorted({get(x, "tile") for x in base})
    seen = {bytes(x) for x in base}
    extra, sizes = [], []
    lb, la, lc = problem.layouts
    for algo in base:
        tries = ([dict(splitk=s, reduction=(0 if s == 1 else 2)) for s in range(1, 9)]
                 + [dict(cluster=c) for c in range(16)] + [dict(custom=c) for c in range(16)]
                 + [dict(tile=t) for t in tiles])
        for change in tries:
            new = variant(algo, **change)
            if new is None or bytes(new) in seen:
                continue
            seen.add(bytes(new))
            result = G._Heuristic()
            if lib.cublasLtMatmulAlgoCheck(lt.handle, problem.desc, lb, la, lc, lc, ctypes.byref(new),
                                           ctypes.byref(result)) != 0 or result.workspace_size > G.WORKSPACE_BYTES:
                continue
            extra.append(new)
            sizes.append(result.workspace_size)
    n_default = len(base)
    problem.algos = base + extra
    problem.workspace_sizes = problem.workspace_sizes + sizes
    ws = torch.empty(max(problem.workspace_sizes, default=0) + 1, dtype=torch.uint8, device="cuda")
    ref = G._torch_matmul(a, b, bias, out.clone(), beta, out_dtype).float()
    calls, wrong = {-1: lambda: G._torch_matmul(a, b, bias, out, beta, out_dtype)}, 0
    for i in range(len(problem.algos)):
        try:
            if beta:
                out.copy_(ref)      # any values: timing only; correctness checked at beta 0
            G._run_algo(lt, problem, i, a, b, bias, out, beta, ws)
            torch.cuda.synchronize()
        except RuntimeError:
            continue
        if not beta and not torch.allclose(out.float(), ref, rtol=2e-2, atol=1e-1):
            wrong += 1
            continue
        calls[i] = (lambda j: lambda: G._run_algo(lt, problem, j, a, b, bias, out, beta, ws))(i)
    t1 = G._median_times(calls)
    t2 = G._median_times(calls)
    t = {k: min(t1[k], t2[k]) for k in t1}
    chosen = problem.choice if problem.choice is not None else -1
    best = min(t, key=t.get)
    calls_a_step = (3 if beta else 1) if a_shape[0] == 50304 else 4 if 50304 in (a_shape[1], b_shape[1]) else 12
    saving = (t[chosen] - t[best]) * 1e3 * calls_a_step
    total_saving += saving
    print(f"M={a_shape[0]} K={a_shape[1]} N={b_shape[1]} out {str(out_dtype)[6:]} bias={has_bias} beta={beta}: "
          f"{n_default} + {len(extra)} checked ({len(calls) - 1} ran, {wrong} wrong); torch {t[-1]*1e3:.1f} us, "
          f"step's choice {t[chosen]*1e3:.1f} {describe(problem.algos[chosen]) if chosen >= 0 else 'torch'}; "
          f"best {t[best]*1e3:.1f} {describe(problem.algos[best]) if best >= 0 else 'torch'}; "
          f"x{calls_a_step} a step: {saving:.1f} us", flush=True)
print(f"total saving a step if these times held in the step: {total_saving:.0f} us")
