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
of workers (row groups, one wave of blocks sized by the occupancy API) each takes rows w, w + W,
w + 2W, ... and accumulates its columns (in shared memory when a warp owns a row, which leaves
registers for more warps; in registers for block-wide rows); the warps of a block are added in
warp order, each block writes one fp32 partial row to the workspace, and column_sum_kernel
(common.cuh) adds those rows in a fixed order. Same inputs, same GPU ->
bit-identical gradients.

Latency. Each row costs one memory round trip: all of a row's loads (x, residual, weight, bias
in the forward; dy, s, ds in the backward) are issued before its first reduction, and the two
backward sums travel together (group_sum of a float2). Chunk counts need not be powers of two (a 768-wide
bf16 row is 3 vectors of 8 per lane of one warp).

Limits: contiguous (N, C) rows, 1 <= C <= 16384; x, residual, weight, bias of one dtype (fp32,
fp16, bf16); statistics and accumulation in fp32. Long rows (past ~6144 channels in bf16) hold
up to 32 values per thread in the backward and may spill registers (correct, slower).
*/
#include <algorithm>
#include <type_traits>

#include "fastgpt/common.cuh"

namespace fastgpt {
namespace {

constexpr int kMaxGroup = 512;        // threads of one row group (and of its block)
constexpr int kWarpRowsPerBlock = 8;  // rows per block when a warp owns a row (forward)
constexpr int kBwdWarpRowsPerBlock = 4;  // the backward's (each warp has a shared-memory slice)
constexpr int kMaxElemsPerThread = 32;
// Backward holds dy, s, ds and two fp32 accumulators per element: fewer elements per thread
// (24 lets a warp own a 768-wide bf16 row: shuffles only, no block barriers).
constexpr int kBwdElemsPerThread = 24;
// Vectors per thread that are instantiated; a plan rounds up to the next one.
constexpr int kChunkCounts[] = {1, 2, 3, 4, 6, 8, 16, 32};

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

  // Every load is issued before the first reduction (weight and bias too): one memory round
  // trip per row instead of two. s is kept packed in its dtype (it is rounded to it anyway),
  // which halves the registers a bf16 row needs and so raises the warps an SM can hold.
  V sv[CHUNKS], w[CHUNKS], b[CHUNKS];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * group + t;
    if (i < nvec) {
      const V a = V::load_cs(x + base + (int64_t)i * VEC);
      V r;
      if (residual != nullptr) r = V::load_cs(residual + base + (int64_t)i * VEC);
      w[k] = V::load(weight + (int64_t)i * VEC);
      if (bias != nullptr) b[k] = V::load(bias + (int64_t)i * VEC);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float f = residual != nullptr ? to_float(a[j]) + to_float(r[j]) : to_float(a[j]);
        sv[k][j] = from_float<T>(f);
        sum += to_float(sv[k][j]);  // normalise the s we return, rounded
      }
      sv[k].store(s_out + base + (int64_t)i * VEC);
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
        const float d = to_float(sv[k][j]) - mean;
        squares += d * d;
      }
    }
  }
  const float rstd = rsqrtf(group_sum(squares, group) * inv_c + eps);

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * group + t;
    if (i < nvec) {
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        float o = (to_float(sv[k][j]) - mean) * rstd * to_float(w[k][j]);
        if (bias != nullptr) o += to_float(b[k][j]);
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

// Where a backward thread keeps its running dweight / dbias sums. Register arrays cost 2 floats
// per element a thread owns (48 registers for a 768-wide bf16 row), which caps the warps an SM
// holds; when a warp owns a row (WARP_ROWS) they live in shared memory instead, one slice per
// warp, laid out [element slot][lane] so the 32 lanes of a warp hit 32 different banks.
template <int SLOTS, bool WARP_ROWS>
struct ColumnAccumulators;

template <int SLOTS>
struct ColumnAccumulators<SLOTS, false> {  // registers (a block-wide group owns a row)
  float dw[SLOTS], db[SLOTS];
  __device__ __forceinline__ ColumnAccumulators(float*) {
#pragma unroll
    for (int q = 0; q < SLOTS; ++q) dw[q] = db[q] = 0.f;
  }
  __device__ __forceinline__ void add(int q, float dw_v, float db_v) { dw[q] += dw_v; db[q] += db_v; }
  __device__ __forceinline__ float weight(int q) const { return dw[q]; }
  __device__ __forceinline__ float bias(int q) const { return db[q]; }
};

template <int SLOTS>
struct ColumnAccumulators<SLOTS, true> {  // this warp's slice of shared memory
  float* dw;
  float* db;
  __device__ __forceinline__ ColumnAccumulators(float* warp_slice)
      : dw(warp_slice + threadIdx.x % 32), db(warp_slice + SLOTS * 32 + threadIdx.x % 32) {
#pragma unroll
    for (int q = 0; q < SLOTS; ++q) dw[q * 32] = db[q * 32] = 0.f;
  }
  __device__ __forceinline__ void add(int q, float dw_v, float db_v) { dw[q * 32] += dw_v; db[q * 32] += db_v; }
  __device__ __forceinline__ float weight(int q) const { return dw[q * 32]; }
  __device__ __forceinline__ float bias(int q) const { return db[q * 32]; }
};

// Worker w (a row group) handles rows w, w + workers, ...; writes dx for them and accumulates
// dweight (and dbias when dbias_partial != nullptr) for all C columns. Each block then writes
// one fp32 partial row (at blockIdx.x): with WARP_ROWS the block's warps are added warp 0, 1,
// 2, ... in that order.
template <typename T, int VEC, int CHUNKS, bool WARP_ROWS>
__global__ void __launch_bounds__(kMaxGroup)
add_layernorm_bwd_kernel(T* __restrict__ dx, float* __restrict__ dweight_partial,
                         float* __restrict__ dbias_partial, const T* __restrict__ dy,
                         const T* __restrict__ ds, const T* __restrict__ s,
                         const T* __restrict__ weight, const float* __restrict__ mean,
                         const float* __restrict__ rstd, int64_t N, int C, int group, int64_t workers) {
  constexpr int SLOTS = CHUNKS * VEC;
  extern __shared__ float warp_columns[];  // WARP_ROWS: [warp][dw, db][SLOTS][32 lanes]
  using V = Vec<T, VEC>;
  const auto [worker, t] = group_position(group);
  const int nvec = C / VEC;
  const float inv_c = __frcp_rn((float)C);
  ColumnAccumulators<SLOTS, WARP_ROWS> acc(warp_columns + (threadIdx.x / 32) * 2 * SLOTS * 32);

  V w[CHUNKS];  // the same for every row
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k)
    if (k * group + t < nvec) w[k] = V::load(weight + (int64_t)(k * group + t) * VEC);

  // Every thread of a block-wide group runs the same number of iterations (its row loop
  // depends on the worker only), so the barriers in group_sum are reached by all.
  for (int64_t row = worker; row < N; row += workers) {
    const int64_t base = row * C;
    const float row_mean = mean[row], row_rstd = rstd[row];
    // dy, s and ds are all loaded before the reduction: one memory round trip per row.
    V dyv[CHUNKS], sv[CHUNKS], dsv[CHUNKS];
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int i = k * group + t;
      if (i < nvec) {
        dyv[k] = V::load_cs(dy + base + (int64_t)i * VEC);
        sv[k] = V::load_cs(s + base + (int64_t)i * VEC);
        if (ds != nullptr) dsv[k] = V::load_cs(ds + base + (int64_t)i * VEC);
      }
    }
    float sum_g = 0.f, sum_g_xhat = 0.f;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      if (k * group + t < nvec) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float d = to_float(dyv[k][j]);
          const float xhat = (to_float(sv[k][j]) - row_mean) * row_rstd;
          const float g = to_float(w[k][j]) * d;
          sum_g += g;
          sum_g_xhat += g * xhat;
          acc.add(k * VEC + j, d * xhat, d);
        }
      }
    }
    const float2 sums = group_sum(make_float2(sum_g, sum_g_xhat), group);
    const float mean_g = sums.x * inv_c, mean_g_xhat = sums.y * inv_c;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int i = k * group + t;
      if (i < nvec) {
        V out;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {  // x_hat and g recomputed: cheaper than registers
          const float xhat = (to_float(sv[k][j]) - row_mean) * row_rstd;
          float d = (to_float(w[k][j]) * to_float(dyv[k][j]) - mean_g - xhat * mean_g_xhat) * row_rstd;
          if (ds != nullptr) d += to_float(dsv[k][j]);
          out[j] = from_float<T>(d);
        }
        out.store_cs(dx + base + (int64_t)i * VEC);
      }
    }
  }

  float* dw_row = dweight_partial + (int64_t)blockIdx.x * C;
  float* db_row = dbias_partial != nullptr ? dbias_partial + (int64_t)blockIdx.x * C : nullptr;
  if constexpr (WARP_ROWS) {
    // column c = (k * 32 + lane) * VEC + j sits at slot k * VEC + j of lane `lane`
    __syncthreads();
    const int warps = blockDim.x / 32;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      const int i = c / VEC, lane = i % 32, slot = (i / 32) * VEC + c % VEC;
      float total_w = 0.f, total_b = 0.f;
      for (int wi = 0; wi < warps; ++wi) {
        const float* slice = warp_columns + wi * 2 * SLOTS * 32;
        total_w += slice[slot * 32 + lane];
        total_b += slice[(SLOTS + slot) * 32 + lane];
      }
      dw_row[c] = total_w;
      if (db_row != nullptr) db_row[c] = total_b;
    }
  } else {  // one row group per block: its registers go straight out
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int i = k * group + t;
      if (i < nvec) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          dw_row[i * VEC + j] = acc.weight(k * VEC + j);
          if (db_row != nullptr) db_row[i * VEC + j] = acc.bias(k * VEC + j);
        }
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
  const int needed = (int)ceil_div(nvec, group);
  int chunks = kChunkCounts[0];
  for (int c : kChunkCounts) {
    chunks = c;
    if (c >= needed) break;
  }
  return {vec, group, chunks, group == 32 ? 32 * kWarpRowsPerBlock : group};
}

// Calls f(integral_constant VEC, integral_constant CHUNKS) for the plan: the 128-bit path or the
// scalar fallback, times the chunk count (combinations over the register budget are never
// planned and not instantiated).
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
      case 3: return with_chunks(std::integral_constant<int, 3>{});
      case 4: return with_chunks(std::integral_constant<int, 4>{});
      case 6: return with_chunks(std::integral_constant<int, 6>{});
      case 8: return with_chunks(std::integral_constant<int, 8>{});
      case 16: return with_chunks(std::integral_constant<int, 16>{});
      case 32: return with_chunks(std::integral_constant<int, 32>{});
    }
    return cudaErrorInvalidValue;
  };
  if (plan.vec == 1) return with_vec(std::integral_constant<int, 1>{});
  return with_vec(std::integral_constant<int, kVec128<T>>{});
}

size_t backward_shared_bytes(const RowPlan& plan) {
  return plan.group == 32 ? (size_t)(plan.block / 32) * 2 * plan.chunks * plan.vec * 32 * sizeof(float) : 0;
}

// Blocks of the backward: one wave (as many as fit on the GPU at once, `blocks_per_sm` each),
// fewer when there are fewer rows. Each block writes one partial row.
int64_t backward_blocks(int64_t N, const RowPlan& plan, int blocks_per_sm) {
  const int64_t rows_per_block = plan.block / plan.group;
  const int64_t wave = (int64_t)sm_count() * std::max(blocks_per_sm, 1);
  return std::max<int64_t>(1, std::min(ceil_div(N, rows_per_block), wave));
}

// The most blocks of `block` threads an SM can hold: the workspace is sized for it.
int max_blocks_per_sm(int block) { return std::min(32, 2048 / block); }

// Resident blocks per SM of the backward instantiation <T, VEC, CHUNKS, WARP_ROWS> at `block`
// threads (its shared memory is a function of those), cached per device and block size.
template <typename T, int VEC, int CHUNKS, bool WARP_ROWS, typename Kernel>
int resident_blocks(Kernel kernel, int block, size_t shared_bytes) {
  static int cached[64][5] = {};  // [device][log2(block / 32)], block in 32..512
  int device = 0, size_index = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) device = 0;
  while (size_index < 4 && (32 << size_index) < block) ++size_index;
  int& n = cached[device][size_index];
  if (n == 0) {
    int found = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&found, kernel, block, shared_bytes) != cudaSuccess ||
        found <= 0)
      found = 1;
    n = std::min(found, max_blocks_per_sm(block));
  }
  return n;
}

template <typename T>
RowPlan backward_plan(int C, int vec) {
  RowPlan plan = plan_rows(C, vec, kBwdElemsPerThread);
  if (plan.group == 32) plan.block = 32 * kBwdWarpRowsPerBlock;
  return plan;
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
  // Alignment decides the vector width, hence the plan: size for the larger of the aligned and
  // the scalar plan, each at the most blocks an SM can hold.
  RowPlan plan{};
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    plan = backward_plan<T>(C, C % kVec128<T> == 0 ? kVec128<T> : 1);
    return cudaSuccess;
  });
  const RowPlan scalar = backward_plan<float>(C, 1);
  const int64_t blocks = std::max(backward_blocks(N, plan, max_blocks_per_sm(plan.block)),
                                  backward_blocks(N, scalar, max_blocks_per_sm(scalar.block)));
  return 2 * (size_t)blocks * C * sizeof(float);
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
    const RowPlan plan = backward_plan<T>(C, choose_vec<T>(C, {dx, dy, ds, s, weight}));
    return dispatch_plan<T>(plan, [&](auto vec_c, auto chunks_c) -> cudaError_t {
      constexpr int VEC = decltype(vec_c)::value, CHUNKS = decltype(chunks_c)::value;
      const size_t shared_bytes = backward_shared_bytes(plan);
      auto with_layout = [&](auto warp_rows_c) -> cudaError_t {
        constexpr bool WARP_ROWS = decltype(warp_rows_c)::value;
        const auto kernel = add_layernorm_bwd_kernel<T, VEC, CHUNKS, WARP_ROWS>;
        const int per_sm = resident_blocks<T, VEC, CHUNKS, WARP_ROWS>(kernel, plan.block, shared_bytes);
        const int64_t blocks = backward_blocks(N, plan, per_sm);
        if (workspace == nullptr || workspace_bytes < 2 * (size_t)blocks * C * sizeof(float))
          return cudaErrorInvalidValue;
        float* dw_partial = static_cast<float*>(workspace);
        float* db_partial = dbias != nullptr ? dw_partial + blocks * C : nullptr;
        const int64_t workers = blocks * (plan.block / plan.group);
        kernel<<<blocks, plan.block, shared_bytes, stream>>>(
            static_cast<T*>(dx), dw_partial, db_partial, static_cast<const T*>(dy), static_cast<const T*>(ds),
            static_cast<const T*>(s), static_cast<const T*>(weight), mean, rstd, N, C, plan.group, workers);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
        launch_column_sum(static_cast<T*>(dweight), dw_partial, blocks, C, stream);
        if (dbias != nullptr) launch_column_sum(static_cast<T*>(dbias), db_partial, blocks, C, stream);
        return cudaGetLastError();
      };
      return plan.group == 32 ? with_layout(std::true_type{}) : with_layout(std::false_type{});
    });
  });
}

}  // namespace fastgpt
