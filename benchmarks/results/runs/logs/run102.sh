set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 200 python3 benchmarks/.runS16C.py > $R/lmhead.log 2>&1; echo "lmhead rc=$? t=$((SECONDS-S))"
grep RESULT $R/lmhead.log | cut -c1-400; tail -5 $R/lmhead.log | grep -v RESULT | cut -c1-400
FASTGPT_AUTOTUNE=0 timeout 100 python3 -m pytest tests/test_cross_entropy.py -q -n 8 -p no:cacheprovider -x > $R/tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -1 $R/tests.log; grep -E "^(FAILED|ERROR)|Error" $R/tests.log | head -10
timeout $((590-(SECONDS-S))) python3 benchmarks/.runS16C_step.py > $R/step.log 2>&1; echo "step rc=$? t=$((SECONDS-S))"; grep RESULT $R/step.log; tail -2 $R/step.log | grep -v RESULT | cut -c1-300
cd $R && tar czf $OUT/logs.tgz .
