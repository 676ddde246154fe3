set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run156-*.py $R/
timeout 150 python3 -m pytest -q -n 8 -x -p no:cacheprovider tests/test_gemm.py tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd benchmarks
for i in 1 2 3; do
  for m in 1 0; do
    FASTGPT_CUBLASLT_VARIANTS=$m timeout 120 python3 .run156-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
