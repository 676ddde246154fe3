/*
Shared device helpers for fastgpt's CUDA kernels (no torch headers: every .cu that includes
only this compiles in seconds).

- Vec<T, N>: N elements of T moved as one aligned load/store. With N * sizeof(T) == 16 it is
  llm.c's Packed128 (one 128-bit LDG/STG per thread); N == 1 is the scalar fallback for rows
  whose length or base address is not 16-byte aligned.
- to_float / from_float: the only conversions the kernels use (fp16 and bf16 are computed in
  fp32; torch builds with __CUDA_NO_HALF_OPERATORS__, so no half arithmetic appears anywhere).
- warp_sum / block_sum / group_sum (of a float, or a float2 for two sums at once): deterministic
  tree reductions (the order never depends on timing).
- column_sum_kernel: the second, deterministic stage of every weight/bias gradient: fp32
  partial rows (one per worker of the first stage) summed down each column in a fixed order.
- sm_count: cached multiprocessor count, used to size grids and workspaces.
*/
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "fastgpt/kernels.h"

namespace fastgpt {

// ---- element conversions ----

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ---- vectorised loads and stores ----

template <int BYTES> struct RawWord;
template <> struct RawWord<16> { using type = int4; };
template <> struct RawWord<8> { using type = int2; };
template <> struct RawWord<4> { using type = int; };
template <> struct RawWord<2> { using type = short; };

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  static constexpr int size = N;
  using Raw = typename RawWord<sizeof(T) * N>::type;
  T v[N];

  __device__ __forceinline__ T& operator[](int i) { return v[i]; }
  __device__ __forceinline__ const T& operator[](int i) const { return v[i]; }

  __device__ __forceinline__ static Vec from_raw(Raw r) {
    Vec out;
    memcpy(&out, &r, sizeof(Vec));
    return out;
  }
  __device__ __forceinline__ Raw raw() const {
    Raw r;
    memcpy(&r, this, sizeof(Vec));
    return r;
  }
  // Plain load (kept in cache: weights, biases, data read again soon).
  __device__ __forceinline__ static Vec load(const T* p) {
    return from_raw(*reinterpret_cast<const Raw*>(p));
  }
  // Streaming load: data read once (evict-first), as llm.c's load128cs.
  __device__ __forceinline__ static Vec load_cs(const T* p) {
    return from_raw(__ldcs(reinterpret_cast<const Raw*>(p)));
  }
  __device__ __forceinline__ void store(T* p) const { *reinterpret_cast<Raw*>(p) = raw(); }
  __device__ __forceinline__ void store_cs(T* p) const { __stcs(reinterpret_cast<Raw*>(p), raw()); }
};

// Elements per 128-bit access.
template <typename T> constexpr int kVec128 = 16 / sizeof(T);

inline bool aligned16(const void* p) { return p == nullptr || (reinterpret_cast<uintptr_t>(p) % 16) == 0; }

// The vector width for rows of `n` elements: 128-bit when n is a multiple of it and every
// pointer (nullptr: absent, ignored) is 16-byte aligned, else 1 (the scalar fallback).
template <typename T>
inline int choose_vec(int n, std::initializer_list<const void*> pointers) {
  bool aligned = n % kVec128<T> == 0;
  for (const void* p : pointers) aligned = aligned && aligned16(p);
  return aligned ? kVec128<T> : 1;
}

// ---- reductions ----
// Over float (one sum) or float2 (two sums at once: interleaved shuffles, one pair of barriers).

__device__ __forceinline__ float shfl_xor(float v, int offset) { return __shfl_xor_sync(0xffffffffu, v, offset); }
__device__ __forceinline__ float2 shfl_xor(float2 v, int offset) {
  return make_float2(shfl_xor(v.x, offset), shfl_xor(v.y, offset));
}
__device__ __forceinline__ float plus(float a, float b) { return a + b; }
__device__ __forceinline__ float2 plus(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }

template <typename S>
__device__ __forceinline__ S warp_sum(S v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = plus(v, shfl_xor(v, offset));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, every thread calls it); every thread
// gets the result. The leading barrier lets consecutive calls reuse the buffer.
template <typename S>
__device__ __forceinline__ S block_sum(S v) {
  __shared__ S buf[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? buf[lane] : S{});
}

// Sum over a row group of `group` threads: one warp (shuffles only) or the whole block.
template <typename S>
__device__ __forceinline__ S group_sum(S v, int group) {
  return group == 32 ? warp_sum(v) : block_sum(v);
}

// ---- second stage of deterministic column sums ----

constexpr int kColumnSumCols = 32;
constexpr int kColumnSumSlices = 8;

// out[c] = sum_r partials[r * cols + c], fixed order: slice y sums rows y, y+8, ... (four
// running sums over consecutive steps, so four loads are in flight, combined in a fixed order);
// then the slices are added 0..7 by one thread. Block (32, 8), grid ceil(cols / 32).
template <typename OutT>
__global__ void column_sum_kernel(OutT* __restrict__ out, const float* __restrict__ partials,
                                  int64_t rows, int cols) {
  __shared__ float slice_sums[kColumnSumSlices][kColumnSumCols + 1];
  const int col = blockIdx.x * kColumnSumCols + threadIdx.x;
  constexpr int S = kColumnSumSlices;
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  if (col < cols) {
    int64_t r = threadIdx.y;
    for (; r + 3 * S < rows; r += 4 * S) {
      a0 += partials[r * cols + col];
      a1 += partials[(r + S) * cols + col];
      a2 += partials[(r + 2 * S) * cols + col];
      a3 += partials[(r + 3 * S) * cols + col];
    }
    for (; r < rows; r += S) a0 += partials[r * cols + col];
  }
  slice_sums[threadIdx.y][threadIdx.x] = (a0 + a1) + (a2 + a3);
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.f;
#pragma unroll
    for (int y = 0; y < kColumnSumSlices; ++y) total += slice_sums[y][threadIdx.x];
    out[col] = from_float<OutT>(total);
  }
}

template <typename OutT>
inline void launch_column_sum(OutT* out, const float* partials, int64_t rows, int cols, cudaStream_t stream) {
  const dim3 block(kColumnSumCols, kColumnSumSlices);
  const dim3 grid((cols + kColumnSumCols - 1) / kColumnSumCols);
  column_sum_kernel<OutT><<<grid, block, 0, stream>>>(out, partials, rows, cols);
}

// ---- host helpers ----

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Multiprocessor count of the current device, cached (the query is not free on every call).
inline int sm_count() {
  static int cached[64] = {0};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 108;
  if (cached[device] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 108;
    cached[device] = n;
  }
  return cached[device];
}

// Call f with a type tag for the dtype: f(float{}), f(__half{}) or f(__nv_bfloat16{}).
template <typename F>
inline cudaError_t dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace fastgpt
