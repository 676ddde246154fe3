/*
C++ test of fastgpt's CUDA kernels without PyTorch (run by ctest; see CMakeLists.txt).

Each case fills random inputs, poisons every output with NaN bytes (an element a kernel fails to
write fails the check), runs the launcher from fastgpt/kernels.h, and compares with a float64
CPU loop by relative error ||out - ref|| / ||ref||. Cases cover fp32 / fp16 / bf16, odd row
lengths (1, 7, 1000), GPT-2's 768 and 3072, long rows (4096, 16384), misaligned pointers (the
scalar path), optional residual / bias / ds, and that parameter gradients are bit-identical
across runs. Exit status 0 when every case passes, 1 otherwise.
*/
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "fastgpt/kernels.h"

using fastgpt::DType;

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      std::exit(2);                                                                        \
    }                                                                                      \
  } while (0)

// ---- element types on the host ----

template <typename T> struct Traits;
template <> struct Traits<float> {
  static constexpr DType dtype = DType::kFloat32;
  static constexpr const char* name = "fp32";
  static constexpr double tol = 1e-4;
  static float from(double v) { return (float)v; }
  static double to(float v) { return v; }
};
template <> struct Traits<__half> {
  static constexpr DType dtype = DType::kFloat16;
  static constexpr const char* name = "fp16";
  static constexpr double tol = 5e-3;
  static __half from(double v) { return __float2half((float)v); }
  static double to(__half v) { return __half2float(v); }
};
template <> struct Traits<__nv_bfloat16> {
  static constexpr DType dtype = DType::kBFloat16;
  static constexpr const char* name = "bf16";
  static constexpr double tol = 2e-2;
  static __nv_bfloat16 from(double v) { return __float2bfloat16((float)v); }
  static double to(__nv_bfloat16 v) { return __bfloat162float(v); }
};

// A device array with `offset` elements of padding in front (offset 1 misaligns it).
template <typename T>
struct DeviceArray {
  T* base = nullptr;
  T* ptr = nullptr;
  size_t n = 0;
  DeviceArray(size_t count, int offset = 0) : n(count) {
    CHECK_CUDA(cudaMalloc(&base, (count + offset + 1) * sizeof(T)));
    ptr = base + offset;
    CHECK_CUDA(cudaMemset(base, 0xFF, (count + offset + 1) * sizeof(T)));  // NaN in every float format
  }
  ~DeviceArray() { cudaFree(base); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void upload(const std::vector<T>& h) { CHECK_CUDA(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CHECK_CUDA(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

std::mt19937 rng(1234);

template <typename T>
std::vector<T> random_vector(size_t n, double scale, double shift = 0.0) {
  std::normal_distribution<double> normal(shift, scale);
  std::vector<T> v(n);
  for (auto& e : v) e = Traits<T>::from(normal(rng));
  return v;
}

template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Traits<T>::to(v[i]);
  return out;
}

double rel_error(const std::vector<double>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

int failures = 0;

void expect_close(const std::string& what, const std::vector<double>& out, const std::vector<double>& ref, double tol) {
  const double err = rel_error(out, ref);
  const bool ok = err <= tol;
  if (!ok) ++failures;
  std::printf("%s %-58s rel_err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what.c_str(), err, tol);
}

void expect(const std::string& what, bool ok) {
  if (!ok) ++failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

// ---- fused residual-add + LayerNorm ----

template <typename T>
void test_layernorm(int64_t N, int C, bool residual, bool bias, bool ds, int offset) {
  using Tr = Traits<T>;
  char label[160];
  std::snprintf(label, sizeof label, "add_layernorm %s N=%lld C=%d res=%d bias=%d ds=%d offset=%d", Tr::name,
                (long long)N, C, residual, bias, ds, offset);
  const size_t NC = (size_t)N * C;
  const float eps = 1e-5f;
  auto hx = random_vector<T>(NC, 1.0, 0.5), hr = random_vector<T>(NC, 1.0);
  auto hw = random_vector<T>(C, 0.5, 1.0), hb = random_vector<T>(C, 0.5);
  auto hdy = random_vector<T>(NC, 1.0), hds = random_vector<T>(NC, 1.0);

  DeviceArray<T> x(NC, offset), r(NC, offset), w(C, offset), b(C, offset), y(NC, offset), s(NC, offset);
  DeviceArray<float> mean(N), rstd(N);
  x.upload(hx), r.upload(hr), w.upload(hw), b.upload(hb);
  CHECK_CUDA(fastgpt::add_layernorm_forward(y.ptr, s.ptr, mean.ptr, rstd.ptr, x.ptr, residual ? r.ptr : nullptr,
                                            w.ptr, bias ? b.ptr : nullptr, N, C, eps, Tr::dtype, 0));
  CHECK_CUDA(cudaDeviceSynchronize());

  // forward reference in float64
  const auto X = widen(hx), R = widen(hr), W = widen(hw), B = widen(hb);
  std::vector<double> s_ref(NC), y_ref(NC), mean_ref(N), rstd_ref(N);
  for (int64_t i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += s_ref[i * C + c] = X[i * C + c] + (residual ? R[i * C + c] : 0.0);
    m /= C;
    for (int c = 0; c < C; ++c) v += (s_ref[i * C + c] - m) * (s_ref[i * C + c] - m);
    const double rs = 1.0 / std::sqrt(v / C + eps);
    mean_ref[i] = m, rstd_ref[i] = rs;
    for (int c = 0; c < C; ++c) y_ref[i * C + c] = (s_ref[i * C + c] - m) * rs * W[c] + (bias ? B[c] : 0.0);
  }
  expect_close(std::string(label) + " s", widen(s.download()), s_ref, Tr::tol);
  expect_close(std::string(label) + " y", widen(y.download()), y_ref, Tr::tol);
  expect_close(std::string(label) + " mean", widen(mean.download()), mean_ref, Tr::tol);
  expect_close(std::string(label) + " rstd", widen(rstd.download()), rstd_ref, Tr::tol);

  // backward, from the kernel's s (as the autograd Function saves it)
  DeviceArray<T> dy(NC, offset), dsa(NC, offset), dx(NC, offset), dw(C, offset), db(C, offset);
  dy.upload(hdy), dsa.upload(hds);
  const size_t ws_bytes = fastgpt::add_layernorm_backward_workspace_size(N, C, Tr::dtype);
  DeviceArray<float> ws(ws_bytes / sizeof(float) + 1);
  auto run_backward = [&] {
    CHECK_CUDA(fastgpt::add_layernorm_backward(dx.ptr, dw.ptr, bias ? db.ptr : nullptr, ws.ptr, ws_bytes, dy.ptr,
                                               ds ? dsa.ptr : nullptr, s.ptr, w.ptr, mean.ptr, rstd.ptr, N, C,
                                               Tr::dtype, 0));
    CHECK_CUDA(cudaDeviceSynchronize());
  };
  run_backward();
  const auto S = widen(s.download()), DY = widen(hdy), DS = widen(hds);
  std::vector<double> dx_ref(NC), dw_ref(C, 0.0), db_ref(C, 0.0);
  for (int64_t i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += S[i * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (S[i * C + c] - m) * (S[i * C + c] - m);
    const double rs = 1.0 / std::sqrt(v / C + eps);
    double mg = 0, mgx = 0;
    for (int c = 0; c < C; ++c) {
      const double xh = (S[i * C + c] - m) * rs, g = W[c] * DY[i * C + c];
      mg += g, mgx += g * xh;
      dw_ref[c] += DY[i * C + c] * xh, db_ref[c] += DY[i * C + c];
    }
    mg /= C, mgx /= C;
    for (int c = 0; c < C; ++c) {
      const double xh = (S[i * C + c] - m) * rs, g = W[c] * DY[i * C + c];
      dx_ref[i * C + c] = rs * (g - mg - xh * mgx) + (ds ? DS[i * C + c] : 0.0);
    }
  }
  expect_close(std::string(label) + " dx", widen(dx.download()), dx_ref, Tr::tol);
  const auto dw_first = dw.download();
  expect_close(std::string(label) + " dweight", widen(dw_first), dw_ref, Tr::tol);
  std::vector<T> db_first;
  if (bias) {
    db_first = db.download();
    expect_close(std::string(label) + " dbias", widen(db_first), db_ref, Tr::tol);
  }
  run_backward();
  const auto dw_second = dw.download();
  bool same = std::memcmp(dw_first.data(), dw_second.data(), C * sizeof(T)) == 0;
  if (bias) same = same && std::memcmp(db_first.data(), db.download().data(), C * sizeof(T)) == 0;
  expect(std::string(label) + " parameter gradients bit-identical across runs", same);
}

// ---- bias + GELU(tanh) ----

double gelu(double u) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * u * (1.0 + std::tanh(k * (u + 0.044715 * u * u * u)));
}

double gelu_grad(double u) {
  const double k = std::sqrt(2.0 / M_PI), t = std::tanh(k * (u + 0.044715 * u * u * u));
  return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * u * u);
}

template <typename T>
void test_bias_gelu(int64_t N, int M, int offset) {
  using Tr = Traits<T>;
  char label[160];
  std::snprintf(label, sizeof label, "bias_gelu %s N=%lld M=%d offset=%d", Tr::name, (long long)N, M, offset);
  const size_t NM = (size_t)N * M;
  auto ha = random_vector<T>(NM, 1.5), hb = random_vector<T>(M, 0.5), hdh = random_vector<T>(NM, 1.0);
  DeviceArray<T> a(NM, offset), b(M, offset), h(NM, offset), dh(NM, offset), da(NM, offset), db(M, offset);
  a.upload(ha), b.upload(hb), dh.upload(hdh);
  CHECK_CUDA(fastgpt::bias_gelu_forward(h.ptr, a.ptr, b.ptr, N, M, Tr::dtype, 0));
  const size_t ws_bytes = fastgpt::bias_gelu_backward_workspace_size(N, M, Tr::dtype);
  DeviceArray<float> ws(ws_bytes / sizeof(float) + 1);
  CHECK_CUDA(fastgpt::bias_gelu_backward(da.ptr, db.ptr, ws.ptr, ws_bytes, dh.ptr, a.ptr, b.ptr, N, M, Tr::dtype, 0));
  CHECK_CUDA(cudaDeviceSynchronize());

  const auto A = widen(ha), B = widen(hb), DH = widen(hdh);
  std::vector<double> h_ref(NM), da_ref(NM), db_ref(M, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int c = 0; c < M; ++c) {
      const double u = A[i * M + c] + B[c];
      h_ref[i * M + c] = gelu(u);
      da_ref[i * M + c] = DH[i * M + c] * gelu_grad(u);
      db_ref[c] += da_ref[i * M + c];
    }
  expect_close(std::string(label) + " h", widen(h.download()), h_ref, Tr::tol);
  expect_close(std::string(label) + " da", widen(da.download()), da_ref, Tr::tol);
  const auto db_first = db.download();
  expect_close(std::string(label) + " dbias", widen(db_first), db_ref, Tr::tol);
  CHECK_CUDA(fastgpt::bias_gelu_backward(da.ptr, db.ptr, ws.ptr, ws_bytes, dh.ptr, a.ptr, b.ptr, N, M, Tr::dtype, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  expect(std::string(label) + " dbias bit-identical across runs",
         std::memcmp(db_first.data(), db.download().data(), M * sizeof(T)) == 0);
}

template <typename T>
void test_dtype() {
  for (int C : {1, 7, 768, 1000, 4096}) test_layernorm<T>(67, C, true, true, true, 0);
  test_layernorm<T>(5, 16384, true, true, false, 0);
  test_layernorm<T>(1, 768, false, false, false, 0);     // one row, no residual, no bias
  test_layernorm<T>(1500, 768, true, true, true, 1);     // misaligned: scalar path, many rows
  test_layernorm<T>(3000, 64, false, true, false, 0);    // more rows than backward workers
  for (int M : {1, 7, 768, 3072}) test_bias_gelu<T>(131, M, 0);
  test_bias_gelu<T>(257, 3072, 1);                        // misaligned: scalar path
}

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "test_ops: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  test_dtype<float>();
  test_dtype<__half>();
  test_dtype<__nv_bfloat16>();
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
