"""A captured CUDA graph's small memset nodes, rewritten as kernel nodes before it is instantiated.

Why. cuBLAS zeroes a 4-byte word (its tile scheduler's counter, presumably) before most GEMMs of
the training step with M = 16384 rows: PyTorch's call and every algorithm cuBLASLt's heuristic
offers for those shapes do it (run 123), 77 of the step's ~440 graph nodes; the radix sort of the
embedding backward adds 4 more (4 KB each). Replayed in the graph (run 122's timeline, one H100),
each costs ~5 us: the memset itself ~0.7 us, ~1.5 us of idle before it and ~3 us after, where two
kernels in a row leave ~0.4 us between them. Over the step that was 0.42 ms of its 0.60 ms of
gaps. A memset node is carried out apart from the kernels (a copy engine's work, by the gaps);
a kernel node that writes the same words runs on the SMs, like its neighbours.

How. After capture and before instantiation (torch.cuda.CUDAGraph(keep_graph=True)), through the
CUDA driver API (libcuda, ctypes): every 1-D memset node whose bytes are whole aligned 32-bit
words, at most MAX_BYTES, is replaced by a launch of a one-block kernel (PTX below, loaded once
per device) that stores the same word pattern, with the memset's dependencies and dependents.
Where the memset sits between one of fastgpt's kernels and a cuBLAS GEMM, its fill node depends
on what that kernel depends on instead, so the two run side by side; the GEMM waits for both.
That is safe because fastgpt's kernels touch only the tensors they are given and the word is
cuBLAS's (a workspace held for the process); a word inside memory the caching allocator could
hand out again keeps the fill in place.

Measured (H100s, runs 124-136): the step's graph 82 memsets rewritten, 26.47-26.52 ms a step
against 26.63-26.70 as captured (run 124, alternating processes), medians 26.65 against 26.77 over
six pairs on another machine (run 136); idle time plus fills inside the graph
259-276 us a step with each fill in place, 186-197 with the fills beside the kernels before them
(kernel timelines, run 125; too small for the processes' A/B to resolve, run 135), 600 us of gaps
as captured (run 122).

Limits. CUDA only; needs torch's keep_graph (torch >= 2.6) and the driver's graph-editing calls;
where either is missing, or FASTGPT_GRAPH_MEMSETS=0, the graph is left as captured
(FASTGPT_GRAPH_MEMSETS=inline: rewritten, each fill in its memset's place). Memsets of 2-D
regions, unaligned or odd sizes, or more than MAX_BYTES stay memset nodes.
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch

MAX_BYTES = 1 << 20          # larger memsets keep their node: a copy engine's bandwidth is fine there
BLOCK = 256                  # the kernel's one block; it loops over the words
_NODE_KERNEL, _NODE_MEMSET = 0, 2       # CUgraphNodeType

# fill_words(dst, word, nwords): dst[i] = word for i < nwords, by one block of BLOCK threads
_PTX_SOURCE = """
.version 7.0
.target sm_70
.address_size 64
.visible .entry fastgpt_fill_words(.param .u64 dst, .param .u32 word, .param .u64 nwords)
{
    .reg .pred %p;
    .reg .b32 %r<3>;
    .reg .b64 %rd<6>;
    ld.param.u64 %rd1, [dst];
    ld.param.u32 %r1, [word];
    ld.param.u64 %rd2, [nwords];
    cvta.to.global.u64 %rd1, %rd1;
    mov.u32 %r2, %tid.x;
    cvt.u64.u32 %rd3, %r2;
LOOP:
    setp.ge.u64 %p, %rd3, %rd2;
    @%p bra DONE;
    shl.b64 %rd4, %rd3, 2;
    add.s64 %rd5, %rd1, %rd4;
    st.global.u32 [%rd5], %r1;
    add.s64 %rd3, %rd3, BLOCK_THREADS;
    bra LOOP;
DONE:
    ret;
}
"""
_PTX = _PTX_SOURCE.replace("BLOCK_THREADS", str(BLOCK)).encode()


class _MemsetParams(ctypes.Structure):          # CUDA_MEMSET_NODE_PARAMS
    _fields_ = [("dst", ctypes.c_uint64), ("pitch", ctypes.c_size_t), ("value", ctypes.c_uint),
                ("element_size", ctypes.c_uint), ("width", ctypes.c_size_t), ("height", ctypes.c_size_t)]


class _KernelParams(ctypes.Structure):          # CUDA_KERNEL_NODE_PARAMS (v1)
    _fields_ = [("func", ctypes.c_void_p), ("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("shared_mem_bytes", ctypes.c_uint), ("kernel_params", ctypes.POINTER(ctypes.c_void_p)),
                ("extra", ctypes.POINTER(ctypes.c_void_p))]


def enabled() -> bool:
    """Whether captured graphs get their memsets rewritten (FASTGPT_GRAPH_MEMSETS=0: left as captured)."""
    return os.environ.get("FASTGPT_GRAPH_MEMSETS", "1") not in ("0", "")


def hoisting() -> bool:
    """Whether a fill node may run beside the fastgpt kernel before it (FASTGPT_GRAPH_MEMSETS=inline:
    each fill where its memset was)."""
    return os.environ.get("FASTGPT_GRAPH_MEMSETS", "1") != "inline"


def supported() -> bool:
    """Whether this torch can keep a captured graph uninstantiated for editing."""
    try:
        torch.cuda.CUDAGraph(keep_graph=True)
    except (TypeError, RuntimeError):
        return False
    return True


def fill_word(params: _MemsetParams) -> tuple[int, int] | None:
    """(32-bit word, number of words) that write what the memset writes, or None when the memset is
    not a 1-D run of whole aligned words of at most MAX_BYTES."""
    size = params.element_size * params.width
    if params.height != 1 or params.element_size not in (1, 2, 4) or size % 4 or params.dst % 4 or size > MAX_BYTES:
        return None
    value = params.value & ((1 << (8 * params.element_size)) - 1)
    word = {1: value * 0x01010101, 2: value * 0x00010001, 4: value}[params.element_size]
    return word, size // 4


class _Driver:
    """libcuda's graph-editing calls (the pre-12.3 signatures, which every newer driver keeps)."""

    def __init__(self):
        lib = ctypes.CDLL("libcuda.so.1")
        p, pp, sz = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)
        signatures = {
            "cuGraphGetNodes": [p, pp, sz],
            "cuGraphNodeGetType": [p, ctypes.POINTER(ctypes.c_int)],
            "cuGraphMemsetNodeGetParams": [p, ctypes.POINTER(_MemsetParams)],
            "cuGraphNodeGetDependencies": [p, pp, sz],
            "cuGraphNodeGetDependentNodes": [p, pp, sz],
            "cuGraphAddKernelNode": [pp, p, pp, ctypes.c_size_t, ctypes.POINTER(_KernelParams)],
            "cuGraphAddDependencies": [p, pp, pp, ctypes.c_size_t],
            "cuGraphDestroyNode": [p],
            "cuGraphKernelNodeGetParams": [p, ctypes.POINTER(_KernelParams)],
            "cuFuncGetName": [ctypes.POINTER(ctypes.c_char_p), p],
            "cuModuleLoadData": [pp, ctypes.c_char_p],
            "cuModuleGetFunction": [pp, p, ctypes.c_char_p],
        }
        for name, argtypes in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        self.lib = lib
        self.functions: dict[int, ctypes.c_void_p] = {}     # device index -> the fill kernel

    def call(self, name: str, *args) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"{name} returned CUDA driver error {status}")

    def nodes(self, getter: str, owner) -> list[int]:
        """The nodes of a graph (cuGraphGetNodes) or a node's dependencies / dependents."""
        count = ctypes.c_size_t(0)
        self.call(getter, owner, None, ctypes.byref(count))
        array = (ctypes.c_void_p * count.value)()
        if count.value:
            self.call(getter, owner, array, ctypes.byref(count))
        return [array[i] for i in range(count.value)]

    def kernel_name(self, node: int) -> str | None:
        """The function name of a kernel node, None for any other node."""
        kind = ctypes.c_int(-1)
        self.call("cuGraphNodeGetType", node, ctypes.byref(kind))
        if kind.value != _NODE_KERNEL:
            return None
        params, name = _KernelParams(), ctypes.c_char_p()
        self.call("cuGraphKernelNodeGetParams", node, ctypes.byref(params))
        self.call("cuFuncGetName", ctypes.byref(name), params.func)
        return name.value.decode()

    def fill_function(self, device: int) -> ctypes.c_void_p:
        if device not in self.functions:
            with torch.cuda.device(device):
                torch.cuda.init()
                module, function = ctypes.c_void_p(), ctypes.c_void_p()
                self.call("cuModuleLoadData", ctypes.byref(module), _PTX)
                self.call("cuModuleGetFunction", ctypes.byref(function), module, b"fastgpt_fill_words")
            self.functions[device] = function
        return self.functions[device]


_driver: _Driver | None = None


def _node_array(nodes: list[int]):
    return (ctypes.c_void_p * len(nodes))(*nodes)


def rewrite(graph: int, device: int, hoist_past: frozenset = frozenset(), reusable=()) -> int:
    """Replace the small memset nodes of the uninstantiated cudaGraph_t `graph` (as an int, from
    CUDAGraph.raw_cuda_graph()) by fill-kernel nodes on `device`; returns how many were replaced.

    hoist_past: names of kernels that never touch cuBLAS's memory (fastgpt's own). A memset
    between one of them and a cuBLAS GEMM (its workspace word) gets its fill node beside that kernel
    instead of after it, when its bytes are not in `reusable` ((start, end) address ranges the
    caching allocator may hand out again)."""
    global _driver
    if _driver is None:
        _driver = _Driver()
    drv = _driver
    graph = ctypes.c_void_p(graph)
    function = drv.fill_function(device)
    replaced = 0
    for node in drv.nodes("cuGraphGetNodes", graph):
        kind = ctypes.c_int(-1)
        drv.call("cuGraphNodeGetType", node, ctypes.byref(kind))
        if kind.value != _NODE_MEMSET:
            continue
        params = _MemsetParams()
        drv.call("cuGraphMemsetNodeGetParams", node, ctypes.byref(params))
        fill = fill_word(params)
        if fill is None:
            continue
        dst, word, count = ctypes.c_uint64(params.dst), ctypes.c_uint32(fill[0]), ctypes.c_uint64(fill[1])
        args = (ctypes.c_void_p * 3)(*(ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in (dst, word, count)))
        launch = _KernelParams(function, (1, 1, 1), (BLOCK, 1, 1), 0, args, None)
        before = drv.nodes("cuGraphNodeGetDependencies", node)
        after = drv.nodes("cuGraphNodeGetDependentNodes", node)
        hoisted = (len(before) == 1 and len(after) == 1 and drv.kernel_name(before[0]) in hoist_past
                   and _cublas_gemm(drv.kernel_name(after[0]))
                   and not any(lo < params.dst + 4 * fill[1] and params.dst < hi for lo, hi in reusable))
        fill_after = drv.nodes("cuGraphNodeGetDependencies", before[0]) if hoisted else before
        kernel = ctypes.c_void_p()
        drv.call("cuGraphAddKernelNode", ctypes.byref(kernel), graph, _node_array(fill_after), len(fill_after),
                 ctypes.byref(launch))
        try:
            edges = [(kernel.value, later) for later in after] + [(before[0], later) for later in after if hoisted]
            drv.call("cuGraphAddDependencies", graph, _node_array([a for a, _ in edges]),
                     _node_array([b for _, b in edges]), len(edges))
        except RuntimeError:
            drv.call("cuGraphDestroyNode", kernel)   # a kernel without its dependents would race them
            raise
        drv.call("cuGraphDestroyNode", node)
        replaced += 1
    return replaced


def _cublas_gemm(name: str | None) -> bool:
    """Whether a kernel's name is one of cuBLAS's GEMMs (its nvjet, xmma and CUTLASS kernels)."""
    return name is not None and (name.startswith(("nvjet", "sm90_xmma", "cutlass")) or "gemm" in name)


def reusable_ranges(device: int) -> list[tuple[int, int]]:
    """(start, end) addresses of the blocks PyTorch's caching allocator holds on `device` but has not
    handed out: memory a later allocation may reuse."""
    ranges = []
    for segment in torch.cuda.memory_snapshot():
        if segment.get("device", device) != device:
            continue
        address = segment["address"]
        for block in segment["blocks"]:
            address = block.get("address", address)
            if block["state"] != "active_allocated":
                ranges.append((address, address + block["size"]))
            address += block["size"]
    return ranges


def fastgpt_kernel_names() -> frozenset:
    """The names of fastgpt's Triton and Gluon kernels (in the modules imported so far), which
    read and write only the tensors they are given."""
    names = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("fastgpt.kernels.") or module is None:
            continue
        for obj in vars(module).values():
            if type(obj).__module__.startswith("triton") and hasattr(obj, "fn"):
                while hasattr(obj, "fn"):
                    obj = obj.fn
                names.add(getattr(obj, "__name__", None))
    return frozenset(names - {None})
