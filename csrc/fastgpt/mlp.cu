/*
Bias + GELU(tanh) epilogue of the MLP's first layer, forward and backward (the CUDA twin of the
epilogues in kernels/mlp.py; the GEMMs around it stay with cuBLAS, see fastgpt/ops/mlp.py).

What is fused, and why. With a = x @ W_fc^T computed by cuBLAS without its bias, the forward
h = gelu_tanh(a + bias) is one read of a and one write of h instead of eager PyTorch's separate
bias add and GELU (two round trips over the (N, 4C) activation). The backward
da = dh * gelu_tanh'(a + bias) also produces dbias = sum_rows da in the same pass.

    gelu_tanh(u)  = 0.5 u (1 + tanh(k (u + 0.044715 u^3))),  k = sqrt(2 / pi)
    gelu_tanh'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) k (1 + 3 * 0.044715 u^2),  t = tanh(...)

How. Forward: a grid-stride loop over 128-bit vectors (Vec<T, 16 / sizeof(T)>, llm.c's x128) of
the flattened (N, M) tensor; a vector never straddles two rows because M is a multiple of its
width (else the scalar path runs). Backward: a (32 x 8)-thread block owns 32 vectors of columns;
its 8 row lanes stride down the rows assigned to blockIdx.y, accumulate dbias for their columns
in fp32 registers, add the 8 lanes in shared memory in a fixed order, and write one partial row
per blockIdx.y; column_sum_kernel (common.cuh) adds those rows in a fixed order. Deterministic,
no atomics. dbias sums da in fp32 before it is rounded to the dtype.

Limits: contiguous a, dh (N, M) and bias (M,) of one dtype (fp32, fp16, bf16); math in fp32.

GEMMs with cuBLASLt epilogues (the second half of this file; host code). The passes above still
cost a round trip over the (N, 4C) activation each way. cuBLASLt can apply them inside its own
GEMMs, at cuBLAS speed: the forward c_fc GEMM adds the bias and applies GELU, writing both h and
the GELU input pre (CUBLASLT_EPILOGUE_GELU_AUX_BIAS); the backward dh GEMM (dy @ W_proj) applies
GELU's derivative at pre and sums dbias_fc (DGELU_BGRAD); the c_proj weight-gradient GEMM sums
dbias_proj over dy on the way (BGRADB). What is left of the MLP is six GEMMs and no elementwise
pass (benchmarks/NOTES.md, "Why 1.25x ...", has the arithmetic this was built for).
cuBLASLt is column-major: a row-major (R, C) matrix is, as it stands in memory, a column-major
(C, R) one, so each row-major product P = X Y is computed as P^T = Y^T X^T; the comment on each
launcher gives its mapping (the same as llm.c's matmul_cublaslt for its forward, dinp and dweight
GEMMs). Limits: fp16 and bf16 only (the epilogues' GELU input matrix is
stored in the output's dtype); every size a multiple of 8 (the auxiliary matrix's leading
dimension must be); bias gradients come back in the operands' dtype, summed by cuBLASLt in fp32.
Built only where cublasLt.h is found (setup.py looks in CUDA_HOME and in torch's nvidia-cublas
wheel); elsewhere the launchers say cudaErrorNotSupported. The GELU is cuBLASLt's, the tanh form.
Measured on an H100 (run 22, 65536 x 768 -> 3072, bf16): GELU_AUX_BIAS 0.680 ms against 0.762 for
cuBLAS + a GELU pass; DGELU_BGRAD 1.749 ms against 0.910 for cuBLAS + fastgpt's one pass (the
GEMM at 177 TFLOP/s); BGRADB 0.489 against 0.436 for the plain GEMM, less than a separate column
sum. matmul_gelu_grad is DGELU alone (no bias gradient): 0.642 ms (run 24), so the bias-gradient
reduction is what is slow; the cuda backend's default MLP uses it, with fastgpt's column sum.
*/
#include <algorithm>
#include <cstdio>
#include <type_traits>

#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define FASTGPT_HAVE_CUBLASLT 1
#else
#define FASTGPT_HAVE_CUBLASLT 0
#endif
#if defined(FASTGPT_REQUIRE_CUBLASLT) && !FASTGPT_HAVE_CUBLASLT
#error "FASTGPT_REQUIRE_CUBLASLT: cublasLt.h is not on the include path"
#endif

#include "fastgpt/common.cuh"

namespace fastgpt {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;

__device__ __forceinline__ float gelu_tanh(float u) {
  const float t = tanhf(kSqrt2OverPi * (u + kGeluCoeff * u * u * u));
  return 0.5f * u * (1.f + t);
}

__device__ __forceinline__ float gelu_tanh_grad(float u) {
  const float t = tanhf(kSqrt2OverPi * (u + kGeluCoeff * u * u * u));
  return 0.5f * (1.f + t) + 0.5f * u * (1.f - t * t) * kSqrt2OverPi * (1.f + 3.f * kGeluCoeff * u * u);
}

// ------------------------------------------------------------------------------------------
// kernels

template <typename T, int VEC>
__global__ void bias_gelu_fwd_kernel(T* __restrict__ h, const T* __restrict__ a,
                                     const T* __restrict__ bias, int64_t total_vecs, int M) {
  using V = Vec<T, VEC>;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total_vecs;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = i * VEC;
    const int col = (int)(e % M);
    const V av = V::load_cs(a + e);
    const V bv = V::load(bias + col);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = from_float<T>(gelu_tanh(to_float(av[j]) + to_float(bv[j])));
    out.store_cs(h + e);
  }
}

constexpr int kBwdColThreads = 32;  // threadIdx.x: one column vector each
constexpr int kBwdRowLanes = 8;     // threadIdx.y: row lanes

template <typename T, int VEC>
__global__ void __launch_bounds__(kBwdColThreads * kBwdRowLanes)
bias_gelu_bwd_kernel(T* __restrict__ da, float* __restrict__ dbias_partial, const T* __restrict__ dh,
                     const T* __restrict__ a, const T* __restrict__ bias, int64_t N, int M) {
  using V = Vec<T, VEC>;
  __shared__ float lane_sums[kBwdRowLanes][kBwdColThreads * VEC];
  const int col = (blockIdx.x * kBwdColThreads + threadIdx.x) * VEC;
  const bool active = col < M;
  float acc[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
  if (active) {
    const V bv = V::load(bias + col);
    for (int64_t row = (int64_t)blockIdx.y * kBwdRowLanes + threadIdx.y; row < N;
         row += (int64_t)gridDim.y * kBwdRowLanes) {
      const int64_t e = row * M + col;
      const V dhv = V::load_cs(dh + e);
      const V av = V::load_cs(a + e);
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = to_float(dhv[j]) * gelu_tanh_grad(to_float(av[j]) + to_float(bv[j]));
        acc[j] += d;
        out[j] = from_float<T>(d);
      }
      out.store_cs(da + e);
    }
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) lane_sums[threadIdx.y][threadIdx.x * VEC + j] = acc[j];
  __syncthreads();
  // Thread (x, y) finishes columns y, y + 8, ... of the block's 32 * VEC: lanes added 0..7.
  const int block_col0 = blockIdx.x * kBwdColThreads * VEC;
  for (int c = threadIdx.y * kBwdColThreads + threadIdx.x; c < kBwdColThreads * VEC;
       c += kBwdColThreads * kBwdRowLanes) {
    if (block_col0 + c < M) {
      float total = 0.f;
#pragma unroll
      for (int y = 0; y < kBwdRowLanes; ++y) total += lane_sums[y][c];
      dbias_partial[(int64_t)blockIdx.y * M + block_col0 + c] = total;
    }
  }
}

// ------------------------------------------------------------------------------------------
// launchers

template <typename T, typename F>
cudaError_t dispatch_vec(int vec, F&& f) {
  if (vec == 1) return f(std::integral_constant<int, 1>{});
  return f(std::integral_constant<int, kVec128<T>>{});
}

// Backward grid: x over column tiles, y over row slices, about 8 blocks of 256 threads per SM.
dim3 backward_grid(int64_t N, int M, int vec) {
  const int64_t col_tiles = ceil_div(ceil_div(M, vec), kBwdColThreads);
  const int64_t want = ceil_div((int64_t)sm_count() * 8, col_tiles);
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>({want, ceil_div(N, kBwdRowLanes), 65535}));
  return dim3((unsigned)col_tiles, (unsigned)slices);
}

}  // namespace

cudaError_t bias_gelu_forward(void* h, const void* a, const void* bias, int64_t N, int M,
                              DType dtype, cudaStream_t stream) {
  if (M < 1 || N < 0) return cudaErrorInvalidValue;
  if (N == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    return dispatch_vec<T>(choose_vec<T>(M, {h, a, bias}), [&](auto vec_c) -> cudaError_t {
      constexpr int VEC = decltype(vec_c)::value;
      const int64_t total_vecs = N * M / VEC;
      const int threads = 256;
      const int64_t blocks = std::min<int64_t>(ceil_div(total_vecs, threads), (int64_t)sm_count() * 16);
      bias_gelu_fwd_kernel<T, VEC><<<blocks, threads, 0, stream>>>(
          static_cast<T*>(h), static_cast<const T*>(a), static_cast<const T*>(bias), total_vecs, M);
      return cudaGetLastError();
    });
  });
}

size_t bias_gelu_backward_workspace_size(int64_t N, int M, DType dtype) {
  if (M < 1 || N <= 0) return 0;
  (void)dtype;
  // The scalar path has the most column tiles and so the fewest row slices; the widest
  // vector the fewest tiles and the most slices: size for the largest of the two.
  const dim3 wide = backward_grid(N, M, 8), narrow = backward_grid(N, M, 1);
  return (size_t)std::max(wide.y, narrow.y) * M * sizeof(float);
}

cudaError_t bias_gelu_backward(void* da, void* dbias, void* workspace, size_t workspace_bytes,
                               const void* dh, const void* a, const void* bias, int64_t N, int M,
                               DType dtype, cudaStream_t stream) {
  if (M < 1 || N < 0) return cudaErrorInvalidValue;
  if (N == 0) return cudaMemsetAsync(dbias, 0, (size_t)M * (dtype == DType::kFloat32 ? 4 : 2), stream);
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    return dispatch_vec<T>(choose_vec<T>(M, {da, dh, a, bias}), [&](auto vec_c) -> cudaError_t {
      constexpr int VEC = decltype(vec_c)::value;
      const dim3 grid = backward_grid(N, M, VEC);
      if (workspace == nullptr || workspace_bytes < (size_t)grid.y * M * sizeof(float))
        return cudaErrorInvalidValue;
      float* partial = static_cast<float*>(workspace);
      bias_gelu_bwd_kernel<T, VEC><<<grid, dim3(kBwdColThreads, kBwdRowLanes), 0, stream>>>(
          static_cast<T*>(da), partial, static_cast<const T*>(dh), static_cast<const T*>(a),
          static_cast<const T*>(bias), N, M);
      cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
      launch_column_sum(static_cast<T*>(dbias), partial, grid.y, M, stream);
      return cudaGetLastError();
    });
  });
}

// ------------------------------------------------------------------------------------------
// GEMMs with cuBLASLt epilogues

namespace {

thread_local char gemm_error_text[256] = "";

#if FASTGPT_HAVE_CUBLASLT

// cuBLASLt's status as ours: a refusal (shape, alignment, no algorithm) is NotSupported.
cudaError_t failed(cublasStatus_t status, const char* call) {
  std::snprintf(gemm_error_text, sizeof(gemm_error_text), "%.150s returned cuBLAS status %d", call, (int)status);
  return status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE ? cudaErrorNotSupported
                                                                                        : cudaErrorUnknown;
}

#define FASTGPT_LT(call)                                      \
  do {                                                        \
    const cublasStatus_t status_ = (call);                    \
    if (status_ != CUBLAS_STATUS_SUCCESS) return failed(status_, #call); \
  } while (0)

// One handle for the process: a cuBLASLt handle holds no per-device or per-stream state.
cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    return cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS ? h : nullptr;
  }();
  return handle;
}

// Owners of cuBLASLt descriptors (destroyed on every return path).
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  ~MatmulDesc() { if (desc) cublasLtMatmulDescDestroy(desc); }
};
struct Layout {
  cublasLtMatrixLayout_t layout = nullptr;
  ~Layout() { if (layout) cublasLtMatrixLayoutDestroy(layout); }
};
struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  ~Preference() { if (pref) cublasLtMatmulPreferenceDestroy(pref); }
};

// The column-major GEMM D (m x n, leading dimension m) = op(A) op(B) with `epilogue`, where A is
// stored (k x m, lda) when trans_a else (m x k, lda), and B (n x k, ldb) when trans_b else
// (k x n, ldb); fp32 accumulation. `bias` is the epilogue's bias or bias gradient vector, `aux`
// its GELU input matrix (m x n, leading dimension m), either nullptr when the epilogue has none.
cudaError_t lt_matmul(void* D, const void* A, bool trans_a, int64_t lda, const void* B, bool trans_b,
                      int64_t ldb, int64_t m, int64_t n, int64_t k, cudaDataType_t type,
                      cublasLtEpilogue_t epilogue, void* bias, void* aux, void* workspace,
                      size_t workspace_bytes, cudaStream_t stream) {
  cublasLtHandle_t handle = lt_handle();
  if (handle == nullptr) return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtCreate");
  MatmulDesc op;
  FASTGPT_LT(cublasLtMatmulDescCreate(&op.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  if (bias != nullptr) {   // bias and bias gradients in the operands' dtype (as D's, said explicitly)
    const int32_t bias_type = type;
    FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                              sizeof(bias_type)));
    FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (aux != nullptr) {
    const int64_t aux_ld = m;
    FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    FASTGPT_LT(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                              sizeof(aux_ld)));
  }
  Layout a_layout, b_layout, d_layout;
  FASTGPT_LT(cublasLtMatrixLayoutCreate(&a_layout.layout, type, trans_a ? k : m, trans_a ? m : k, lda));
  FASTGPT_LT(cublasLtMatrixLayoutCreate(&b_layout.layout, type, trans_b ? n : k, trans_b ? k : n, ldb));
  FASTGPT_LT(cublasLtMatrixLayoutCreate(&d_layout.layout, type, m, n, m));
  Preference preference;
  FASTGPT_LT(cublasLtMatmulPreferenceCreate(&preference.pref));
  const uint64_t max_workspace = workspace_bytes;
  FASTGPT_LT(cublasLtMatmulPreferenceSetAttribute(preference.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &max_workspace, sizeof(max_workspace)));
  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  FASTGPT_LT(cublasLtMatmulAlgoGetHeuristic(handle, op.desc, a_layout.layout, b_layout.layout, d_layout.layout,
                                            d_layout.layout, preference.pref, 1, &heuristic, &found));
  if (found == 0) return failed(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)");
  const float alpha = 1.f, beta = 0.f;
  FASTGPT_LT(cublasLtMatmul(handle, op.desc, &alpha, A, a_layout.layout, B, b_layout.layout, &beta, D,
                            d_layout.layout, D, d_layout.layout, &heuristic.algo, workspace, workspace_bytes,
                            stream));
  return cudaSuccess;
}

#undef FASTGPT_LT

// The cuBLASLt element type of a half dtype; false for fp32 (not offered, see the header).
bool lt_type(DType dtype, cudaDataType_t* type) {
  if (dtype == DType::kFloat16) *type = CUDA_R_16F;
  else if (dtype == DType::kBFloat16) *type = CUDA_R_16BF;
  else return false;
  return true;
}

// The checks every launcher shares: sizes, dtype and workspace; sets *type.
cudaError_t check_gemm(int64_t N, int M, int K, DType dtype, size_t workspace_bytes, cudaDataType_t* type) {
  if (!lt_type(dtype, type)) {
    std::snprintf(gemm_error_text, sizeof(gemm_error_text), "the cuBLASLt epilogues take float16 and bfloat16 only");
    return cudaErrorNotSupported;
  }
  if (N < 0 || M < 1 || K < 1 || M % 8 != 0 || K % 8 != 0 || workspace_bytes < kGemmWorkspaceBytes) {
    std::snprintf(gemm_error_text, sizeof(gemm_error_text),
                  "sizes must be positive multiples of 8 and the workspace kGemmWorkspaceBytes");
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

size_t element_bytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

#endif  // FASTGPT_HAVE_CUBLASLT

}  // namespace

bool gemm_epilogues_available() { return FASTGPT_HAVE_CUBLASLT; }

const char* gemm_epilogue_error() { return gemm_error_text; }

#if FASTGPT_HAVE_CUBLASLT

// pre^T (M x N) = W_fc (col-major M x K: w's rows, transposed) x^T (K x N); h^T = gelu(pre^T).
cudaError_t linear_bias_gelu(void* h, void* pre, const void* x, const void* w, const void* bias,
                             int64_t N, int M, int K, DType dtype, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
  cudaDataType_t type;
  if (const cudaError_t err = check_gemm(N, M, K, dtype, workspace_bytes, &type); err != cudaSuccess) return err;
  if (N == 0) return cudaSuccess;
  return lt_matmul(h, w, /*trans_a=*/true, K, x, /*trans_b=*/false, K, M, N, K, type,
                   CUBLASLT_EPILOGUE_GELU_AUX_BIAS, const_cast<void*>(bias), pre, workspace, workspace_bytes,
                   stream);
}

namespace {
// dpre^T (M x N) = w^T (w as stored: col-major M x K) dy^T (K x N), times gelu'(pre^T);
// with dbias (DGELU_BGRAD) also the sum of dpre^T along n (over the rows of dpre), else DGELU.
cudaError_t gelu_grad_gemm(void* dpre, void* dbias, const void* dy, const void* w, const void* pre, int64_t N,
                           int M, int K, DType dtype, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream) {
  cudaDataType_t type;
  if (const cudaError_t err = check_gemm(N, M, K, dtype, workspace_bytes, &type); err != cudaSuccess) return err;
  if (N == 0)
    return dbias != nullptr ? cudaMemsetAsync(dbias, 0, (size_t)M * element_bytes(dtype), stream) : cudaSuccess;
  return lt_matmul(dpre, w, /*trans_a=*/false, M, dy, /*trans_b=*/false, K, M, N, K, type,
                   dbias != nullptr ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU, dbias,
                   const_cast<void*>(pre), workspace, workspace_bytes, stream);
}
}  // namespace

cudaError_t matmul_gelu_grad_bias_grad(void* dpre, void* dbias, const void* dy, const void* w,
                                       const void* pre, int64_t N, int M, int K, DType dtype,
                                       void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (dbias == nullptr) return cudaErrorInvalidValue;
  return gelu_grad_gemm(dpre, dbias, dy, w, pre, N, M, K, dtype, workspace, workspace_bytes, stream);
}

// The same GEMM without the bias gradient (run 22: cuBLASLt ran DGELU_BGRAD at 177 TFLOP/s).
cudaError_t matmul_gelu_grad(void* dpre, const void* dy, const void* w, const void* pre, int64_t N, int M,
                             int K, DType dtype, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return gelu_grad_gemm(dpre, nullptr, dy, w, pre, N, M, K, dtype, workspace, workspace_bytes, stream);
}

// dw^T (K x M) = x^T (x as stored: col-major K x N) dy (dy as stored is col-major M x N: transposed);
// dbias: B's gradient (BGRADB), the sum of dy over k = N rows.
cudaError_t weight_grad_bias_grad(void* dw, void* dbias, const void* dy, const void* x, int64_t N,
                                  int M, int K, DType dtype, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream) {
  cudaDataType_t type;
  if (const cudaError_t err = check_gemm(N, M, K, dtype, workspace_bytes, &type); err != cudaSuccess) return err;
  if (N == 0) {
    const cudaError_t err = cudaMemsetAsync(dw, 0, (size_t)M * K * element_bytes(dtype), stream);
    return err != cudaSuccess ? err : cudaMemsetAsync(dbias, 0, (size_t)M * element_bytes(dtype), stream);
  }
  return lt_matmul(dw, x, /*trans_a=*/false, K, dy, /*trans_b=*/true, M, K, M, N, type,
                   CUBLASLT_EPILOGUE_BGRADB, dbias, nullptr, workspace, workspace_bytes, stream);
}

#else  // no cublasLt.h at build time

namespace {
cudaError_t not_built() {
  std::snprintf(gemm_error_text, sizeof(gemm_error_text),
                "fastgpt's extension was built without cublasLt.h (install nvidia-cublas or a full CUDA toolkit)");
  return cudaErrorNotSupported;
}
}  // namespace

cudaError_t linear_bias_gelu(void*, void*, const void*, const void*, const void*, int64_t, int, int, DType,
                             void*, size_t, cudaStream_t) {
  return not_built();
}

cudaError_t matmul_gelu_grad_bias_grad(void*, void*, const void*, const void*, const void*, int64_t, int, int,
                                       DType, void*, size_t, cudaStream_t) {
  return not_built();
}

cudaError_t matmul_gelu_grad(void*, const void*, const void*, const void*, int64_t, int, int, DType, void*,
                             size_t, cudaStream_t) {
  return not_built();
}

cudaError_t weight_grad_bias_grad(void*, void*, const void*, const void*, int64_t, int, int, DType, void*,
                                  size_t, cudaStream_t) {
  return not_built();
}

#endif  // FASTGPT_HAVE_CUBLASLT

}  // namespace fastgpt
