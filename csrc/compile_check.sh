#!/usr/bin/env bash
# Compile check of csrc/ for CI machines without a GPU (issue 6): every .cu under csrc/ is
# compiled with nvcc for sm_90 (-c, objects in a scratch folder), every .cpp with the host
# compiler against torch's headers from the installed (CPU) wheel, and the C++ test is linked
# against the kernels (catches declarations without definitions). Nothing is run.
# Exit status non-zero on any compile or link error, or when nvcc or torch is missing.
#
#   bash csrc/compile_check.sh            (PYTHON=... and NVCC=... override the tools;
#                                          CUBLASLT_INCLUDE=DIR also checks mlp.cu's cuBLASLt half)
#
# Two gaps of a CPU wheel + this CUDA are bridged here, never in the sources: the wheel lacks the
# generated c10/cuda/impl/cuda_cmake_macros.h (written into the scratch include folder), and
# ATen/cuda/CUDAContext.h would need cusparse.h (the sources use c10/cuda/CUDAStream.h instead).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
NVCC=${NVCC:-nvcc}
CXX=${CXX:-g++}

command -v "$NVCC" >/dev/null || { echo "compile_check: nvcc not found (set NVCC=...)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# torch's include folders, Python's, and CUDA's (for the host-compiled torch-facing files).
mapfile -t torch_includes < <("$PYTHON" -c '
import sysconfig
from torch.utils.cpp_extension import include_paths
for p in include_paths(): print(p)
print(sysconfig.get_paths()["include"])')
cuda_include=$(dirname "$(dirname "$(readlink -f "$(command -v "$NVCC")")")")/include
[ -f "$cuda_include/cuda_runtime_api.h" ] || cuda_include=$("$NVCC" --dryrun -x cu /dev/null 2>&1 | sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -1)
mkdir -p "$scratch/include/c10/cuda/impl" "$scratch/obj"
if ! [ -f "${torch_includes[0]}/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$scratch/include/c10/cuda/impl/cuda_cmake_macros.h"
fi
includes=(-Icsrc -I"$scratch/include")
for p in "${torch_includes[@]}"; do includes+=(-I"$p"); done
includes+=(-I"$cuda_include")

# Flags as torch's extension build and setup.py use them (half operators off, sm_90).
nvcc_flags=(-std=c++17 -O3 --use_fast_math -gencode=arch=compute_90,code=sm_90 --expt-relaxed-constexpr
            -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
            -D__CUDA_NO_HALF2_OPERATORS__ -Werror all-warnings -Xcompiler -Wall,-Werror)
cxx_flags=(-std=c++20 -O0 -fPIC -Wall -Werror -Wno-error=c++20-extensions -DTORCH_EXTENSION_NAME=_C -D_GLIBCXX_USE_CXX11_ABI=1)

compile() {  # compile SOURCE: one object, log kept on failure
  local src=$1 obj="$scratch/obj/$(echo "$1" | tr / _).o" start=$SECONDS
  local cmd
  case "$src" in
    *.cu) cmd=("$NVCC" "${nvcc_flags[@]}" "${includes[@]}" -c "$src" -o "$obj") ;;
    *.cpp) cmd=("$CXX" "${cxx_flags[@]}" "${includes[@]}" -c "$src" -o "$obj") ;;
  esac
  if "${cmd[@]}" > "$obj.log" 2>&1; then
    echo "ok    $((SECONDS - start))s  $src"
  else
    echo "FAIL  $((SECONDS - start))s  $src"; cat "$obj.log"; return 1
  fi
}

start=$SECONDS
mapfile -t sources < <(find csrc -name '*.cu' -o -name '*.cpp' | sort)
jobs=$(nproc 2>/dev/null || echo 2)
pids=()
status=0
# The torch-facing .cpp files are the slow ones: start them first.
for src in $(printf '%s\n' "${sources[@]}" | grep '\.cpp$') $(printf '%s\n' "${sources[@]}" | grep '\.cu$'); do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
  compile "$src" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || { echo "compile_check: FAILED"; exit 1; }

# mlp.cu's cuBLASLt half compiles only where cublasLt.h is found: with CUBLASLT_INCLUDE naming its
# folder (.ci/run takes it from the nvidia-cublas wheel), compile it once more with that half in.
if [ -n "${CUBLASLT_INCLUDE:-}" ]; then
  start_lt=$SECONDS
  if "$NVCC" "${nvcc_flags[@]}" "${includes[@]}" -I"$CUBLASLT_INCLUDE" -DFASTGPT_REQUIRE_CUBLASLT \
       -c csrc/fastgpt/mlp.cu -o "$scratch/obj/mlp_cublaslt.o" > "$scratch/mlp_cublaslt.log" 2>&1; then
    echo "ok    $((SECONDS - start_lt))s  csrc/fastgpt/mlp.cu (with cuBLASLt)"
  else
    echo "FAIL  csrc/fastgpt/mlp.cu (with cuBLASLt)"; cat "$scratch/mlp_cublaslt.log"; exit 1
  fi
fi

# Link the C++ test against the kernels: every launcher it calls must be defined.
objs=("$scratch"/obj/csrc_fastgpt_layernorm.cu.o "$scratch"/obj/csrc_fastgpt_mlp.cu.o "$scratch"/obj/csrc_test_test_ops.cu.o)
if "$NVCC" -gencode=arch=compute_90,code=sm_90 "${objs[@]}" -o "$scratch/test_ops" > "$scratch/link.log" 2>&1; then
  echo "ok    link csrc/test/test_ops"
else
  echo "FAIL  link csrc/test/test_ops"; cat "$scratch/link.log"; exit 1
fi
echo "compile_check: OK (${#sources[@]} files, $((SECONDS - start))s)"
