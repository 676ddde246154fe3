"""Probe: for each GEMM of the graphed GPT-2 step, torch's own call against every algorithm that
cuBLASLt's heuristic offers (up to 64), each timed (CUDA events, median of rounds). Session 17.
Prints a table; writes JSON to argv[1]."""
import json
import os
import sys
import statistics

import torch
from torch.utils.cpp_extension import load_inline

CPP = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <cublasLt.h>
#include <vector>
#include <string>
#include <algorithm>

static void ck(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + " status " + std::to_string((int)s));
}
static cudaDataType_t dt(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kBFloat16) return CUDA_R_16BF;
  if (t.scalar_type() == torch::kFloat32) return CUDA_R_32F;
  throw std::runtime_error("dtype");
}

struct Setup {
  cublasLtHandle_t h = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Setup() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

static cublasLtHandle_t handle() {
  static cublasLtHandle_t h = [] { cublasLtHandle_t x; ck(cublasLtCreate(&x), "create"); return x; }();
  return h;
}

// Row-major C[M,N] = A[M,K] @ B[K,N] (+ beta C) (+ bias[N]); A, B contiguous or transposed views.
// Column-major: C^T (N x M, ld N) = B^T (N x K) * A^T (K x M).
static void build(Setup& s, torch::Tensor A, torch::Tensor B, torch::Tensor C, torch::Tensor bias, size_t ws) {
  int64_t M = A.size(0), K = A.size(1), N = B.size(1);
  bool a_rows = A.stride(1) == 1, b_rows = B.stride(1) == 1;
  // cublas operand 1 = B^T (m=N, k=K)
  cublasOperation_t op1 = b_rows ? CUBLAS_OP_N : CUBLAS_OP_T;
  int64_t ld1 = b_rows ? B.stride(0) : B.stride(1);
  cublasOperation_t op2 = a_rows ? CUBLAS_OP_N : CUBLAS_OP_T;
  int64_t ld2 = a_rows ? A.stride(0) : A.stride(1);
  s.h = handle();
  ck(cublasLtMatmulDescCreate(&s.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  ck(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof(op1)), "ta");
  ck(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof(op2)), "tb");
  if (bias.defined() && bias.numel() > 0) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    ck(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "epi");
    void* p = bias.data_ptr();
    int32_t bt = dt(bias);
    ck(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)), "bt");
    ck(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p, sizeof(p)), "bp");
  }
  ck(cublasLtMatrixLayoutCreate(&s.la, dt(B), op1 == CUBLAS_OP_N ? N : K, op1 == CUBLAS_OP_N ? K : N, ld1), "la");
  ck(cublasLtMatrixLayoutCreate(&s.lb, dt(A), op2 == CUBLAS_OP_N ? K : M, op2 == CUBLAS_OP_N ? M : K, ld2), "lb");
  ck(cublasLtMatrixLayoutCreate(&s.lc, dt(C), N, M, N), "lc");
  ck(cublasLtMatmulPreferenceCreate(&s.pref), "pref");
  uint64_t w = ws;
  ck(cublasLtMatmulPreferenceSetAttribute(s.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w, sizeof(w)), "ws");
}

static int attr(const cublasLtMatmulAlgo_t& a, cublasLtMatmulAlgoConfigAttributes_t what) {
  int64_t v = 0; size_t n = 0;
  uint64_t buf = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&a, what, &buf, sizeof(buf), &n) != CUBLAS_STATUS_SUCCESS) return -1;
  if (n == 2) v = (int64_t)(uint16_t)buf; else if (n == 4) v = (int64_t)(uint32_t)buf; else v = (int64_t)buf;
  return (int)v;
}

// Returns rows: [index, algo id, tile, stages, splitk, reduction, swizzle, cluster, waves, us median]
std::vector<std::vector<double>> search(torch::Tensor A, torch::Tensor B, torch::Tensor C, torch::Tensor bias,
                                        double beta, int max_algos, int reps, int rounds, torch::Tensor workspace) {
  Setup s;
  size_t ws = workspace.numel();
  build(s, A, B, C, bias, ws);
  std::vector<cublasLtMatmulHeuristicResult_t> res(max_algos);
  int found = 0;
  ck(cublasLtMatmulAlgoGetHeuristic(s.h, s.op, s.la, s.lb, s.lc, s.lc, s.pref, max_algos, res.data(), &found), "heur");
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  float alpha = 1.f, b = (float)beta;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0); cudaEventCreate(&e1);
  std::vector<std::vector<double>> out;
  for (int i = 0; i < found; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    auto call = [&] {
      return cublasLtMatmul(s.h, s.op, &alpha, B.data_ptr(), s.la, A.data_ptr(), s.lb, &b, C.data_ptr(), s.lc,
                            C.data_ptr(), s.lc, &res[i].algo, workspace.data_ptr(), ws, stream);
    };
    if (call() != CUBLAS_STATUS_SUCCESS) continue;
    for (int w = 0; w < 3; ++w) call();
    std::vector<double> t;
    for (int r = 0; r < rounds; ++r) {
      cudaEventRecord(e0, stream);
      for (int k = 0; k < reps; ++k) call();
      cudaEventRecord(e1, stream);
      cudaEventSynchronize(e1);
      float ms = 0; cudaEventElapsedTime(&ms, e0, e1);
      t.push_back(1000.0 * ms / reps);
    }
    std::sort(t.begin(), t.end());
    const auto& a = res[i].algo;
    out.push_back({(double)i, (double)attr(a, CUBLASLT_ALGO_CONFIG_ID), (double)attr(a, CUBLASLT_ALGO_CONFIG_TILE_ID),
                   (double)attr(a, CUBLASLT_ALGO_CONFIG_STAGES_ID), (double)attr(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                   (double)attr(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME), (double)attr(a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                   (double)attr(a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID), (double)res[i].wavesCount,
                   t[t.size() / 2]});
  }
  cudaEventDestroy(e0); cudaEventDestroy(e1);
  return out;
}
"""

from torch.utils.cpp_extension import CUDA_HOME
from fastgpt._cuda import cublaslt_build_flags
INC, LD = cublaslt_build_flags(CUDA_HOME)
print("cublasLt", INC, LD, flush=True)
ext = load_inline("lt_probe", cpp_sources=CPP, functions=["search"], with_cuda=True,
                  extra_include_paths=INC, extra_ldflags=LD, verbose=False)

dev = "cuda"
torch.manual_seed(0)
bf = torch.bfloat16
M, C, R, V = 16384, 768, 4096, 50304


def r(*shape, dtype=bf):
    return torch.randn(*shape, device=dev, dtype=dtype) * 0.5


x, h, dy, dpre, dqkv, y = r(M, C), r(M, 4 * C), r(M, C), r(M, 4 * C), r(M, 3 * C), r(M, C)
Wqkv, Wc, Wp, Wfc, bqkv = r(3 * C, C), r(C, C), r(C, 4 * C), r(4 * C, C), r(3 * C)
xr, Wv, E = r(R, C), r(V, C), r(R, V)
ws = torch.empty(32 << 20, dtype=torch.uint8, device=dev)

# name, A, B, out dtype, bias, beta, torch call, calls per step
cases = [
    ("qkv fwd +bias", x, Wqkv.t(), bf, bqkv, 0.0, lambda: torch.addmm(bqkv, x, Wqkv.t()), 12),
    ("qkv fwd", x, Wqkv.t(), bf, None, 0.0, lambda: torch.mm(x, Wqkv.t()), 0),
    ("attn proj fwd", y, Wc.t(), bf, None, 0.0, lambda: torch.mm(y, Wc.t()), 12),
    ("mlp proj fwd", h, Wp.t(), bf, None, 0.0, lambda: torch.mm(h, Wp.t()), 12),
    ("mlp proj dW", dy.t(), h, bf, None, 0.0, lambda: torch.mm(dy.t(), h), 12),
    ("fc dX", dpre, Wfc, bf, None, 0.0, lambda: torch.mm(dpre, Wfc), 12),
    ("fc dW", dpre.t(), x, bf, None, 0.0, lambda: torch.mm(dpre.t(), x), 12),
    ("attn proj dX", dy, Wc, bf, None, 0.0, lambda: torch.mm(dy, Wc), 12),
    ("attn proj dW", dy.t(), y, bf, None, 0.0, lambda: torch.mm(dy.t(), y), 12),
    ("qkv dX", dqkv, Wqkv, bf, None, 0.0, lambda: torch.mm(dqkv, Wqkv), 12),
    ("qkv dW", dqkv.t(), x, bf, None, 0.0, lambda: torch.mm(dqkv.t(), x), 12),
    ("lm logits", xr, Wv.t(), bf, None, 0.0, lambda: torch.mm(xr, Wv.t()), 0),
    ("lm dX fp32", E, Wv, torch.float32, None, 0.0, lambda: torch.mm(E, Wv, out_dtype=torch.float32), 4),
]
gw = torch.zeros(V, C, device=dev, dtype=torch.float32)
cases.append(("lm dW acc fp32", E.t(), xr, torch.float32, None, 1.0,
              lambda: torch.addmm(gw, E.t(), xr, beta=1.0, out_dtype=torch.float32, out=gw), 3))

REPS, ROUNDS = 10, 7


def time_torch(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(ROUNDS):
        e0.record()
        for _ in range(REPS):
            fn()
        e1.record()
        e1.synchronize()
        ts.append(1000 * e0.elapsed_time(e1) / REPS)
    return statistics.median(ts)


rows = []
print(f"{torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
print(f"{'GEMM':18s} {'TF':>6s} {'torch us':>9s} {'lt#0 us':>8s} {'best us':>8s} {'best cfg (id,tile,st,splitk,red,swz,cl)':42s} {'n':>3s} {'x/step':>6s} {'save us/step':>12s}")
total_save = 0.0
for name, A, B, odt, bias, beta, fn, per_step in cases:
    Mm, K, N = A.shape[0], A.shape[1], B.shape[1]
    out = torch.empty(Mm, N, device=dev, dtype=odt) if beta == 0 else gw
    t_torch = time_torch(fn)
    # torch again after the search, to see drift
    res = ext.search(A, B, out, bias if bias is not None else torch.empty(0, device=dev), beta, 64, REPS, ROUNDS, ws)
    t_torch2 = time_torch(fn)
    tt = min(t_torch, t_torch2)
    best = min(res, key=lambda r: r[-1])
    first = [r for r in res if r[0] == 0]
    first_t = first[0][-1] if first else float("nan")
    flops = 2 * Mm * K * N
    save = max(0.0, tt - best[-1]) * per_step
    total_save += save
    cfg = ",".join(str(int(v)) for v in best[1:8])
    print(f"{name:18s} {flops / tt / 1e6:6.0f} {tt:9.1f} {first_t:8.1f} {best[-1]:8.1f} {cfg:42s} {len(res):3d} {per_step:6d} {save:12.1f}", flush=True)
    rows.append(dict(name=name, M=Mm, K=K, N=N, torch_us=[t_torch, t_torch2], algos=res, per_step=per_step))
print(f"sum of savings at the best algorithms: {total_save / 1000:.3f} ms a step")
with open(sys.argv[1], "w") as f:
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), f)
