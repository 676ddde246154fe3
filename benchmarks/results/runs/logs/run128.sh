set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py 2>&1 | tail -2 | tee $R/tests.log; echo "tests t=$((SECONDS-S))"
cd benchmarks
for i in 1 2 3; do
  for g in 10 0; do
    timeout 100 python3 .run128-step.py $g > $R/step-$g-$i.log 2>&1; head -1 $R/step-$g-$i.log
  done
done
echo "ab t=$((SECONDS-S))"
cat $R/step-10-1.log $R/step-0-1.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
