set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run186-*.py $R/
OLDMOD=$PWD/benchmarks/.run186-old_mlp_gluon.py
timeout 150 python3 benchmarks/.run186-mlp.py $OLDMOD > $R/mlp.log 2>&1; echo "mlp rc=$? t=$((SECONDS-S))"
grep -E "CHECK|RESULT|Error" $R/mlp.log | cut -c1-260
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd benchmarks
for i in 1 2 3; do
  for o in 0 1; do
    OLD=$o timeout 100 python3 .run186-step.py $OLDMOD 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "step t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
