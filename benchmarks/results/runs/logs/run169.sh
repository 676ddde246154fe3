set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run169-*.py $R/
timeout 120 python3 benchmarks/.run169-order.py > $R/order.log 2>&1; echo "order rc=$? t=$((SECONDS-S))"
grep -E "CHECK|RESULT|Error" $R/order.log | cut -c1-220
timeout 150 python3 -m pytest -q -n 8 -x -p no:cacheprovider tests/test_attention.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd benchmarks
for i in 1 2; do
  for m in 1 0; do
    HEAD_MAJOR=$m timeout 100 python3 .run169-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
