"""Session 28, run 210 (on the GPU): launch the cubin .run210-build.py compiled ahead of time with
Triton 3.9 (a 2-CTA cluster, TMA multicast) through the CUDA driver API by ctypes, as fastgpt would
on a machine whose Triton is older: the descriptor encoded here (cuTensorMapEncodeTiled with the
compile's metadata), the parameters laid out as Triton 3.9's launcher does (each descriptor a
128-byte CUtensorMap, its shape (i32) and strides (i64); then the global and profile scratch
pointers), cuLaunchKernelEx with a cluster dimension on torch's stream; eagerly and inside a CUDA
graph."""
import ctypes
import json
import os

import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run210-aot")
cuda = ctypes.CDLL("libcuda.so.1")


def check(res, what):
    if res != 0:
        msg = ctypes.c_char_p()
        cuda.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA error {res} {msg.value}")


class CUtensorMap(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_uint64 * 16)]


_keep = []


def aligned_tensor_map() -> CUtensorMap:
    """A CUtensorMap at a 64-byte aligned address (cuTensorMapEncodeTiled requires it)."""
    raw = ctypes.create_string_buffer(128 + 64)
    _keep.append(raw)
    return CUtensorMap.from_address((ctypes.addressof(raw) + 63) & ~63)


class ClusterDim(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


class LaunchAttrValue(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 64), ("clusterDim", ClusterDim), ("u32", ctypes.c_uint)]


class LaunchAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", LaunchAttrValue)]


class LaunchConfig(ctypes.Structure):
    _fields_ = [("gridDimX", ctypes.c_uint), ("gridDimY", ctypes.c_uint), ("gridDimZ", ctypes.c_uint),
                ("blockDimX", ctypes.c_uint), ("blockDimY", ctypes.c_uint), ("blockDimZ", ctypes.c_uint),
                ("sharedMemBytes", ctypes.c_uint), ("hStream", ctypes.c_void_p),
                ("attrs", ctypes.POINTER(LaunchAttr)), ("numAttrs", ctypes.c_uint)]


CLUSTER_DIMENSION, CLUSTER_SCHEDULING_POLICY, SPREAD = 4, 5, 1
MAX_DYNAMIC_SHARED = 8
L2_PROMOTION_128B = 2
assert ctypes.sizeof(LaunchAttr) == 72 and ctypes.sizeof(LaunchConfig) == 56 and ctypes.sizeof(CUtensorMap) == 128


def encode_tiled(t: torch.Tensor, meta: dict) -> CUtensorMap:
    rank = t.dim()
    desc = aligned_tensor_map()
    dims = (ctypes.c_uint64 * rank)(*reversed(t.shape))
    strides = (ctypes.c_uint64 * rank)(*[s * t.element_size() for s in reversed(t.stride()[:-1])], 0)
    box = (ctypes.c_uint32 * rank)(*reversed(meta["block_size"]))
    elem = (ctypes.c_uint32 * rank)(*[1] * rank)
    check(cuda.cuTensorMapEncodeTiled(ctypes.byref(desc), meta["elem_type"], rank, ctypes.c_void_p(t.data_ptr()),
                                      dims, strides, box, elem, 0, meta["swizzle"], L2_PROMOTION_128B, 0),
          "cuTensorMapEncodeTiled")
    return desc


def main():
    meta = json.load(open(os.path.join(HERE, "kernel.json")))
    cubin = open(os.path.join(HERE, "kernel.cubin"), "rb").read()
    torch.cuda.init()
    torch.empty(1, device="cuda")                       # a current context (torch's primary one)
    module, func = ctypes.c_void_p(), ctypes.c_void_p()
    check(cuda.cuModuleLoadData(ctypes.byref(module), cubin), "cuModuleLoadData")
    check(cuda.cuModuleGetFunction(ctypes.byref(func), module, meta["name"].encode()), "cuModuleGetFunction")
    check(cuda.cuFuncSetAttribute(func, MAX_DYNAMIC_SHARED, meta["shared"]), "cuFuncSetAttribute")

    tile = 128
    x = torch.randn(tile, tile, device="cuda", dtype=torch.float16)
    out = torch.full((tile, tile), float("nan"), device="cuda", dtype=torch.float16)
    desc = encode_tiled(x, meta["tensordesc_meta"][0])
    # the parameters, each a pointer to its value (kept alive here)
    values = [desc, ctypes.c_int32(tile), ctypes.c_int32(tile), ctypes.c_int64(tile), ctypes.c_int64(1),
              ctypes.c_uint64(out.data_ptr()), ctypes.c_int32(out.stride(0)), ctypes.c_uint64(0), ctypes.c_uint64(0)]
    params = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values])
    attrs = (LaunchAttr * 2)()
    attrs[0].id = CLUSTER_DIMENSION
    attrs[0].value.clusterDim = ClusterDim(meta["num_ctas"], 1, 1)
    attrs[1].id = CLUSTER_SCHEDULING_POLICY
    attrs[1].value.u32 = SPREAD

    def launch():
        config = LaunchConfig(1 * meta["num_ctas"], 1, 1, 32 * meta["num_warps"], 1, 1, meta["shared"],
                              ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), attrs, 2)
        check(cuda.cuLaunchKernelEx(ctypes.byref(config), func, params, None), "cuLaunchKernelEx")

    launch()
    torch.cuda.synchronize()
    print(f"EAGER out == x + 1: {torch.equal(out, x + 1)}, unwritten {int(torch.isnan(out).sum())}", flush=True)

    out.fill_(float("nan"))
    x2 = torch.randn_like(x)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph):
            launch()
    x.copy_(x2)
    graph.replay()
    torch.cuda.synchronize()
    print(f"GRAPH replay reads the new x: {torch.equal(out, x2 + 1)}, unwritten {int(torch.isnan(out).sum())}", flush=True)
    print(f"triton here {__import__('triton').__version__}, kernel compiled by {meta['triton']}, device "
          f"{torch.cuda.get_device_name()}", flush=True)


if __name__ == "__main__":
    main()
