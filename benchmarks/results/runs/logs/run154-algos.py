"""Session 20, run 154: a wider search of cuBLASLt's algorithms for every plain GEMM the graphed
GPT-2 step runs (kernels/gemm.py's problems, met in two steps). gemm.py times the 8 candidates
cuBLASLt's heuristic ranks first over all algorithm ids; here the heuristic is asked again once
per algorithm id (CUBLASLT_MATMUL_PREF_SEARCH_MODE = CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID, up to 32
configurations each), and every candidate is timed as gemm.py times them (_median_times: eager
calls behind a GPU sleep, interleaved, median of 9) beside PyTorch's call and the step's choice.
Printed per problem: the step's choice and time, the best of the wider search with its
configuration (algo id, tile, split-K, stages, cluster), and the saving a step (x calls a step)."""
import ctypes
import collections

import torch

from fastgpt.kernels import gemm as G
from bench_train_step import CONFIGS, build

model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(2):
    step()
torch.cuda.synchronize()
lt = G._state.library()
lib = lt.lib
p, i32 = ctypes.c_void_p, ctypes.c_int
lib.cublasLtMatmulAlgoGetIds.argtypes = [p, i32, i32, i32, i32, i32, i32, i32, ctypes.POINTER(i32), ctypes.POINTER(i32)]
lib.cublasLtMatmulAlgoInit.argtypes = [p, i32, i32, i32, i32, i32, i32, i32, ctypes.POINTER(G._Algo)]
lib.cublasLtMatmulAlgoConfigGetAttribute.argtypes = [ctypes.POINTER(G._Algo), i32, p, ctypes.c_size_t,
                                                      ctypes.POINTER(ctypes.c_size_t)]
CONFIG_ATTRS = {"id": (0, ctypes.c_int32), "tile": (1, ctypes.c_uint32), "splitk": (2, ctypes.c_uint32),
                "reduction": (3, ctypes.c_uint32), "swizzle": (4, ctypes.c_uint32), "custom": (5, ctypes.c_uint32),
                "stages": (6, ctypes.c_uint32), "inner": (7, ctypes.c_uint16), "cluster": (8, ctypes.c_uint16)}


def describe(algo):
    out = {}
    for name, (attr, ctype) in CONFIG_ATTRS.items():
        v, n = ctype(0), ctypes.c_size_t(0)
        if lib.cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), attr, ctypes.byref(v), ctypes.sizeof(v),
                                                    ctypes.byref(n)) == 0:
            out[name] = v.value
    return out


def wider(problem, key):
    dtype, out_dtype, align = key[5], key[6], key[-1]
    types = (G._CUDA_TYPES[dtype], G._CUDA_TYPES[dtype], G._CUDA_TYPES[out_dtype], G._CUDA_TYPES[out_dtype])
    ids, n = (i32 * 256)(), i32(0)
    lt.check(lib.cublasLtMatmulAlgoGetIds(lt.handle, G._COMPUTE_32F, G._R_32F, *types, 256, ids, ctypes.byref(n)),
             "GetIds")
    found_algos, sizes, seen = [], [], set(bytes(a) for a in problem.algos)
    for algo_id in ids[:n.value]:
        results = (G._Heuristic * 32)()
        if lib.cublasLtMatmulAlgoInit(lt.handle, G._COMPUTE_32F, G._R_32F, *types, algo_id,
                                      ctypes.byref(results[0].algo)) != 0:
            continue
        pref = ctypes.c_void_p()
        lt.check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "pref")
        set_pref = lib.cublasLtMatmulPreferenceSetAttribute
        lt.set_attribute(set_pref, pref, 0, ctypes.c_uint32(1))   # SEARCH_LIMITED_BY_ALGO_ID
        lt.set_attribute(set_pref, pref, G._PREF_MAX_WORKSPACE_BYTES, ctypes.c_uint64(G.WORKSPACE_BYTES))
        for attribute in G._PREF_MIN_ALIGNMENT:
            lt.set_attribute(set_pref, pref, attribute, ctypes.c_uint32(align))
        got = i32(0)
        lb, la, lc = problem.layouts
        status = lib.cublasLtMatmulAlgoGetHeuristic(lt.handle, problem.desc, lb, la, lc, lc, pref, 32, results,
                                                    ctypes.byref(got))
        lib.cublasLtMatmulPreferenceDestroy(pref)
        if status != 0:
            continue
        for r in results[:got.value]:
            if r.state == 0 and r.workspace_size <= G.WORKSPACE_BYTES and bytes(r.algo) not in seen:
                seen.add(bytes(r.algo))
                found_algos.append(r.algo)
                sizes.append(r.workspace_size)
    return [x for x in ids[:n.value]], found_algos, sizes


calls_a_step = collections.Counter()
_run = G._run_algo
for key, problem in list(G._state.problems.items()):
    device, a_shape, a_stride, b_shape, b_stride, dtype, out_dtype, out_strides, has_bias, beta, align = key
    a = torch.empty_strided(a_shape, a_stride, dtype=dtype, device="cuda").normal_()
    b = torch.empty_strided(b_shape, b_stride, dtype=dtype, device="cuda").normal_()
    out = torch.empty_strided((a_shape[0], b_shape[1]), out_strides, dtype=out_dtype, device="cuda").normal_()
    bias = torch.randn(b_shape[1], dtype=out_dtype, device="cuda") if has_bias else None
    ids, extra, sizes = wider(problem, key)
    n_default = len(problem.algos)
    problem.algos = problem.algos + extra
    problem.workspace_sizes = problem.workspace_sizes + sizes
    ws = torch.empty(max(problem.workspace_sizes, default=0) + 1, dtype=torch.uint8, device="cuda")
    calls = {-1: lambda: G._torch_matmul(a, b, bias, out, beta, out_dtype)}
    for i in range(len(problem.algos)):
        try:
            _run(lt, problem, i, a, b, bias, out, beta, ws)
        except RuntimeError:
            continue
        calls[i] = (lambda j: lambda: _run(lt, problem, j, a, b, bias, out, beta, ws))(i)
    times = G._median_times(calls)
    times2 = G._median_times(calls)
    t = {k: min(times[k], times2[k]) for k in times}
    chosen = problem.choice if problem.choice is not None else -1
    best = min(t, key=t.get)
    best_default = min((k for k in t if k < n_default), key=t.get)
    flops = 2 * a_shape[0] * a_shape[1] * b_shape[1]
    print(f"M={a_shape[0]} K={a_shape[1]} N={b_shape[1]} a{a_stride} b{b_stride} out {str(out_dtype)[6:]} "
          f"bias={has_bias} beta={beta}: ids {len(ids)}, candidates {n_default} + {len(extra)}; "
          f"torch {t[-1]*1e3:.1f} us, step's choice [{chosen}] {t[chosen]*1e3:.1f}, best of 8 [{best_default}] "
          f"{t[best_default]*1e3:.1f}, best wider [{best}] {t[best]*1e3:.1f} us ({flops / t[best] / 1e9:.0f} TFLOP/s) "
          f"{describe(problem.algos[best]) if best >= 0 else 'torch'}; step's choice "
          f"{describe(problem.algos[chosen]) if chosen >= 0 else 'torch'}", flush=True)
    top = sorted(t, key=t.get)[:5]
    print("   top5:", [(k, round(t[k] * 1e3, 1), describe(problem.algos[k]) if k >= 0 else "torch") for k in top],
          flush=True)
