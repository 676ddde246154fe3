"""Session 28, run 212 (on the GPU): the MLP forward's Gluon kernel in 2-CTA clusters sharing the A
tile by TMA multicast (.run212-build.py, Triton 3.9 ahead of time) against the same file without
clusters and against the tree's kernel (JIT-compiled here by 3.6), at the step's shape (16384 x 768
-> 3072, codes): outputs compared with the tree's; CUDA-graph replays of 10 calls, three
alternating rounds, min. Launched through the driver API (runs 210-211's launcher, with a cluster
dimension)."""
import ctypes
import json
import os

import torch
import triton
import triton.testing

from fastgpt.kernels import mlp_gluon as tree

AOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run212-aot")
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


M, C, H = 16384, 768, 3072
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
sms = torch.cuda.get_device_properties(0).multi_processor_count
x = torch.randn(M, C, device=dev, dtype=bf)
w_fc = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device=dev) * 0.5).to(bf)
outs = {who: (torch.full((M, H), float("nan"), device=dev, dtype=bf), torch.full((M, H), 255, device=dev, dtype=torch.uint8))
        for who in ("tree", "fwd1", "fwd2")}
calls = {"fwd tree (3.6)": lambda: tree.launch_linear_gelu(x, w_fc, b_fc, *outs["tree"])}
for tag in ("fwd1", "fwd2"):
    k = AotKernel(tag)
    bn = k.meta["block_n"]
    clusters = min(triton.cdiv(M, 128) * triton.cdiv(H, bn), sms // k.meta["num_ctas"])
    h, code = outs[tag]
    calls[f"{tag} aot (3.9)"] = k.bind(clusters, [x, w_fc, h, code, code],
                                       [ctypes.c_uint64(b_fc.data_ptr()), ctypes.c_uint64(h.data_ptr()),
                                        ctypes.c_int32(M), ctypes.c_int32(H), ctypes.c_int32(C)])
for name, fn in calls.items():
    fn()
    torch.cuda.synchronize()
    print(f"RAN {name}", flush=True)
th, tc = outs["tree"]
for tag in ("fwd1", "fwd2"):
    h, code = outs[tag]
    print(f"CHECK {tag}: h equal {(h == th).float().mean().item():.6f}, codes equal {(code == tc).float().mean().item():.6f}, "
          f"unwritten h {int(torch.isnan(h).sum())} codes {int((code == 255).sum())}", flush=True)
timers = {name: graphed(fn) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, tm in timers.items():
        results.setdefault(name, []).append(tm())
for name, ts in results.items():
    print(f"RESULT {name:16s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
