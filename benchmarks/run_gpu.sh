#!/usr/bin/env bash
# One call on the lent GPU: install fastgpt (building the CUDA extension), record the
# environment, run the test suite on the GPU, then the benchmarks, and print a short table.
# Logs and the pytest-benchmark JSON go to $OUT (the device tool brings them back).
#
#   bash benchmarks/run_gpu.sh [stages...]
#     stages: install tests cudatests ctest jit bench hostprofile convergence biasgrads adamw
#   BENCH_FILTER='-k attention' bash benchmarks/run_gpu.sh bench
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FASTGPT_BUILD_CUDA=${FASTGPT_BUILD_CUDA:-1}
stages=${*:-install tests ctest bench}
run() { echo "== $1"; shift; "$@"; echo "== exit $?"; }

for stage in $stages; do
  case $stage in
  install)
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
      python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'
      nvcc --version | tail -2; } 2>&1 | tee "$OUT/env.txt"
    run install python3 -m pip install --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1
    tail -5 "$OUT/install.log" ;;
  tests)
    run tests python3 -m pytest tests/ -q -n 4 --timeout=900 -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -25 ;;
  cudatests)
    run cudatests python3 -m pytest tests/test_cuda_ext.py -q --timeout=600 -p no:cacheprovider 2>&1 | tee "$OUT/cudatests.log" | tail -8 ;;
  jit)
    # the JIT path: the prebuilt module hidden, torch.utils.cpp_extension.load builds it, cached
    run jit bash -c 'export FASTGPT_CUDA_BUILD_DIR=$(mktemp -d); for i in 1 2; do /usr/bin/time -f "jit load %es" python3 -c "
import sys; sys.modules[\"fastgpt._C\"] = None
import fastgpt._cuda as c; ext = c.load(build=True); assert ext is not None, c.jit_problem(); print(\"jit ok\", ext.module.__file__)"; done' 2>&1 | tee "$OUT/jit.log" | tail -6 ;;
  hostprofile)
    run hostprofile python3 benchmarks/host_profile.py --out "$OUT/host_profile" 2>&1 | tee "$OUT/host_profile.log" | tail -40 ;;
  ctest)
    run ctest bash -c 'cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null &&
                       cmake --build build/cmake > /dev/null && ctest --test-dir build/cmake --output-on-failure' \
      2>&1 | tee "$OUT/ctest.log" | tail -8 ;;
  bench)
    # shellcheck disable=SC2086
    run bench python3 -m pytest benchmarks/ --benchmark-only -q -p no:cacheprovider ${BENCH_FILTER:-} \
      --benchmark-json="$OUT/bench.json" --benchmark-columns=median,rounds 2>&1 > "$OUT/bench.log"
    tail -3 "$OUT/bench.log"
    python3 benchmarks/report.py "$OUT/bench.json" | tee "$OUT/bench.md" ;;
  biasgrads)
    # where the bias gradients are computed (c_attn's in the attention backward, c_proj's in the next
    # add+LayerNorm, or each by a column sum) and the cross-entropy kernel's variants, all on this GPU
    run biasgrads-tests python3 -m pytest tests/test_layernorm.py tests/test_model.py tests/test_attention.py \
      -k "x_bias or placements or bias" -q -p no:cacheprovider 2>&1 | tee "$OUT/biasgrads-tests.log" | tail -3
    run biasgrads-module python3 -m pytest benchmarks/bench_attention.py -k attention_module --benchmark-only -q \
      -p no:cacheprovider --benchmark-json="$OUT/attention_module.json" > "$OUT/attention_module.log" 2>&1
    python3 benchmarks/report.py "$OUT/attention_module.json" | tail -4
    for config in triton-cudagraph triton-biassum-cudagraph triton-qkvbias-cudagraph cuda-cudagraph \
                  cuda-biassum-cudagraph reference-compile; do
      FASTGPT_BENCH_OUT="$OUT" python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
        --benchmark-only -q -p no:cacheprovider >> "$OUT/biasgrads-train_step.log" 2>&1
    done
    cat "$OUT/train_step.md" ;;
  adamw)
    # the AdamW step with the bf16 copies (fastgpt-train's default on one GPU): its tests, the op beside torch's
    # fused AdamW with the two casts, and the train step beside the same step without it
    run adamw-tests python3 -m pytest tests/test_adamw.py tests/test_cuda_graph.py -q -p no:cacheprovider \
      2>&1 | tee "$OUT/adamw-tests.log" | tail -3
    run adamw-bench python3 -m pytest benchmarks/bench_adamw.py --benchmark-only -q -p no:cacheprovider \
      --benchmark-json="$OUT/adamw.json" > "$OUT/adamw.log" 2>&1
    python3 benchmarks/report.py "$OUT/adamw.json" | tail -4
    for config in triton-cudagraph triton-adamwcopy-cudagraph cuda-cudagraph cuda-adamwcopy-cudagraph \
                  reference-compile; do
      FASTGPT_BENCH_OUT="$OUT" python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
        --benchmark-only -q -p no:cacheprovider >> "$OUT/adamw-train_step.log" 2>&1
    done
    cat "$OUT/train_step.md" ;;
  convergence)
    run convergence python3 benchmarks/convergence.py --out "$OUT/convergence.json" 2>&1 | tee "$OUT/convergence.log" | tail -15 ;;
  *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
