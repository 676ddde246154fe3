/*
Fused residual-add + LayerNorm, forward and backward (the CUDA twin of kernels/layernorm.py).

What is fused, and why. A GPT block does s = x + residual and then LayerNorm(s); unfused that
is three passes over (N, C) activations (add, statistics, normalise) and the backward another
three. Here the forward reads x and residual once, writes s (needed by the next residual) and y,
and the two row statistics (mean, rstd, fp32) the backward needs; the backward reads dy, s and
the optional extra gradient ds once and writes dx, and gets dweight / dbias from the same pass.

How. A row is owned by a "row group": one warp (rows up to a few thousand channels; warp
shuffles only, 8 rows per 256-thread block) or a whole block of up to 512 threads for long rows
(block reductions through shared memory). Each thread holds its slice of the row in registers,
loaded with 128-bit accesses (Vec<T, 16 / sizeof(T)>, llm.c's x128) when C is a multiple of the
vector width and every pointer is 16-byte aligned, else one element at a time. Statistics are
two-pass over the registers (mean, then sum of squared deviations): no E[x^2] - E[x]^2
cancellation. s is rounded to the dtype before the statistics, so the forward normalises exactly
the s it returns and the backward recomputes x_hat from it bit for bit.

Backward, per row:  x_hat = (s - mean) * rstd,  g = weight * dy,
                    dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) + ds.
dweight = sum_rows dy * x_hat and dbias = sum_rows dy, deterministic without atomics: a fixed set
of workers (row groups) each takes rows w, w + W, w + 2W, ... and accumulates its columns in
registers, writes one fp32 partial row to the workspace, and column_sum_kernel (common.cuh) adds
the W partial rows in a fixed order. Same inputs, same GPU -> bit-identical gradients.

Limits: contiguous (N, C) rows, 1 <= C <= 16384; x, residual, weight, bias of one dtype (fp32,
fp16, bf16); statistics and accumulation in fp32. Rows past ~8192 channels (bf16) hold 32 values
per thread in the backward and may spill registers (correct, slower).
*/
#include <algorithm>
#include <type_traits>

#include "fastgpt/common.cuh"

namespace fastgpt {
namespace {

constexpr int kMaxGroup = 512;        // threads of one row group (and of its block)
constexpr int kWarpRowsPerBlock = 8;  // rows per block when a warp owns a row
constexpr int kMaxElemsPerThread = 32;

// ------------------------------------------------------------------------------------------
// kernels

// Which row group this thread is in (its global index) and its rank t within the group.
struct GroupPosition {
  int64_t index;
  int t;
};

__device__ __forceinline__ GroupPosition group_position(int group) {
  return {(int64_t)blockIdx.x * (blockDim.x / group) + threadIdx.x / group, (int)(threadIdx.x % group)};
}

template <typename T, int VEC, int CHUNKS>
__global__ void __launch_bounds__(kMaxGroup)
add_layernorm_fwd_kernel(T* __restrict__ y, T* __restrict__ s_out, float* __restrict__ mean_out,
                         float* __restrict__ rstd_out, const T* __restrict__ x,
                         const T* __restrict__ residual, const T* __restrict__ weight,
                         const T* __restrict__ bias, int64_t N, int C, float eps, int group) {
  using V = Vec<T, VEC>;
  const auto [row, t] = group_position(group);
  if (row >= N) return;  // a whole warp, or the whole block: no barrier is left waiting
  const int nvec = C / VEC;
  const int64_t base = row * C;

  float v[CHUNKS][VEC];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * group + t;
    if (i < nvec) {
      const V a = V::load_cs(x + base + (int64_t)i * VEC);
      V b;
      if (residual != nullptr) b = V::load_cs(residual + base + (int64_t)i * VEC);
      V s;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float f = residual != nullptr ? to_float(a[j]) + to_float(b[j]) : to_float(a[j]);
        s[j] = from_float<T>(f);
        v[k][j] = to_float(s[j]);  // normalise the s we return, rounded
        sum += v[k][j];
      }
      s.store(s_out + base + (int64_t)i * VEC);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[k][j] = 0.f;
    }
  }
  const float inv_c = __frcp_rn((float)C);  // exact for powers of two: C = 1 gives x_hat = 0 exactly
  const float mean = group_sum(sum, group) * inv_c;

  float squares = 0.f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    if (k * group + t < nvec) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = v[k][j] - mean;
        squares += d * d;
      }
    }
  }
  const float rstd = rsqrtf(group_sum(squares, group) * inv_c + eps);

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * group + t;
    if (i < nvec) {
      const V w = V::load(weight + (int64_t)i * VEC);
      V b;
      if (bias != nullptr) b = V::load(bias + (int64_t)i * VEC);
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        float o = (v[k][j] - mean) * rstd * to_float(w[j]);
        if (bias != nullptr) o += to_float(b[j]);
        out[j] = from_float<T>(o);
      }
      out.store_cs(y + base + (int64_t)i * VEC);
    }
  }
  if (t == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// Worker w (a row group) handles rows w, w + workers, ...; writes dx for them and one fp32 row
// of dweight partials (and of dbias partials when dbias_partial != nullptr) for all C columns.
template <typename T, int VEC, int CHUNKS>
__global__ void __launch_bounds__(kMaxGroup)
add_layernorm_bwd_kernel(T* __restrict__ dx, float* __restrict__ dweight_partial,
                         float* __restrict__ dbias_partial, const T* __restrict__ dy,
                         const T* __restrict__ ds, const T* __restrict__ s,
                         const T* __restrict__ weight, const float* __restrict__ mean,
                         const float* __restrict__ rstd, int64_t N, int C, int group, int64_t workers) {
  using V = Vec<T, VEC>;
  const auto [worker, t] = group_position(group);
  const int nvec = C / VEC;
  const float inv_c = __frcp_rn((float)C);

  float dw_acc[CHUNKS][VEC], db_acc[CHUNKS][VEC];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k)
#pragma unroll
    for (int j = 0; j < VEC; ++j) dw_acc[k][j] = db_acc[k][j] = 0.f;

  // Every thread of a block-wide group runs the same number of iterations (its row loop
  // depends on the worker only), so the barriers in group_sum are reached by all.
  for (int64_t row = worker; row < N; row += workers) {
    const int64_t base = row * C;
    const float row_mean = mean[row], row_rstd = rstd[row];
    float g[CHUNKS][VEC], xhat[CHUNKS][VEC];
    float sum_g = 0.f, sum_g_xhat = 0.f;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int i = k * group + t;
      if (i < nvec) {
        const V dyv = V::load_cs(dy + base + (int64_t)i * VEC);
        const V sv = V::load_cs(s + base + (int64_t)i * VEC);
        const V w = V::load(weight + (int64_t)i * VEC);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float d = to_float(dyv[j]);
          xhat[k][j] = (to_float(sv[j]) - row_mean) * row_rstd;
          g[k][j] = to_float(w[j]) * d;
          sum_g += g[k][j];
          sum_g_xhat += g[k][j] * xhat[k][j];
          dw_acc[k][j] += d * xhat[k][j];
          db_acc[k][j] += d;
        }
      }
    }
    const float mean_g = group_sum(sum_g, group) * inv_c;
    const float mean_g_xhat = group_sum(sum_g_xhat, group) * inv_c;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int i = k * group + t;
      if (i < nvec) {
        V extra;
        if (ds != nullptr) extra = V::load_cs(ds + base + (int64_t)i * VEC);
        V out;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          float d = (g[k][j] - mean_g - xhat[k][j] * mean_g_xhat) * row_rstd;
          if (ds != nullptr) d += to_float(extra[j]);
          out[j] = from_float<T>(d);
        }
        out.store_cs(dx + base + (int64_t)i * VEC);
      }
    }
  }

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * group + t;
    if (i < nvec) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        dweight_partial[worker * C + (int64_t)i * VEC + j] = dw_acc[k][j];
        if (dbias_partial != nullptr) dbias_partial[worker * C + (int64_t)i * VEC + j] = db_acc[k][j];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// launchers

// How a row of C elements is split: `group` threads (32 = one warp, else the whole block),
// each holding `chunks` vectors of `vec` elements.
struct RowPlan {
  int vec, group, chunks, block;
};

RowPlan plan_rows(int C, int vec, int elems_per_thread) {
  const int nvec = C / vec;
  const int max_chunks = elems_per_thread / vec > 0 ? elems_per_thread / vec : 1;
  int group = 32;
  while (group < kMaxGroup && ceil_div(nvec, group) > max_chunks) group *= 2;
  int chunks = 1;
  while (chunks < ceil_div(nvec, group)) chunks *= 2;
  return {vec, group, chunks, group == 32 ? 32 * kWarpRowsPerBlock : group};
}

// Calls f(integral_constant VEC, integral_constant CHUNKS) for the plan: the 128-bit path or the
// scalar fallback, times the power-of-two chunk count (combinations over the register budget
// are never planned and not instantiated).
template <typename T, typename F>
cudaError_t dispatch_plan(const RowPlan& plan, F&& f) {
  auto with_vec = [&](auto vec_c) -> cudaError_t {
    constexpr int VEC = decltype(vec_c)::value;
    auto with_chunks = [&](auto chunks_c) -> cudaError_t {
      if constexpr (VEC * decltype(chunks_c)::value > kMaxElemsPerThread) return cudaErrorInvalidValue;
      else return f(vec_c, chunks_c);
    };
    switch (plan.chunks) {
      case 1: return with_chunks(std::integral_constant<int, 1>{});
      case 2: return with_chunks(std::integral_constant<int, 2>{});
      case 4: return with_chunks(std::integral_constant<int, 4>{});
      case 8: return with_chunks(std::integral_constant<int, 8>{});
      case 16: return with_chunks(std::integral_constant<int, 16>{});
      case 32: return with_chunks(std::integral_constant<int, 32>{});
    }
    return cudaErrorInvalidValue;
  };
  if (plan.vec == 1) return with_vec(std::integral_constant<int, 1>{});
  return with_vec(std::integral_constant<int, kVec128<T>>{});
}

// Backward holds dy, x_hat and two accumulators per element: fewer elements per thread.
constexpr int kBwdElemsPerThread = 16;

int64_t backward_workers(int64_t N, const RowPlan& plan) {
  const int64_t rows_per_block = plan.block / plan.group;
  const int64_t target = (int64_t)sm_count() * 1024 / plan.group;  // ~1024 threads per SM
  const int64_t workers = N < target ? N : target;
  return ceil_div(workers > 0 ? workers : 1, rows_per_block) * rows_per_block;
}

template <typename T>
RowPlan backward_plan(int C, const void* dx, const void* dy, const void* ds, const void* s, const void* w) {
  return plan_rows(C, choose_vec<T>(C, {dx, dy, ds, s, w}), kBwdElemsPerThread);
}

}  // namespace

cudaError_t add_layernorm_forward(void* y, void* s, float* mean, float* rstd, const void* x,
                                  const void* residual, const void* weight, const void* bias,
                                  int64_t N, int C, float eps, DType dtype, cudaStream_t stream) {
  if (C < 1 || C > kMaxChannels || N < 0) return cudaErrorInvalidValue;
  if (N == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const RowPlan plan = plan_rows(C, choose_vec<T>(C, {y, s, x, residual, weight, bias}), kMaxElemsPerThread);
    return dispatch_plan<T>(plan, [&](auto vec_c, auto chunks_c) -> cudaError_t {
      constexpr int VEC = decltype(vec_c)::value, CHUNKS = decltype(chunks_c)::value;
      const int64_t grid = ceil_div(N, plan.block / plan.group);
      add_layernorm_fwd_kernel<T, VEC, CHUNKS><<<grid, plan.block, 0, stream>>>(
          static_cast<T*>(y), static_cast<T*>(s), mean, rstd, static_cast<const T*>(x),
          static_cast<const T*>(residual), static_cast<const T*>(weight), static_cast<const T*>(bias), N, C,
          eps, plan.group);
      return cudaGetLastError();
    });
  });
}

size_t add_layernorm_backward_workspace_size(int64_t N, int C, DType dtype) {
  if (C < 1 || C > kMaxChannels || N <= 0) return 0;
  // Alignment decides the vector width, not the worker count: plan with aligned pointers.
  RowPlan plan{};
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    plan = plan_rows(C, C % kVec128<T> == 0 ? kVec128<T> : 1, kBwdElemsPerThread);
    return cudaSuccess;
  });
  const RowPlan scalar = plan_rows(C, 1, kBwdElemsPerThread);
  const int64_t workers = std::max(backward_workers(N, plan), backward_workers(N, scalar));
  return 2 * (size_t)workers * C * sizeof(float);
}

cudaError_t add_layernorm_backward(void* dx, void* dweight, void* dbias, void* workspace,
                                   size_t workspace_bytes, const void* dy, const void* ds,
                                   const void* s, const void* weight, const float* mean,
                                   const float* rstd, int64_t N, int C, DType dtype,
                                   cudaStream_t stream) {
  if (C < 1 || C > kMaxChannels || N < 0) return cudaErrorInvalidValue;
  if (N == 0) {  // no rows: the parameter gradients are zero
    const size_t bytes = (size_t)C * (dtype == DType::kFloat32 ? 4 : 2);
    cudaError_t err = cudaMemsetAsync(dweight, 0, bytes, stream);
    if (err == cudaSuccess && dbias != nullptr) err = cudaMemsetAsync(dbias, 0, bytes, stream);
    return err;
  }
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const RowPlan plan = backward_plan<T>(C, dx, dy, ds, s, weight);
    const int64_t workers = backward_workers(N, plan);
    if (workspace == nullptr || workspace_bytes < 2 * (size_t)workers * C * sizeof(float))
      return cudaErrorInvalidValue;
    float* dw_partial = static_cast<float*>(workspace);
    float* db_partial = dbias != nullptr ? dw_partial + workers * C : nullptr;
    const cudaError_t err = dispatch_plan<T>(plan, [&](auto vec_c, auto chunks_c) -> cudaError_t {
      constexpr int VEC = decltype(vec_c)::value, CHUNKS = decltype(chunks_c)::value;
      const int64_t grid = workers / (plan.block / plan.group);
      add_layernorm_bwd_kernel<T, VEC, CHUNKS><<<grid, plan.block, 0, stream>>>(
          static_cast<T*>(dx), dw_partial, db_partial, static_cast<const T*>(dy), static_cast<const T*>(ds),
          static_cast<const T*>(s), static_cast<const T*>(weight), mean, rstd, N, C, plan.group, workers);
      return cudaGetLastError();
    });
    if (err != cudaSuccess) return err;
    launch_column_sum(static_cast<T*>(dweight), dw_partial, workers, C, stream);
    if (dbias != nullptr) launch_column_sum(static_cast<T*>(dbias), db_partial, workers, C, stream);
    return cudaGetLastError();
  });
}

}  // namespace fastgpt
