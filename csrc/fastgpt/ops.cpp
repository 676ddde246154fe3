/*
The torch-facing side of fastgpt's CUDA kernels: input checks, output allocation and the
torch.library registration of the ops in namespace fastgpt_cuda (called from Python as
torch.ops.fastgpt_cuda.<op>; fake implementations for torch.compile live in fastgpt/_cuda.py).

The kernels themselves (layernorm.cu, mlp.cu) see no torch header; this file sees no CUDA
device code, so it is compiled by the host compiler. It includes c10/cuda/CUDAStream.h rather
than ATen/cuda/CUDAContext.h (which pulls in cuSPARSE/cuBLAS headers) for the current stream.

Every check is a TORCH_CHECK naming the op and the argument: device (all on one CUDA device),
dtype (float32, float16, bfloat16; all of one dtype), shape and contiguity.
*/
#include <optional>
#include <string>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fastgpt/kernels.h"

namespace fastgpt {
namespace {

using at::Tensor;

// Numbers and shapes in error messages are formatted with std::to_string, never streamed: on the
// H100 build (a custom GCC at build time, another libstdc++ at run time) every TORCH_CHECK that
// streamed an integer into its message crashed the process (SIGSEGV, run 6 of
// benchmarks/NOTES.md) while messages made only of strings raised cleanly. Streaming an integer
// goes through the locale's num_put facet, the part of libstdc++ most exposed to such a mismatch.
std::string num(int64_t v) { return std::to_string(v); }

std::string shape_str(at::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

DType to_dtype(const char* op, const char* name, const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", name, " must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

// `t` is a contiguous CUDA tensor on `like`'s device with the expected dtype and shape.
void check_tensor(const char* op, const char* name, const Tensor& t, const Tensor& like,
                  at::ScalarType dtype, at::IntArrayRef shape) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but the input is on ",
              like.device(), "; put all tensors on one device");
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have dtype ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape_str(shape), ", got ", shape_str(t.sizes()));
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (call .contiguous() first)");
}

// The (N, C) input every op starts from.
void check_input(const char* op, const char* name, const Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  to_dtype(op, name, t);
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D (rows, features), got shape ", shape_str(t.sizes()));
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (call .contiguous() first)");
}

void check_channels(const char* op, int64_t C) {
  TORCH_CHECK(C >= 1 && C <= kMaxChannels, op, ": the normalised dimension must be in [1, ", num(kMaxChannels),
              "], got ", num(C));
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA error: ", cudaGetErrorString(err));
}

cudaStream_t current_stream(const Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

const void* data_or_null(const std::optional<Tensor>& t) {
  return t.has_value() ? t->data_ptr() : nullptr;
}

// ---- fused residual-add + LayerNorm ----

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layernorm_fwd(const Tensor& x, const std::optional<Tensor>& residual,
                                                             const Tensor& weight, const std::optional<Tensor>& bias,
                                                             double eps) {
  constexpr const char* op = "fastgpt_cuda::add_layernorm_fwd";
  check_input(op, "x", x);
  const int64_t N = x.size(0), C = x.size(1);
  check_channels(op, C);
  TORCH_CHECK(eps >= 0.0, op, ": eps must be >= 0, got ", std::to_string(eps));
  if (residual.has_value()) check_tensor(op, "residual", *residual, x, x.scalar_type(), x.sizes());
  check_tensor(op, "weight", weight, x, x.scalar_type(), {C});
  if (bias.has_value()) check_tensor(op, "bias", *bias, x, x.scalar_type(), {C});

  const c10::cuda::CUDAGuard guard(x.device());
  Tensor y = at::empty_like(x), s = at::empty_like(x);
  Tensor mean = at::empty({N}, x.options().dtype(at::kFloat));
  Tensor rstd = at::empty({N}, x.options().dtype(at::kFloat));
  check_launch(op, add_layernorm_forward(y.data_ptr(), s.data_ptr(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                         x.data_ptr(), data_or_null(residual), weight.data_ptr(),
                                         data_or_null(bias), N, (int)C, (float)eps, to_dtype(op, "x", x),
                                         current_stream(x)));
  return {y, s, mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> add_layernorm_bwd(const Tensor& dy, const std::optional<Tensor>& ds,
                                                     const Tensor& s, const Tensor& weight, const Tensor& mean,
                                                     const Tensor& rstd, bool has_bias) {
  constexpr const char* op = "fastgpt_cuda::add_layernorm_bwd";
  check_input(op, "dy", dy);
  const int64_t N = dy.size(0), C = dy.size(1);
  check_channels(op, C);
  if (ds.has_value()) check_tensor(op, "ds", *ds, dy, dy.scalar_type(), dy.sizes());
  check_tensor(op, "s", s, dy, dy.scalar_type(), dy.sizes());
  check_tensor(op, "weight", weight, dy, dy.scalar_type(), {C});
  check_tensor(op, "mean", mean, dy, at::kFloat, {N});
  check_tensor(op, "rstd", rstd, dy, at::kFloat, {N});

  const c10::cuda::CUDAGuard guard(dy.device());
  const DType dtype = to_dtype(op, "dy", dy);
  Tensor dx = at::empty_like(dy);
  Tensor dweight = at::empty_like(weight);
  Tensor dbias = has_bias ? at::empty_like(weight) : at::empty({0}, weight.options());
  const size_t workspace_bytes = add_layernorm_backward_workspace_size(N, (int)C, dtype);
  Tensor workspace = at::empty({(int64_t)(workspace_bytes / sizeof(float))}, dy.options().dtype(at::kFloat));
  check_launch(op, add_layernorm_backward(dx.data_ptr(), dweight.data_ptr(), has_bias ? dbias.data_ptr() : nullptr,
                                          workspace.data_ptr(), workspace_bytes, dy.data_ptr(),
                                          data_or_null(ds), s.data_ptr(), weight.data_ptr(),
                                          mean.data_ptr<float>(), rstd.data_ptr<float>(), N, (int)C, dtype,
                                          current_stream(dy)));
  return {dx, dweight, dbias};
}

// ---- bias + GELU(tanh) ----

Tensor bias_gelu_fwd(const Tensor& a, const Tensor& bias) {
  constexpr const char* op = "fastgpt_cuda::bias_gelu_fwd";
  check_input(op, "a", a);
  const int64_t N = a.size(0), M = a.size(1);
  TORCH_CHECK(M >= 1 && M <= INT32_MAX, op, ": a must have between 1 and 2**31 - 1 columns, got ", num(M));
  check_tensor(op, "bias", bias, a, a.scalar_type(), {M});

  const c10::cuda::CUDAGuard guard(a.device());
  Tensor h = at::empty_like(a);
  check_launch(op, bias_gelu_forward(h.data_ptr(), a.data_ptr(), bias.data_ptr(), N, (int)M,
                                     to_dtype(op, "a", a), current_stream(a)));
  return h;
}

std::tuple<Tensor, Tensor> bias_gelu_bwd(const Tensor& dh, const Tensor& a, const Tensor& bias) {
  constexpr const char* op = "fastgpt_cuda::bias_gelu_bwd";
  check_input(op, "dh", dh);
  const int64_t N = dh.size(0), M = dh.size(1);
  TORCH_CHECK(M >= 1 && M <= INT32_MAX, op, ": dh must have between 1 and 2**31 - 1 columns, got ", num(M));
  check_tensor(op, "a", a, dh, dh.scalar_type(), dh.sizes());
  check_tensor(op, "bias", bias, dh, dh.scalar_type(), {M});

  const c10::cuda::CUDAGuard guard(dh.device());
  const DType dtype = to_dtype(op, "dh", dh);
  Tensor da = at::empty_like(dh);
  Tensor dbias = at::empty_like(bias);
  const size_t workspace_bytes = bias_gelu_backward_workspace_size(N, (int)M, dtype);
  Tensor workspace = at::empty({(int64_t)(workspace_bytes / sizeof(float))}, dh.options().dtype(at::kFloat));
  check_launch(op, bias_gelu_backward(da.data_ptr(), dbias.data_ptr(), workspace.data_ptr(), workspace_bytes,
                                      dh.data_ptr(), a.data_ptr(), bias.data_ptr(), N, (int)M, dtype,
                                      current_stream(dh)));
  return {da, dbias};
}

// ---- the MLP's GEMMs with cuBLASLt epilogues (fp16, bf16; sizes multiples of 8) ----

void check_gemm_operand(const char* op, const char* name, const Tensor& t) {
  check_input(op, name, t);
  TORCH_CHECK(t.scalar_type() != at::kFloat, op, ": ", name, " must be float16 or bfloat16 (the cuBLASLt "
              "epilogues' GELU input is kept in the output's dtype), got float32");
  TORCH_CHECK(t.size(1) % 8 == 0, op, ": ", name, " must have a multiple of 8 columns, got ", num(t.size(1)));
}

void check_gemm_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": ", cudaGetErrorString(err), " (", gemm_epilogue_error(), ")");
}

Tensor gemm_workspace(const Tensor& like) {
  return at::empty({(int64_t)kGemmWorkspaceBytes}, like.options().dtype(at::kByte));
}

std::tuple<Tensor, Tensor> linear_bias_gelu_op(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  constexpr const char* op = "fastgpt_cuda::linear_bias_gelu";
  check_gemm_operand(op, "x", x);
  check_gemm_operand(op, "weight", weight);
  const int64_t N = x.size(0), K = x.size(1), M = weight.size(0);
  check_tensor(op, "weight", weight, x, x.scalar_type(), {M, K});
  TORCH_CHECK(M % 8 == 0, op, ": weight must have a multiple of 8 rows, got ", num(M));
  check_tensor(op, "bias", bias, x, x.scalar_type(), {M});

  const c10::cuda::CUDAGuard guard(x.device());
  Tensor h = at::empty({N, M}, x.options()), pre = at::empty({N, M}, x.options());
  Tensor workspace = gemm_workspace(x);
  check_gemm_launch(op, linear_bias_gelu(h.data_ptr(), pre.data_ptr(), x.data_ptr(), weight.data_ptr(),
                                         bias.data_ptr(), N, (int)M, (int)K, to_dtype(op, "x", x),
                                         workspace.data_ptr(), kGemmWorkspaceBytes, current_stream(x)));
  return {h, pre};
}

// dy (N, K), weight (K, M), pre (N, M) of the GELU-gradient GEMMs; returns M.
int64_t check_gelu_grad_operands(const char* op, const Tensor& dy, const Tensor& weight, const Tensor& pre) {
  check_gemm_operand(op, "dy", dy);
  check_gemm_operand(op, "pre", pre);
  const int64_t N = dy.size(0), K = dy.size(1), M = pre.size(1);
  check_tensor(op, "weight", weight, dy, dy.scalar_type(), {K, M});
  check_tensor(op, "pre", pre, dy, dy.scalar_type(), {N, M});
  return M;
}

std::tuple<Tensor, Tensor> matmul_gelu_grad_bias_grad_op(const Tensor& dy, const Tensor& weight, const Tensor& pre) {
  constexpr const char* op = "fastgpt_cuda::matmul_gelu_grad_bias_grad";
  const int64_t M = check_gelu_grad_operands(op, dy, weight, pre), N = dy.size(0), K = dy.size(1);

  const c10::cuda::CUDAGuard guard(dy.device());
  Tensor dpre = at::empty({N, M}, dy.options()), dbias = at::empty({M}, dy.options());
  Tensor workspace = gemm_workspace(dy);
  check_gemm_launch(op, matmul_gelu_grad_bias_grad(dpre.data_ptr(), dbias.data_ptr(), dy.data_ptr(),
                                                   weight.data_ptr(), pre.data_ptr(), N, (int)M, (int)K,
                                                   to_dtype(op, "dy", dy), workspace.data_ptr(),
                                                   kGemmWorkspaceBytes, current_stream(dy)));
  return {dpre, dbias};
}

Tensor matmul_gelu_grad_op(const Tensor& dy, const Tensor& weight, const Tensor& pre) {
  constexpr const char* op = "fastgpt_cuda::matmul_gelu_grad";
  const int64_t M = check_gelu_grad_operands(op, dy, weight, pre), N = dy.size(0), K = dy.size(1);

  const c10::cuda::CUDAGuard guard(dy.device());
  Tensor dpre = at::empty({N, M}, dy.options());
  Tensor workspace = gemm_workspace(dy);
  check_gemm_launch(op, matmul_gelu_grad(dpre.data_ptr(), dy.data_ptr(), weight.data_ptr(), pre.data_ptr(), N,
                                         (int)M, (int)K, to_dtype(op, "dy", dy), workspace.data_ptr(),
                                         kGemmWorkspaceBytes, current_stream(dy)));
  return dpre;
}

std::tuple<Tensor, Tensor> weight_grad_bias_grad_op(const Tensor& dy, const Tensor& x) {
  constexpr const char* op = "fastgpt_cuda::weight_grad_bias_grad";
  check_gemm_operand(op, "dy", dy);
  check_gemm_operand(op, "x", x);
  const int64_t N = dy.size(0), M = dy.size(1), K = x.size(1);
  check_tensor(op, "x", x, dy, dy.scalar_type(), {N, K});

  const c10::cuda::CUDAGuard guard(dy.device());
  Tensor dweight = at::empty({M, K}, dy.options()), dbias = at::empty({M}, dy.options());
  Tensor workspace = gemm_workspace(dy);
  check_gemm_launch(op, weight_grad_bias_grad(dweight.data_ptr(), dbias.data_ptr(), dy.data_ptr(), x.data_ptr(),
                                              N, (int)M, (int)K, to_dtype(op, "dy", dy), workspace.data_ptr(),
                                              kGemmWorkspaceBytes, current_stream(dy)));
  return {dweight, dbias};
}

}  // namespace

TORCH_LIBRARY(fastgpt_cuda, m) {
  m.def("add_layernorm_fwd(Tensor x, Tensor? residual, Tensor weight, Tensor? bias, float eps)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("add_layernorm_bwd(Tensor dy, Tensor? ds, Tensor s, Tensor weight, Tensor mean, Tensor rstd,"
        " bool has_bias) -> (Tensor, Tensor, Tensor)");
  m.def("bias_gelu_fwd(Tensor a, Tensor bias) -> Tensor");
  m.def("bias_gelu_bwd(Tensor dh, Tensor a, Tensor bias) -> (Tensor, Tensor)");
  m.def("linear_bias_gelu(Tensor x, Tensor weight, Tensor bias) -> (Tensor, Tensor)");
  m.def("matmul_gelu_grad_bias_grad(Tensor dy, Tensor weight, Tensor pre) -> (Tensor, Tensor)");
  m.def("matmul_gelu_grad(Tensor dy, Tensor weight, Tensor pre) -> Tensor");
  m.def("weight_grad_bias_grad(Tensor dy, Tensor x) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastgpt_cuda, CUDA, m) {
  m.impl("add_layernorm_fwd", &add_layernorm_fwd);
  m.impl("add_layernorm_bwd", &add_layernorm_bwd);
  m.impl("bias_gelu_fwd", &bias_gelu_fwd);
  m.impl("bias_gelu_bwd", &bias_gelu_bwd);
  m.impl("linear_bias_gelu", &linear_bias_gelu_op);
  m.impl("matmul_gelu_grad_bias_grad", &matmul_gelu_grad_bias_grad_op);
  m.impl("matmul_gelu_grad", &matmul_gelu_grad_op);
  m.impl("weight_grad_bias_grad", &weight_grad_bias_grad_op);
}

}  // namespace fastgpt
