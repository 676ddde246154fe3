set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cd benchmarks
for i in 1 2 3 4; do
  for m in epilogue layernorm; do
    STRUCTURE=$m timeout 90 python3 .run141-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "t=$((SECONDS-S))"
cd ..
FASTGPT_AUTOTUNE=0 timeout 330 python3 -m pytest -q -n 8 -x tests/test_gemm.py tests/test_linear.py tests/test_layernorm.py tests/test_model.py tests/test_cuda_graph.py tests/test_autocast.py tests/test_mlp.py -k "not gpu_large and not fused_gemms_on_every_schedule and not every_kernel_option and not gluon" > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -3 $R/gpu-tests.log
grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
