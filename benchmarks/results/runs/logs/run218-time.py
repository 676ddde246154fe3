"""Session 28, run 218 (on the GPU): the LM head's exp GEMM with the weight tile shared by a CTA pair
through TMA multicast (.run218_exp_mc.py, Triton 3.9 ahead of time: exp2 with 5 slots, exp2s4 with
4) against the same kernel one CTA a program (exp1), the tree's kernel (3.6 JIT here) and cuBLAS's
plain GEMM of the shape (8192 x 768 -> 50304): outputs against the tree's; CUDA-graph replays of
3 calls, three alternating rounds, min."""
import ctypes
import json
import os

import torch
import triton
import triton.testing

from fastgpt.kernels import gemm
from fastgpt.kernels import mlp_gluon as tree

AOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run218-aot")
cuda = ctypes.CDLL("libcuda.so.1")


def check(res, what):
    if res != 0:
        msg = ctypes.c_char_p()
        cuda.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA error {res} {msg.value}")


class CUtensorMap(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_uint64 * 16)]


class ClusterDim(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


class LaunchAttrValue(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 64), ("clusterDim", ClusterDim)]


class LaunchAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", LaunchAttrValue)]


class LaunchConfig(ctypes.Structure):
    _fields_ = [("gridDimX", ctypes.c_uint), ("gridDimY", ctypes.c_uint), ("gridDimZ", ctypes.c_uint),
                ("blockDimX", ctypes.c_uint), ("blockDimY", ctypes.c_uint), ("blockDimZ", ctypes.c_uint),
                ("sharedMemBytes", ctypes.c_uint), ("hStream", ctypes.c_void_p),
                ("attrs", ctypes.c_void_p), ("numAttrs", ctypes.c_uint)]


HOST_DTYPE = {6: 6, 8: 10, 9: 8, 10: 9}     # Triton's device TMA dtype enum -> CUtensorMapDataType


class AotKernel:
    def __init__(self, tag):
        self.meta = json.load(open(os.path.join(AOT, f"{tag}.json")))
        self.module, self.func = ctypes.c_void_p(), ctypes.c_void_p()
        check(cuda.cuModuleLoadData(ctypes.byref(self.module), open(os.path.join(AOT, f"{tag}.cubin"), "rb").read()),
              "cuModuleLoadData")
        check(cuda.cuModuleGetFunction(ctypes.byref(self.func), self.module, self.meta["name"].encode()), "cuModuleGetFunction")
        check(cuda.cuFuncSetAttribute(self.func, 8, self.meta["shared"]), "cuFuncSetAttribute")
        self.keep = []

    def descriptor(self, t, meta):
        raw = ctypes.create_string_buffer(192)
        self.keep.append(raw)
        m = CUtensorMap.from_address((ctypes.addressof(raw) + 63) & ~63)
        rank = t.dim()
        check(cuda.cuTensorMapEncodeTiled(
            ctypes.byref(m), HOST_DTYPE.get(meta["elem_type"], meta["elem_type"]), rank, ctypes.c_void_p(t.data_ptr()),
            (ctypes.c_uint64 * rank)(*reversed(t.shape)),
            (ctypes.c_uint64 * rank)(*[s * t.element_size() for s in reversed(t.stride()[:-1])], 0),
            (ctypes.c_uint32 * rank)(*reversed(meta["block_size"])), (ctypes.c_uint32 * rank)(*[1] * rank),
            0, meta["swizzle"], 2, 0), "cuTensorMapEncodeTiled")
        return [m, ctypes.c_int32(t.shape[0]), ctypes.c_int32(t.shape[1]), ctypes.c_int64(t.stride(0)), ctypes.c_int64(1)]

    def bind(self, grid, descs, scalars):
        """A launch closure: descs the tensors behind each descriptor (in order), scalars the rest
        ((ctypes value)...); the parameters are encoded once (pointers fixed, as in a CUDA graph)."""
        values = []
        for t, meta in zip(descs, self.meta["tensordesc_meta"]):
            values += self.descriptor(t, meta)
        values += list(scalars) + [ctypes.c_uint64(0), ctypes.c_uint64(0)]
        self.keep.append(values)
        params = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values])
        self.keep.append(params)
        meta = self.meta
        ctas = meta["num_ctas"]
        attrs = (LaunchAttr * 1)()
        attrs[0].id = 4                                   # CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
        attrs[0].value.clusterDim = ClusterDim(ctas, 1, 1)
        self.keep.append(attrs)

        def launch():
            config = LaunchConfig(grid * ctas, 1, 1, 32 * meta["num_warps"], 1, 1, meta["shared"],
                                  ctypes.c_void_p(torch.cuda.current_stream().cuda_stream),
                                  ctypes.cast(attrs, ctypes.c_void_p) if ctas > 1 else None, 1 if ctas > 1 else 0)
            check(cuda.cuLaunchKernelEx(ctypes.byref(config), self.func, params, None), "cuLaunchKernelEx")
        return launch


def graphed(fn, n=10):
    fn(); torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return lambda: triton.testing.do_bench(g.replay, warmup=50, rep=300, return_mode="median") / n * 1e3


R, C, V = 8192, 768, 50304
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
sms = torch.cuda.get_device_properties(0).multi_processor_count
xl = torch.randn(R, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
shift = torch.randn(R, device=dev) * 0.5
nblk = triton.cdiv(V, 128)
outs = {who: (torch.full((R, V), float("nan"), device=dev, dtype=bf), torch.full((R, nblk), float("nan"), device=dev))
        for who in ("tree", "exp1", "exp2", "exp2s4")}
plain = torch.empty(R, V, device=dev, dtype=bf)
calls = {"exp tree (3.6)": lambda: tree.launch_linear_exp(xl, wte, shift, *outs["tree"], 70.0)}
for tag in ("exp1", "exp2", "exp2s4"):
    k = AotKernel(tag)
    bm = k.meta["block_m"]
    clusters = min(triton.cdiv(R, bm) * nblk, sms // k.meta["num_ctas"])
    e, sums = outs[tag]
    calls[f"{tag} aot (3.9)"] = k.bind(clusters, [xl, wte, e],
                                       [ctypes.c_uint64(shift.data_ptr()), ctypes.c_uint64(sums.data_ptr()),
                                        ctypes.c_int32(R), ctypes.c_int32(V), ctypes.c_int32(C)])
calls["cuBLAS plain"] = lambda: gemm.matmul(xl, wte.t(), out=plain, tuned=True)
for name, fn in calls.items():
    fn()
    torch.cuda.synchronize()
    print(f"RAN {name}", flush=True)
te, ts = outs["tree"]
for tag in ("exp1", "exp2", "exp2s4"):
    e, sums = outs[tag]
    print(f"CHECK {tag}: e equal {(e == te).float().mean().item():.6f}, sums max rel diff "
          f"{((sums - ts).abs() / ts.abs().clamp_min(1e-30)).max().item():.3e}, unwritten e {int(torch.isnan(e).sum())} "
          f"sums {int(torch.isnan(sums).sum())}", flush=True)
timers = {name: graphed(fn, n=3) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, tm in timers.items():
        results.setdefault(name, []).append(tm())
for name, tms in results.items():
    print(f"RESULT {name:16s} " + " ".join(f"{v:7.1f}" for v in tms) + f"   min {min(tms):.1f} us", flush=True)
