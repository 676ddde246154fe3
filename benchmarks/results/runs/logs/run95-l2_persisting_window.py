"""exp (run 95): does an L2 persisting window over the Gluon MLP kernel's operands (x and W, ~30 MB)
take back the cost of its second 100 MB stream? cudaStreamSetAttribute(accessPolicyWindow) through
ctypes on the current stream; the kernels timed eagerly (do_bench) with and without it."""
import ctypes, json, os
import torch, triton
from triton.testing import do_bench
import fastgpt.kernels.mlp as Mk
import fastgpt.kernels.mlp_gluon as G
triton.set_allocator(Mk._tma_allocator)
torch.manual_seed(0)
lib = None
for line in open("/proc/self/maps"):
    if "libcudart.so" in line:
        lib = line.split()[-1]; break
if lib is None:
    import glob, site
    cands = [p for d in site.getsitepackages() for p in glob.glob(d + "/nvidia/**/libcudart.so*", recursive=True)]
    lib = cands[0]
print("cudart", lib, flush=True)
rt = ctypes.CDLL(lib)

class Window(ctypes.Structure):
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]
class Attr(ctypes.Union):
    _fields_ = [("accessPolicyWindow", Window), ("pad", ctypes.c_char * 64)]

def set_window(ptr, nbytes, on=True):
    a = Attr()
    hit = min(1.0, limit.value / max(nbytes, 1))
    a.accessPolicyWindow = Window(ptr if on else None, nbytes if on else 0, hit if on else 0.0, 2 if on else 0, 1 if on else 0)
    rc = rt.cudaStreamSetAttribute(ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), 1, ctypes.byref(a))
    return rc

M, C, H = 16384, 768, 3072
dev = "cuda"
prop = torch.cuda.get_device_properties(0)
limit = ctypes.c_size_t(0)
maxp = ctypes.c_int(0); maxw = ctypes.c_int(0)
rt.cudaDeviceGetAttribute(ctypes.byref(maxp), 108, 0)   # cudaDevAttrMaxPersistingL2CacheSize
rt.cudaDeviceGetAttribute(ctypes.byref(maxw), 109, 0)   # cudaDevAttrMaxAccessPolicyWindowSize
rc0 = None
rt.cudaGetLastError()
rt.cudaDeviceGetLimit(ctypes.byref(limit), 6)
print("max persisting", maxp.value / 2**20, "MiB, max window", maxw.value / 2**20, "MiB; limit set", limit.value / 2**20, "MiB rc", rc0, flush=True)
HIT = None
fwd_buf = torch.empty(M * C + H * C, device=dev, dtype=torch.bfloat16)   # x and w_fc in one window
x = fwd_buf[:M * C].view(M, C).normal_()
w_fc = fwd_buf[M * C:].view(H, C).normal_().mul_(0.05)
b_fc = (torch.randn(H, device=dev) * 0.1).bfloat16()
bwd_buf = torch.empty(M * C + C * H, device=dev, dtype=torch.bfloat16)   # dy and w_proj
dy = bwd_buf[:M * C].view(M, C).normal_()
w_proj = bwd_buf[M * C:].view(C, H).normal_().mul_(0.03)
pre = (x @ w_fc.t() + b_fc)
h = torch.empty_like(pre); p2 = torch.empty_like(pre); dpre = torch.empty_like(pre)
part = torch.empty(G.partial_rows(M, None), H, device=dev)
med = lambda f: [round(do_bench(f, warmup=50, rep=300, return_mode="median") * 1e3, 1) for _ in range(2)]
rows = []
def baseline(tag):
    row = dict(window=tag, fwd_us=med(lambda: G.launch_linear_gelu(x, w_fc, b_fc, h, p2)),
               cublas_fwd_mm_us=med(lambda: torch.mm(x, w_fc.t())),
               bwd_us=med(lambda: G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, part)))
    print("RESULT", json.dumps(row), flush=True)
side = torch.cuda.Stream()
torch.cuda.set_stream(side)   # a created stream: the legacy default stream may ignore the window
print("stream", side.cuda_stream, flush=True)
baseline("no carve-out")
for size in (8 * 2**20, maxp.value):
    rt.cudaDeviceSetLimit(6, ctypes.c_size_t(size)); rt.cudaGetLastError()
    rt.cudaDeviceGetLimit(ctypes.byref(limit), 6)
    baseline(f"carve-out {limit.value / 2**20:.2f} MiB, no window")
rt.cudaDeviceSetLimit(6, ctypes.c_size_t(maxp.value)); rt.cudaDeviceGetLimit(ctypes.byref(limit), 6)
for trial in range(2):
    for on in (False, True):
        rf = set_window(fwd_buf.data_ptr(), fwd_buf.numel() * 2, on)
        fwd = med(lambda: G.launch_linear_gelu(x, w_fc, b_fc, h, p2))
        mm = med(lambda: torch.mm(x, w_fc.t()))
        rb = set_window(bwd_buf.data_ptr(), bwd_buf.numel() * 2, on)
        bwd = med(lambda: G.launch_matmul_gelu_grad(dy, w_proj, pre, dpre, part))
        set_window(0, 0, False)
        row = dict(window=on, hit=min(1.0, limit.value / (fwd_buf.numel() * 2)), rc=(rf, rb), fwd_us=fwd, cublas_fwd_mm_us=mm, bwd_us=bwd)
        rows.append(row)
        print("RESULT", json.dumps(row), flush=True)
ref_h, ref_pre = h.clone(), p2.clone()
rt.cudaDeviceSetLimit(6, ctypes.c_size_t(0)); rt.cudaCtxResetPersistingL2Cache() if hasattr(rt, "cudaCtxResetPersistingL2Cache") else None
baseline("carve-out released")
