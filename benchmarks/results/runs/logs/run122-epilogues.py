"""Session 18: every cuBLASLt algorithm (up to 32 from the heuristic) for the MLP's epilogue GEMMs at
the step's shapes (GELU_AUX_BIAS forward, DGELU and DGELU_BGRAD backward), against the Gluon kernels
and PyTorch's plain GEMMs, timed interleaved (kernels/gemm._median_times)."""
import ctypes
import torch
import torch.nn.functional as F
from fastgpt.kernels import gemm, mlp_gluon
G = gemm
lt = G._state.library()
lib = lt.lib
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
bf = torch.bfloat16
x = torch.randn(M, C, device="cuda", dtype=bf)
w_fc = torch.randn(H, C, device="cuda", dtype=bf) * 0.02
b_fc = torch.randn(H, device="cuda", dtype=bf) * 0.02
w_proj = torch.randn(C, H, device="cuda", dtype=bf) * 0.02
dy = torch.randn(M, C, device="cuda", dtype=bf)
h = torch.empty(M, H, device="cuda", dtype=bf); pre = torch.empty_like(h); dpre = torch.empty_like(h)
dbias = torch.empty(H, device="cuda", dtype=bf)
EPI = dict(GELU_AUX_BIAS=32 | 128 | 4, DGELU=64 | 128, DGELU_BGRAD=64 | 128 | 16, BIAS=4, DEFAULT=1)

def problem(a, b, epilogue, aux, bias_type, nalgo=32):
    (op_a, ld_a), (op_b, ld_b) = G._operand(a), G._operand(b)
    Mm, K, N = a.shape[0], a.shape[1], b.shape[1]
    desc = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), G._COMPUTE_32F, G._R_32F), "create")
    sd = lib.cublasLtMatmulDescSetAttribute
    lt.set_attribute(sd, desc, 3, ctypes.c_int32(op_b)); lt.set_attribute(sd, desc, 4, ctypes.c_int32(op_a))
    lt.set_attribute(sd, desc, 7, ctypes.c_int32(EPI[epilogue]))
    if bias_type is not None:
        lt.set_attribute(sd, desc, 26, ctypes.c_int32(bias_type))
    if aux is not None:
        lt.set_attribute(sd, desc, 11, ctypes.c_void_p(aux.data_ptr()))
        lt.set_attribute(sd, desc, 12, ctypes.c_int64(aux.stride(0)))
        lt.set_attribute(sd, desc, 22, ctypes.c_int32(G._R_16BF))
    layouts = []
    for dtype, rows, cols, ld in ((b.dtype, N if op_b == 0 else K, K if op_b == 0 else N, ld_b),
                                  (a.dtype, K if op_a == 0 else Mm, Mm if op_a == 0 else K, ld_a),
                                  (bf, N, Mm, N)):
        layout = ctypes.c_void_p()
        lt.check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(layout), G._CUDA_TYPES[dtype], rows, cols, ld), "layout")
        layouts.append(layout)
    pref = ctypes.c_void_p()
    lt.check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "pref")
    lt.set_attribute(lib.cublasLtMatmulPreferenceSetAttribute, pref, 1, ctypes.c_uint64(G.WORKSPACE_BYTES))
    for attribute in G._PREF_MIN_ALIGNMENT:
        lt.set_attribute(lib.cublasLtMatmulPreferenceSetAttribute, pref, attribute, ctypes.c_uint32(256))
    results = (G._Heuristic * nalgo)()
    found = ctypes.c_int(0)
    status = lib.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, layouts[0], layouts[1], layouts[2], layouts[2],
                                                pref, nalgo, results, ctypes.byref(found))
    usable = [results[i] for i in range(found.value) if status == 0 and results[i].state == 0]
    print(f"  {epilogue}: heuristic status {status}, {found.value} found, {len(usable)} usable")
    return G._Problem(desc, tuple(layouts), [r.algo for r in usable], [r.workspace_size for r in usable])

ws = torch.empty(G.WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")
def runner(prob, i, a, b, bias, out):
    def run():
        G._run_algo(lt, prob, i, a, b, bias, out, 0.0, ws)
    return run

def report(title, calls, check=None):
    ok = {}
    for k, fn in calls.items():
        try:
            fn(); torch.cuda.synchronize(); ok[k] = fn
        except RuntimeError as e:
            print("   ", k, "failed:", e)
    t = G._median_times(ok)
    t2 = G._median_times(ok)
    print(title)
    for k in sorted(t, key=t.get):
        print(f"   {str(k):28s} {t[k]*1e3:7.1f} us  (again {t2[k]*1e3:7.1f})")
    return t

# forward: h = gelu(x @ w_fc^T + b), aux pre
wt = w_fc.t()
p_fwd = problem(x, wt, "GELU_AUX_BIAS", pre, G._R_16BF)
calls = {"gluon fwd": lambda: mlp_gluon.launch_linear_gelu(x, w_fc, b_fc, h, pre),
         "torch addmm (plain)": lambda: torch.addmm(b_fc, x, wt)}
for i in range(len(p_fwd.algos)):
    lt.set_attribute(lib.cublasLtMatmulDescSetAttribute, p_fwd.desc, 8, ctypes.c_void_p(b_fc.data_ptr()))
    calls[f"lt GELU_AUX_BIAS #{i}"] = runner(p_fwd, i, x, wt, b_fc, h)
tf = report("forward (16384 x 768 -> 3072)", calls)
ref_pre = (x.float() @ w_fc.float().t() + b_fc.float())
best = min((k for k in tf if k.startswith("lt")), key=tf.get, default=None)
if best:
    calls[best]()
    torch.cuda.synchronize()
    print("   best lt err: pre", ((pre.float() - ref_pre).abs().max() / ref_pre.abs().max()).item(),
          "h", ((h.float() - F.gelu(ref_pre, approximate="tanh")).abs().max() / ref_pre.abs().max()).item())
# backward: dpre = (dy @ w_proj) * gelu'(pre)
pre.copy_(ref_pre.to(bf))
p_dg = problem(dy, w_proj, "DGELU", pre, None)
p_dgb = problem(dy, w_proj, "DGELU_BGRAD", pre, G._R_16BF)
parts = torch.empty(mlp_gluon.partial_rows(M), H, device="cuda", dtype=torch.float32)
calls = {"gluon bwd (+bias partials)": lambda: mlp_gluon.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, parts),
         "gluon bwd (no partials)": lambda: mlp_gluon.launch_matmul_gelu_grad(dy, w_proj, pre, dpre),
         "torch mm (plain)": lambda: torch.mm(dy, w_proj)}
for i in range(len(p_dg.algos)):
    calls[f"lt DGELU #{i}"] = runner(p_dg, i, dy, w_proj, None, dpre)
for i in range(len(p_dgb.algos)):
    lt.set_attribute(lib.cublasLtMatmulDescSetAttribute, p_dgb.desc, 8, ctypes.c_void_p(dbias.data_ptr()))
    calls[f"lt DGELU_BGRAD #{i}"] = runner(p_dgb, i, dy, w_proj, None, dpre)
report("backward dh (16384 x 768 @ 768 x 3072, gelu')", calls)
