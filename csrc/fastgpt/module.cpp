/*
The Python module fastgpt._C. Importing it loads this shared library, whose static
initialisers (ops.cpp) register the torch.ops.fastgpt_cuda.* operators; the module itself only
reports how it was built (CUDA runtime, LayerNorm's channel limit, whether the cuBLASLt GEMMs
were compiled in). Python code calls the ops through fastgpt._cuda, not through here.
*/
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include "fastgpt/kernels.h"

#ifndef TORCH_EXTENSION_NAME
#define TORCH_EXTENSION_NAME _C
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgpt's CUDA kernels; the ops are torch.ops.fastgpt_cuda.* (use fastgpt._cuda.load())";
  m.attr("ops_namespace") = "fastgpt_cuda";
  m.attr("cuda_runtime_version") = CUDART_VERSION;
  m.attr("max_channels") = fastgpt::kMaxChannels;
  // whether cublasLt.h was found at build time (the MLP's GEMMs with cuBLASLt epilogues, mlp.cu)
  m.attr("gemm_epilogues") = fastgpt::gemm_epilogues_available();
}
