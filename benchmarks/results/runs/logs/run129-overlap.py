"""Session 18 probe: can a memory-bound pass (AdamW's ~28 bytes a parameter) run beside the GEMMs on
SMs of its own? A chain of the forward's cuBLASLt GEMMs (12 layers: c_attn, attn proj, c_fc, c_proj at
16384 tokens) with cuBLASLt's SM_COUNT_TARGET, and a persistent streaming kernel on a few CTAs of 1024
threads, alone and on two streams at once."""
import ctypes, statistics
import torch, triton
import triton.language as tl
from fastgpt.kernels import gemm as G

@triton.jit
def _stream_kernel(A, B, C, n, BLOCK: tl.constexpr):
    # per element: read a (fp32), b (fp32), c (bf16); write a, b: 4+4+2 read, 4+4 write = 18 bytes
    pid, nprog = tl.program_id(0), tl.num_programs(0)
    for start in range(pid * BLOCK, n, nprog * BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(A + offs, mask=m); b = tl.load(B + offs, mask=m); c = tl.load(C + offs, mask=m).to(tl.float32)
        tl.store(A + offs, a * 0.999 + c, mask=m); tl.store(B + offs, b * 0.99 + c * c, mask=m)

lt = G._state.library(); lib = lt.lib
torch.manual_seed(0)
M = 16384
bf = torch.bfloat16
x768 = torch.randn(M, 768, device="cuda", dtype=bf)
x3072 = torch.randn(M, 3072, device="cuda", dtype=bf)
w = {n: torch.randn(768, n, device="cuda", dtype=bf) * 0.02 for n in (2304, 768, 3072)}
wp = torch.randn(3072, 768, device="cuda", dtype=bf) * 0.02
shapes = [(x768, w[2304]), (x768, w[768]), (x768, w[3072]), (x3072, wp)]
outs = [torch.empty(a.shape[0], b.shape[1], device="cuda", dtype=bf) for a, b in shapes]
ws = torch.empty(G.WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")

def make_problem_with_target(a, b, target):
    # _make_problem builds the desc and runs the heuristic; to set the attribute before the heuristic we rebuild here
    (op_a, ld_a), (op_b, ld_b) = G._operand(a), G._operand(b)
    Mm, K, N = a.shape[0], a.shape[1], b.shape[1]
    desc = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), G._COMPUTE_32F, G._R_32F), "create")
    sd = lib.cublasLtMatmulDescSetAttribute
    lt.set_attribute(sd, desc, 3, ctypes.c_int32(op_b)); lt.set_attribute(sd, desc, 4, ctypes.c_int32(op_a))
    if target:
        lt.set_attribute(sd, desc, 15, ctypes.c_int32(target))
    layouts = []
    for dtype, rows, cols, ld in ((b.dtype, N if op_b == 0 else K, K if op_b == 0 else N, ld_b),
                                  (a.dtype, K if op_a == 0 else Mm, Mm if op_a == 0 else K, ld_a), (bf, N, Mm, N)):
        layout = ctypes.c_void_p()
        lt.check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(layout), G._CUDA_TYPES[dtype], rows, cols, ld), "layout")
        layouts.append(layout)
    pref = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "pref")
    lt.set_attribute(lib.cublasLtMatmulPreferenceSetAttribute, pref, 1, ctypes.c_uint64(G.WORKSPACE_BYTES))
    results = (G._Heuristic * 1)()
    found = ctypes.c_int(0)
    lt.check(lib.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, layouts[0], layouts[1], layouts[2], layouts[2],
                                                pref, 1, results, ctypes.byref(found)), "heuristic")
    return G._Problem(desc, tuple(layouts), [results[0].algo], [results[0].workspace_size])

def gemm_chain(target):
    ps = [make_problem_with_target(a, b, target) for a, b in shapes]
    def run():
        for _ in range(12):
            for p, (a, b), o in zip(ps, shapes, outs):
                G._run_algo(lt, p, 0, a, b, None, o, 0.0, ws)
    return run

n = 85_000_000
A = torch.randn(n, device="cuda"); B = torch.rand(n, device="cuda"); C = torch.randn(n, device="cuda", dtype=bf)
def stream(ctas, warps=32, block=8192):
    def run():
        _stream_kernel[(ctas,)](A, B, C, n, BLOCK=block, num_warps=warps)
    return run

def graph(fns_by_stream):
    """A CUDA graph running each list of callables on its own stream, forked and joined."""
    g = torch.cuda.CUDAGraph()
    main = torch.cuda.Stream()
    sides = [torch.cuda.Stream() for _ in fns_by_stream]
    for s, fns in zip(sides, fns_by_stream):       # warm
        with torch.cuda.stream(s):
            for f in fns: f()
    torch.cuda.synchronize()
    with torch.cuda.graph(g, stream=main):
        fork = torch.cuda.Event(); fork.record(main)
        for s, fns in zip(sides, fns_by_stream):
            s.wait_event(fork)
            with torch.cuda.stream(s):
                for f in fns: f()
            main.wait_stream(s)
    return g

def timed(g, reps=9):
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    return statistics.median(ts)

print(torch.cuda.get_device_name(), "SMs", torch.cuda.get_device_properties(0).multi_processor_count)
full = gemm_chain(0)
res = {"gemms (all SMs)": timed(graph([[full]])),
       "stream 264 CTAs x 8 warps (all SMs)": timed(graph([[stream(264, 8, 4096)]]))}
for target in (116, 100):
    res[f"gemms SM target {target}"] = timed(graph([[gemm_chain(target)]]))
for ctas in (16, 32):
    res[f"stream {ctas} CTAs x 32 warps"] = timed(graph([[stream(ctas)]]))
res["serial: gemms then stream (all SMs)"] = timed(graph([[full, stream(264, 8, 4096)]]))
for target, ctas in ((116, 16), (100, 32), (0, 16), (0, 32)):
    res[f"together: stream {ctas} CTAs first, gemms target {target}"] = timed(graph([[stream(ctas)], [gemm_chain(target)]]))
for k, v in res.items():
    print(f"{k:55s} {v:8.3f} ms")
