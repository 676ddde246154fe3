"""Session 28, run 211 (on the GPU): kernels/mlp_gluon.py's kernel as Triton 3.9 compiled it ahead of
time (.run211-build.py) against the same kernel JIT-compiled here by the GPU's Triton 3.6 (the tree),
at the step's shapes: the MLP forward (codes), the backward (codes, bias partials), the LM head's
exp GEMM (an 8192-row chunk). Launched through the driver API (run 210's launcher); outputs compared
with the tree's; CUDA-graph replays of 10 calls (3 for the exp GEMM), three alternating rounds, min."""
import ctypes
import json
import os

import torch
import triton
import triton.testing

from fastgpt.kernels import mlp_gluon as tree

AOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run211-aot")
cuda = ctypes.CDLL("libcuda.so.1")


def check(res, what):
    if res != 0:
        msg = ctypes.c_char_p()
        cuda.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA error {res} {msg.value}")


class CUtensorMap(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_uint64 * 16)]


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

        def launch():
            config = LaunchConfig(grid, 1, 1, 32 * meta["num_warps"], 1, 1, meta["shared"],
                                  ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), None, 0)
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


M, C, H, V, R = 16384, 768, 3072, 50304, 8192
bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
sms = torch.cuda.get_device_properties(0).multi_processor_count
x = torch.randn(M, C, device=dev, dtype=bf)
w_fc = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b_fc = (torch.randn(H, device=dev) * 0.5).to(bf)
w_proj = (torch.randn(C, H, device=dev) * H ** -0.5).to(bf)
dy = torch.randn(M, C, device=dev, dtype=bf)
wte = (torch.randn(V, C, device=dev) * 0.02).to(bf)
xl = torch.randn(R, C, device=dev, dtype=bf)
shift = torch.randn(R, device=dev) * 0.5
outs = {}
for who in ("tree", "aot"):
    outs[who] = dict(h=torch.full((M, H), float("nan"), device=dev, dtype=bf),
                     code=torch.full((M, H), 255, device=dev, dtype=torch.uint8),
                     dpre=torch.full((M, H), float("nan"), device=dev, dtype=bf),
                     parts=torch.full((tree.partial_rows(M), H), float("nan"), device=dev),
                     e=torch.full((R, V), float("nan"), device=dev, dtype=bf),
                     sums=torch.full((R, triton.cdiv(V, tree.BLOCK_N)), float("nan"), device=dev))
code_in = torch.randint(0, 255, (M, H), device=dev, dtype=torch.uint8)   # the backward's codes (shared)
t, a = outs["tree"], outs["aot"]
grid = lambda m, n: min(triton.cdiv(m, 128) * triton.cdiv(n, tree.BLOCK_N), sms)  # noqa: E731
i32 = ctypes.c_int32
fwd, bwd, exp = AotKernel("fwd"), AotKernel("bwd"), AotKernel("exp")
calls = {
    "fwd tree (3.6)": lambda: tree.launch_linear_gelu(x, w_fc, b_fc, t["h"], t["code"]),
    "fwd aot (3.9)": fwd.bind(grid(M, H), [x, w_fc, a["h"], a["code"], a["code"]],
                              [ctypes.c_uint64(b_fc.data_ptr()), ctypes.c_uint64(a["h"].data_ptr()), i32(M), i32(H), i32(C)]),
    "bwd tree (3.6)": lambda: tree.launch_matmul_gelu_grad(dy, w_proj, code_in, t["dpre"], t["parts"]),
    "bwd aot (3.9)": bwd.bind(grid(M, H), [dy, w_proj, a["dpre"], a["dpre"], code_in],
                              [ctypes.c_uint64(a["dpre"].data_ptr()), ctypes.c_uint64(a["parts"].data_ptr()), i32(M), i32(H), i32(C)]),
    "exp tree (3.6)": lambda: tree.launch_linear_exp(xl, wte, shift, t["e"], t["sums"], 70.0),
    "exp aot (3.9)": exp.bind(grid(R, V), [xl, wte, a["e"], a["e"], a["e"]],
                              [ctypes.c_uint64(shift.data_ptr()), ctypes.c_uint64(a["sums"].data_ptr()), i32(R), i32(V), i32(C)]),
}
for fn in calls.values():
    fn()
torch.cuda.synchronize()
for k in t:
    same = (t[k] == a[k]) | (torch.isnan(t[k].float()) & torch.isnan(a[k].float()))
    print(f"CHECK {k}: equal {same.float().mean().item():.6f}, max |diff| {(t[k].float() - a[k].float()).abs().nan_to_num(0).max().item():.3e}, "
          f"unwritten tree {int(torch.isnan(t[k].float()).sum()) if k != 'code' else int((t[k] == 255).sum())} "
          f"aot {int(torch.isnan(a[k].float()).sum()) if k != 'code' else int((a[k] == 255).sum())}", flush=True)
timers = {name: graphed(fn, n=3 if name.startswith("exp") else 10) for name, fn in calls.items()}
results = {}
for rnd in range(3):
    for name, tm in timers.items():
        results.setdefault(name, []).append(tm())
for name, ts in results.items():
    print(f"RESULT {name:16s} " + " ".join(f"{v:7.1f}" for v in ts) + f"   min {min(ts):.1f} us", flush=True)
