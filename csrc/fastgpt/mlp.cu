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
*/
#include <algorithm>
#include <type_traits>

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

}  // namespace fastgpt
