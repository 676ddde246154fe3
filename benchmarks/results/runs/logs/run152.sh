set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run152-*.py $R/
timeout 150 python3 benchmarks/.run152-attn.py 2>&1 | grep -v Warn | tee $R/attn.log; echo "t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 150 python3 -m pytest -q -n 8 -x -p no:cacheprovider tests/test_attention.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd benchmarks
for i in 1 2 3; do
  for m in stored_ds recompute; do
    FASTGPT_ATTENTION_BWD=$m timeout 90 python3 .run152-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
