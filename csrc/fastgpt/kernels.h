/*
The C API of fastgpt's CUDA kernels: launchers over raw device pointers and a cudaStream_t.

Plain C++ (only <cuda_runtime_api.h>), so the torch-facing ops.cpp, the C++ test and anyone
embedding the kernels without PyTorch can call them. Implemented in layernorm.cu and mlp.cu (whose
GEMMs with epilogues are cuBLASLt's, called from the host).
Every tensor is dense row-major (contiguous); element types are given by DType; mean / rstd and
workspaces are fp32. Launchers return the launch status (cudaGetLastError()), never throw, and
never synchronise. Sizes: N >= 0 rows, 1 <= C <= kMaxChannels (layernorm), M >= 1 (bias+GELU).
*/
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace fastgpt {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Largest LayerNorm row length (a row lives in the registers of one group of <= 1024 threads).
constexpr int kMaxChannels = 16384;

// ---- layernorm.cu: fused residual-add + LayerNorm ----

// s = x + residual (a copy of x when residual == nullptr), rounded to the dtype;
// y = (s - mean) * rstd * weight + bias (bias may be nullptr); mean, rstd: (N,) fp32.
cudaError_t add_layernorm_forward(void* y, void* s, float* mean, float* rstd, const void* x,
                                  const void* residual, const void* weight, const void* bias,
                                  int64_t N, int C, float eps, DType dtype, cudaStream_t stream);

// Bytes of fp32 workspace add_layernorm_backward needs on the current device.
size_t add_layernorm_backward_workspace_size(int64_t N, int C, DType dtype);

// dx = d(loss)/ds (+ ds when ds != nullptr); dweight, dbias (dbias may be nullptr): column sums
// accumulated in fp32, deterministic (per-worker partial rows, then a fixed-order column sum).
cudaError_t add_layernorm_backward(void* dx, void* dweight, void* dbias, void* workspace,
                                   size_t workspace_bytes, const void* dy, const void* ds,
                                   const void* s, const void* weight, const float* mean,
                                   const float* rstd, int64_t N, int C, DType dtype,
                                   cudaStream_t stream);

// ---- mlp.cu: bias + GELU(tanh) epilogue ----

// h = gelu_tanh(a + bias), a and h (N, M), bias (M,).
cudaError_t bias_gelu_forward(void* h, const void* a, const void* bias, int64_t N, int M,
                              DType dtype, cudaStream_t stream);

size_t bias_gelu_backward_workspace_size(int64_t N, int M, DType dtype);

// da = dh * gelu_tanh'(a + bias); dbias = sum over rows of da (fp32, deterministic).
cudaError_t bias_gelu_backward(void* da, void* dbias, void* workspace, size_t workspace_bytes,
                               const void* dh, const void* a, const void* bias, int64_t N, int M,
                               DType dtype, cudaStream_t stream);

// ---- mlp.cu: the MLP's GEMMs with cuBLASLt epilogues (fp16 and bf16) ----
// Row-major operands; fp32 accumulation; bias and bias gradients in the operands' dtype. They
// need the cuBLASLt header at build time: without it (gemm_epilogues_available() false) every
// one returns cudaErrorNotSupported. cuBLASLt may also refuse a shape or alignment
// (cudaErrorNotSupported; then gemm_epilogue_error() says which call). Sizes must be multiples
// of 8 (cuBLASLt's alignment for the GELU auxiliary matrix), pointers 16-byte aligned.

bool gemm_epilogues_available();

// Workspace bytes every call below may use (any device memory of at least this size).
constexpr size_t kGemmWorkspaceBytes = size_t(32) << 20;

// The last failing cuBLASLt call of this thread and its status, for error messages.
const char* gemm_epilogue_error();

// pre = x @ w^T + bias, h = gelu_tanh(pre): x (N, K), w (M, K), bias (M,), h and pre (N, M).
cudaError_t linear_bias_gelu(void* h, void* pre, const void* x, const void* w, const void* bias,
                             int64_t N, int M, int K, DType dtype, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream);

// dpre = (dy @ w) * gelu_tanh'(pre), dbias = sum over rows of dpre: dy (N, K), w (K, M),
// pre and dpre (N, M), dbias (M,).
cudaError_t matmul_gelu_grad_bias_grad(void* dpre, void* dbias, const void* dy, const void* w,
                                       const void* pre, int64_t N, int M, int K, DType dtype,
                                       void* workspace, size_t workspace_bytes, cudaStream_t stream);

// dpre = (dy @ w) * gelu_tanh'(pre), as above without the bias gradient.
cudaError_t matmul_gelu_grad(void* dpre, const void* dy, const void* w, const void* pre, int64_t N, int M,
                             int K, DType dtype, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// dw = dy^T @ x, dbias = sum over rows of dy: dy (N, M), x (N, K), dw (M, K), dbias (M,).
cudaError_t weight_grad_bias_grad(void* dw, void* dbias, const void* dy, const void* x, int64_t N,
                                  int M, int K, DType dtype, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream);

}  // namespace fastgpt
